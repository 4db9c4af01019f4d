"""``python -m pouchsync_sync``: the command line (see ``pouchsync_sync.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
