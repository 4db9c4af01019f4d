"""The sync server: a WSGI app on simple-websocket serving protocol v1.

``create_server(on_request, **options)`` gives a ``SyncServer``; see docs/protocol.md.
"""

from __future__ import annotations

from .app import SyncServer, create_server
from .grant import Grant
from .options import ServerOptions

__all__ = ["Grant", "ServerOptions", "SyncServer", "create_server"]
