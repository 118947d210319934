"""``python -m minirtrl.plot``: draw the logs of minirtrl's commands."""

if __name__ == "__main__":  # a SIGINT while the command loads is one line too
    from .drivers.entry import start

    start("plot")
