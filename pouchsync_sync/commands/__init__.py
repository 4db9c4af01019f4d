"""The commands of ``pouchsync`` (see ``pouchsync_sync.cli``): one module each."""
