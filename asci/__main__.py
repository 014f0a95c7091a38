"""``python -m asci``: the same as the ``asci`` command."""

import sys

from asci.cli import main

sys.exit(main())
