"""A sync server in its own process, for tests that SIGKILL it.

    python3 -m tests.fault.serve --port 0 --dir /tmp/x [--ping-interval 1]

Serves ``create_server(...)`` on 127.0.0.1:<port>; database ``<name>`` is the embedded
store ``<dir>/<name>.sqlite`` (names are checked: no path ever leaves ``<dir>``), granted
to the credentials ``{"token": "fault-token"}``. Prints ``READY <url>`` on stdout once
listening, then serves until SIGTERM/SIGINT (or SIGKILL, which is the point).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

TOKEN = {"token": "fault-token"}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--ping-interval", type=float, default=None)
    parser.add_argument("--max-message-size", type=int, default=64 * 1024 * 1024)
    args = parser.parse_args()
    from pouchsync_sync import Denied, LocalDatabase, create_server

    root = Path(args.dir)
    dbs: dict[str, LocalDatabase] = {}
    lock = threading.Lock()

    def on_request(credentials: Any, name: str) -> Any:
        if credentials != TOKEN:
            raise Denied("bad token")
        if not _NAME.fullmatch(name):
            raise Denied("bad database name")
        with lock:
            if name not in dbs:
                dbs[name] = LocalDatabase(root / f"{name}.sqlite", name=name)
            return dbs[name]

    server = create_server(on_request, ping_interval=args.ping_interval, hello_timeout=5.0,
                           max_message_size=args.max_message_size)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start(port=args.port)
    print(f"READY {server.url}", flush=True)
    while not done.wait(1.0):
        pass
    server.stop()
    for db in dbs.values():
        db.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
