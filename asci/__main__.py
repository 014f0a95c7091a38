"""``python -m asci``: the same as the ``asci`` command."""

import sys

from asci.cli import main

if __name__ == "__main__":
    sys.exit(main())
