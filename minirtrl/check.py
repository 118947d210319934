"""``python -m minirtrl.check``: every gradient method against finite differences."""

import sys

from .drivers.check import main

if __name__ == "__main__":
    sys.exit(main())
