"""Threads a client holds per idle live sync (issue 14, point 3, client half).

    python3 bench/bench_idle_threads.py [--syncs 20]

Starts a ``SyncServer`` (embedded stores) and one ``Client`` in this process, opens
``--syncs`` live syncs (direction both, one database each; at most the server's
``max_channels``, 100 by default), waits until every one is in sync and paused, lets the transient threads of the last batches end (read-ahead,
uploads: at most 10 s), and counts the client's library threads by name. Prints one
JSON line: the counts by name and the threads per idle live sync beyond the client's own
two (``pouchsync-client``, ``pouchsync-client-reader``).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pouchsync_sync as ps  # noqa: E402
from pouchsync_sync.client import SyncState  # noqa: E402

CLIENT_PREFIXES = ("pouchsync-sync", "pouchsync-replicate", "pouchsync-client",
                   "pouchsync-changes-ahead", "pouchsync-upload")
TRANSIENT = ("pouchsync-replicate", "pouchsync-changes-ahead", "pouchsync-upload")
PER_CLIENT = ("pouchsync-client", "pouchsync-client-reader")


def counts() -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for thread in threading.enumerate():
        if thread.name.startswith(CLIENT_PREFIXES):
            head, _, tail = thread.name.partition("[")
            suffix = tail.rsplit("]", 1)[-1]  # "-pull", "-push", "-stop" or ""
            found[head + suffix] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--syncs", type=int, default=20)
    args = parser.parse_args()
    pause = threading.Event()  # never set: bounded pauses between looks
    with tempfile.TemporaryDirectory() as tmp:
        served: dict[str, ps.LocalDatabase] = {}

        def on_request(credentials: object, name: str) -> ps.LocalDatabase:
            if name not in served:
                served[name] = ps.LocalDatabase(Path(tmp) / f"server-{name}.sqlite", name=name)
            return served[name]

        server = ps.create_server(on_request).start(port=0)
        client = ps.Client().connect(server.url)
        dbs = [ps.LocalDatabase(Path(tmp) / f"client-{i}.sqlite", name=f"db{i}")
               for i in range(args.syncs)]
        try:
            for db in dbs:
                db.put({"_id": "seed"})
            syncs = [client.sync(db, live=True) for db in dbs]
            for sync in syncs:
                sync.wait_in_sync(timeout=120)
            deadline = time.monotonic() + 60
            while any(s.state is not SyncState.PAUSED for s in syncs) \
                    and time.monotonic() < deadline:
                pause.wait(0.05)
            deadline = time.monotonic() + 10
            while any(name.startswith(TRANSIENT) for name in counts()) \
                    and time.monotonic() < deadline:
                pause.wait(0.1)
            found = counts()
            per_sync = (sum(found.values()) - sum(found[n] for n in PER_CLIENT)) / args.syncs
            print(json.dumps({"syncs": args.syncs, "client_threads": sum(found.values()),
                              "threads_per_idle_live_sync": per_sync,
                              "by_name": dict(sorted(found.items()))}))
        finally:
            client.close()
            server.stop()
            for db in dbs + list(served.values()):
                db.close()


if __name__ == "__main__":
    main()
