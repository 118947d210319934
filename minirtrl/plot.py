"""``python -m minirtrl.plot``: draw the logs of minirtrl's commands."""

import sys

from .drivers.plot import main

if __name__ == "__main__":
    sys.exit(main())
