"""``python -m minirtrl.noise``: how noisy each estimator is, against exact RTRL."""

import sys

from .drivers.noise import main

if __name__ == "__main__":
    sys.exit(main())
