# Run only as `python -m minirtrl.copy`: run as a file it would shadow the stdlib `copy` module.
"""``python -m minirtrl.copy``: the copy task with a curriculum."""

import sys

from .drivers.copy import main

if __name__ == "__main__":
    sys.exit(main())
