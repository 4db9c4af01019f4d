"""The CouchDB replication protocol between any two ``Database`` objects.

``replicate(source, target, ...)`` for a blocking run; ``Replicator`` for progress
callbacks, state and live mode. Modules: ``ids`` (replication id), ``checkpoint``
(replication logs), ``batch`` (one batch, pure), ``replicator`` (the steps, I/O).
"""

from __future__ import annotations

from .replicator import ReplicationResult, Replicator, replicate

__all__ = ["ReplicationResult", "Replicator", "replicate"]
