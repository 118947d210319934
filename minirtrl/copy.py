# Run only as `python -m minirtrl.copy`: run as a file it would shadow the stdlib `copy` module.
"""``python -m minirtrl.copy``: the copy task with a curriculum."""

if __name__ == "__main__":  # a SIGINT while the command loads is one line too
    from .drivers.entry import start

    start("copy")
