"""The benchmarks' sync server process (one per measurement, so its RSS/CPU are its own).

    python3 bench/sync_server.py --backend local --db PATH [--max-seconds 600]
    python3 bench/sync_server.py --backend couch --couch-url URL --couch-db NAME

Serves every requested database name from that one store on 127.0.0.1 (port 0) and
prints one JSON line ``{"url", "pid"}``. Then it reads commands on stdin, one per line,
answering each with one JSON line:

- ``stats``: RSS, peak RSS (MB), threads, CPU seconds, the server's own counters;
- ``write ID``: writes one small doc ``ID`` into the store; answers ``{"t0"}``, the
  ``time.monotonic()`` just before the write (CLOCK_MONOTONIC is system-wide on Linux);
- ``reset-peak``: resets VmHWM (``/proc/self/clear_refs``) so the peak covers what follows.

EOF on stdin (or ``--max-seconds``) stops the server and prints the final stats.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import own_usage, raise_nofile, small_doc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("local", "couch"), default="local")
    parser.add_argument("--db")
    parser.add_argument("--couch-url")
    parser.add_argument("--couch-db")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for this process (CPython's default: 0.005 s)")
    args = parser.parse_args()
    raise_nofile()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")

    import pouchsync_sync as ps

    if args.backend == "local":
        store = ps.LocalDatabase(args.db)
        couch = None
    else:
        couch = ps.CouchDB(args.couch_url)
        store = couch.database(args.couch_db, create=True)

    def on_request(credentials: object, db_name: str) -> object:
        return store

    server = ps.create_server(on_request, ping_interval=args.ping_interval)
    server.start("127.0.0.1", 0)
    print(json.dumps({"url": server.url, "pid": os.getpid()}), flush=True)

    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(args.max_seconds):
            print("sync_server: --max-seconds reached, stopping", file=sys.stderr, flush=True)
            sys.stdin.close()  # makes the command loop end
            server.stop()

    threading.Thread(target=watchdog, name="pouchsync-bench-server-watchdog",
                     daemon=True).start()

    def stats() -> dict[str, object]:
        out = own_usage()
        out["server"] = server.stats()
        return out

    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "stats":
                print(json.dumps(stats()), flush=True)
            elif cmd == "write":
                doc = small_doc(0)
                doc["_id"] = arg
                t0 = time.monotonic()
                store.put(doc)
                print(json.dumps({"t0": t0}), flush=True)
            elif cmd == "reset-peak":
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")
                print(json.dumps({"ok": True}), flush=True)
            elif cmd:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    except (ValueError, OSError):
        pass  # stdin closed by the watchdog
    final = stats()
    done.set()
    server.stop()
    store.close()
    if couch is not None:
        couch.close()
    print(json.dumps(dict(final, final=True)), flush=True)


if __name__ == "__main__":
    main()
