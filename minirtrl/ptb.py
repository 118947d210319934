"""``python -m minirtrl.ptb``: a character-level language model (Penn TreeBank or any text)."""

if __name__ == "__main__":  # a SIGINT while the command loads is one line too
    from .drivers.entry import start

    start("ptb")
