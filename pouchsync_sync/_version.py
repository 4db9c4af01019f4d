"""The package's version, defined once: ``pouchsync_sync.__version__`` and setup.cfg
(``attr:``) read it from here; modules inside the package import it from here too,
never from the package root (which is still loading when they are imported)."""

__version__ = "0.1.0"
