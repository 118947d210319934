"""``python -m minirtrl.check``: every gradient method against finite differences."""

if __name__ == "__main__":  # a SIGINT while the command loads is one line too
    from .drivers.entry import start

    start("check")
