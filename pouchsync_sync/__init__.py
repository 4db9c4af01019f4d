"""Sync CouchDB-style document databases through WebSockets, from Python.

An app that works offline keeps its data in a local database and syncs it with a
server when it can; CouchDB's replication protocol makes that safe (revision trees,
the same winner of a conflict on every side, nothing lost). pouchsync_sync gives
Python scripts, Flask apps and notebooks an embedded SQLite store with CouchDB's
semantics (``LocalDatabase``, the PouchDB of Python), a CouchDB backend
(``CouchDB``), and a WebSocket sync server and client: one socket per client, any
number of databases over it, with negotiation, authentication and reconnection.
Every call blocks the calling thread; every wait takes a ``timeout`` in seconds.

The five calls a user needs::

    import pouchsync_sync as ps

    db = ps.LocalDatabase("todos.sqlite")                  # 1. a local store
    db.post({"title": "Buy milk"})
    server = ps.create_server(lambda credentials, name: ps.LocalDatabase(":memory:", name=name))
    server.start(port=0)                                   # 2. a server (or init_app(flask_app))
    client = ps.create_client()                            # 3. a client ...
    client.connect(server.url)                             # 4. ... connected to it
    result = client.sync(db).wait(timeout=30)              # 5. a sync: one-shot, or live=True
    client.close(); server.stop()

``on_request(credentials, db_name)`` decides who may sync which database: return a
``Database`` (or ``Grant``) to allow it, raise ``Denied`` to refuse. Errors derive
from ``PouchSyncError`` (the tree is in ``pouchsync_sync.errors``); events are blinker
signals in ``pouchsync_sync.signals``; the ``pouchsync`` command serves, syncs and
inspects stores from a shell.

Read on: README.md (quickstart, command line, deployment), ``help(ps.Client)``,
``help(ps.Sync)``, ``help(ps.SyncServer)``, ``help(ps.LocalDatabase)``, and
docs/protocol.md for the wire protocol. ``open_database(spec)`` opens a store file or
a CouchDB URL as a ``Database``.
"""

from __future__ import annotations

import logging

from ._version import __version__
from .client import Backoff, Client, RemoteDatabase, Sync, SyncState, create_client
from .datadir import CouchDir, DataDir
from .errors import (
    BadRequest,
    Cancelled,
    Conflict,
    CouchError,
    Denied,
    Forbidden,
    ListenError,
    NotASyncServer,
    NotFound,
    PayloadTooLarge,
    PouchSyncError,
    PreconditionFailed,
    ProtocolError,
    ServerError,
    Timeout,
    TLSError,
    TransportError,
    Unauthorized,
    Unreachable,
    UnsupportedProtocol,
)
from .jsclient import js_client_path
from .replication import ReplicationResult, Replicator, replicate
from .server import Grant, SyncServer, create_server
from .store.base import Database
from .store.couch import CouchDatabase, CouchDB
from .store.local import LocalDatabase
from .store.open import open_database

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
    "ListenError",
    "LocalDatabase",
    "NotASyncServer",
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
    "TLSError",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "Unreachable",
    "UnsupportedProtocol",
    "__version__",
    "create_client",
    "create_server",
    "js_client_path",
    "open_database",
    "replicate",
]
