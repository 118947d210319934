"""The drivers: command-line tools and the online training loop around the core.

    cli         one-line errors, number types, the flags common to the training drivers
    task        the task interface of the loop (Batch, Task, Context)
    checkpoint  write, read and validate checkpoints
    report      progress lines and ``--log`` JSON lines
    loop        the online training loop (``run``)
    copytask    the copy task and its curriculum       -> ``python -m minirtrl.copy``
    corpus      reading and encoding character corpora
    text        the text task and bpc evaluation       -> ``python -m minirtrl.ptb``
    noise       estimator noise against exact RTRL     -> ``python -m minirtrl.noise``
    check       every method against finite differences -> ``python -m minirtrl.check``

The core (the rest of ``minirtrl``) never imports this package: a project that vendors
minirtrl may leave it out.
"""
