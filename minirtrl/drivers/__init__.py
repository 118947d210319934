"""The command-line tools around the core; the core never imports this package (a project
that vendors minirtrl may leave it out). Every command is ``main(argv) -> exit status``:

    backends    array libraries by name, devices, threads, the machine header
    cli         the parser factory, flag types and vocabulary, the training flags
    safety      one-line failures, signals, outputs checked, locked and written atomically
    checkpoint  write, read and validate checkpoints
    report      progress lines and ``--log`` records
    loop        the online training loop and the task interface
    copy        the copy task and its curriculum          python -m minirtrl.copy
    corpus      reading and encoding character corpora
    ptb         text streams, bpc evaluation              python -m minirtrl.ptb
    noise       estimator noise against exact RTRL        python -m minirtrl.noise
    check       every method against finite differences   python -m minirtrl.check
    plot        draw the logs of the commands             python -m minirtrl.plot
"""
