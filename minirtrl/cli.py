"""What every command line of minirtrl shares: one-line errors with exit status 2."""

import argparse
import math


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are one line on stderr (exit status 2), no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def fail(self, message):
        """Stop with a one-line error about something other than the syntax (exit 2)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind, low, strict, name):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}")
        return value

    return parse


nonnegative = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a number > 0")
nonnegative_float = _number(float, 0.0, False, "a number >= 0")
real = _number(float, None, False, "a finite number")


def positive(text):
    """``type=`` for integer options that must be >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {value}")
    return value
