"""pouchsync_sync: sync CouchDB-style document databases through WebSockets.

See README.md for the quickstart and docs/ for the protocol.
"""

from __future__ import annotations

import logging

from .errors import (
    BadRequest,
    Cancelled,
    Conflict,
    CouchError,
    Denied,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PouchSyncError,
    PreconditionFailed,
    ProtocolError,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
)
from .client import Backoff, Client, RemoteDatabase, Sync, SyncState, create_client
from .replication import ReplicationResult, Replicator, replicate
from .server import Grant, SyncServer, create_server
from .store.base import Database
from .store.couch import CouchDatabase, CouchDB
from .store.local import LocalDatabase
from .store.open import open_database
from .datadir import CouchDir, DataDir
from .jsclient import js_client_path

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Backoff",
    "BadRequest",
    "Cancelled",
    "Client",
    "Conflict",
    "CouchDB",
    "CouchDatabase",
    "CouchDir",
    "CouchError",
    "DataDir",
    "Database",
    "Denied",
    "Forbidden",
    "Grant",
    "LocalDatabase",
    "NotFound",
    "PayloadTooLarge",
    "PouchSyncError",
    "PreconditionFailed",
    "ProtocolError",
    "RemoteDatabase",
    "ReplicationResult",
    "Replicator",
    "ServerError",
    "Sync",
    "SyncServer",
    "SyncState",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "__version__",
    "create_client",
    "create_server",
    "js_client_path",
    "open_database",
    "replicate",
]
