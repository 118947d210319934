"""``python -m minirtrl.ptb``: a character-level language model (Penn TreeBank or any text)."""

import sys

from .drivers.ptb import main

if __name__ == "__main__":
    sys.exit(main())
