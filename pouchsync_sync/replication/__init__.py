"""The CouchDB replication protocol between any two ``Database`` objects.

``replicate(source, target, ...)`` for a blocking run; ``Replicator`` for progress
callbacks, state and live mode. Modules: ``replicator`` (the steps, I/O), ``readside``
and ``writeside`` (its two halves), ``result`` (what a run did), ``checkpoint``
(replication logs and when to record them), ``ids`` (replication id), ``batch`` (one
batch, pure).
"""

from __future__ import annotations

from .replicator import ReplicationResult, Replicator, replicate

__all__ = ["ReplicationResult", "Replicator", "replicate"]
