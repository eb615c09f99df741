"""``python -m er_tune``: the same entry point as the ``er-tune`` script."""

import sys

from er_tune.cli import main

if __name__ == "__main__":
    sys.exit(main())
