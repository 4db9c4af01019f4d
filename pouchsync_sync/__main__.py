"""``python -m pouchsync_sync``: the command line (see ``pouchsync_sync.cli``)."""

from .cli import main

raise SystemExit(main())
