"""The websocket client: ``Client`` (one socket, reconnecting), ``Sync`` (one database
kept in sync over a channel), ``RemoteDatabase`` (the ``Database`` interface over a
channel) and the ``Backoff`` policy."""

from __future__ import annotations

from .backoff import Backoff
from .client import Client, create_client
from .remote import RemoteDatabase
from .sync import Sync, SyncResult, SyncState, SyncStatus

__all__ = ["Backoff", "Client", "create_client", "RemoteDatabase", "Sync", "SyncResult",
           "SyncState", "SyncStatus"]
