"""What every command line of minirtrl shares: one-line errors with exit status 2."""

import argparse


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are one line on stderr (exit status 2), no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def fail(self, message):
        """Stop with a one-line error about something other than the syntax (exit 2)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(text):
    """``type=`` for integer options that must be >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {value}")
    return value
