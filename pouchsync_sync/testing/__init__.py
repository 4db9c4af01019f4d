"""Helpers for testing apps that sync with pouchsync_sync (importable without pytest).

- ``running_server(on_request=None, data_dir=None, **server_options)``: a real sync
  server on 127.0.0.1 and a free port, as a context manager (``RunningServer``);
- ``assert_converged(*dbs)``: same documents, winners, conflicts, histories and
  attachments everywhere, else an ``AssertionError`` naming each differing id;
- ``wait_for(db, doc_id, *, rev=None, timeout=10)``: block until a document is readable
  (on the changes feed), else ``WaitTimeout`` (a ``TimeoutError``);
- ``network_fault(server_or_url)``: a loopback proxy that can ``cut()``, ``stall()`` and
  ``heal()`` the link;
- ``couchserver``: a CouchDB-protocol server from npm (pouchdb-server) for tests.

The pytest plugin (``pouchsync_sync.testing.plugin``, registered through the ``pytest11``
entry point) wraps these in fixtures: ``pouchsync_server``, ``pouchsync_client``,
``couchdb_url``. See README.md, "Testing your app".
"""

from __future__ import annotations

from .converge import assert_converged, snapshot
from .faults import NetworkFault, network_fault
from .server import RunningServer, running_server
from .waiting import WaitTimeout, wait_for

__all__ = [
    "NetworkFault",
    "RunningServer",
    "WaitTimeout",
    "assert_converged",
    "network_fault",
    "running_server",
    "snapshot",
    "wait_for",
]
