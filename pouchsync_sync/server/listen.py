"""The listening socket of ``SyncServer.start``/``serve_forever``: bound here, handed to
werkzeug as a file descriptor.

werkzeug's ``make_server`` binds by itself and, when the address is taken, prints
several lines to stderr and calls ``sys.exit(1)``: no exception a caller can report.
Binding first turns that into one ``ListenError`` (the one boundary for ``bind``'s
``OSError``).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from ..errors import ListenError

__all__ = ["make_http_server"]


def _bind(host: str, port: int) -> socket.socket:
    from werkzeug.serving import get_sockaddr, select_address_family

    family = select_address_family(host, port)
    try:
        address = get_sockaddr(host, int(port), family)
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as socketserver does
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = " (another program, or another server, is listening there)" \
            if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(f"cannot listen on {host}:{port}: {reason}{hint}") from exc
    return sock


def make_http_server(host: str, port: int, app: Any, **options: Any) -> Any:
    """werkzeug's threaded server for ``app`` on ``host:port`` (0: a free port), or
    ``ListenError``."""
    from werkzeug.serving import make_server

    sock = _bind(host, port)
    try:
        server = make_server(host, port, app, threaded=True, fd=sock.fileno(), **options)
    finally:
        sock.close()  # werkzeug holds its own duplicate of the descriptor
    # what HTTPServer.server_bind (skipped for a descriptor) would have set
    server.server_name = host
    server.server_port = server.server_address[1]
    return server
