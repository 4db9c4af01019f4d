"""Two people edit one todo list live, through one sync server.

    python examples/todo.py                       # starts its own server on a free port
    pouchsync serve --token T &                   # or use a running server:
    python examples/todo.py --url ws://127.0.0.1:3000/ --token T

Alice and Bob each have their own local store and a live sync with the server. Each
edit is made on one side; the other side's receiver of ``signals.sync_change`` prints
it as it arrives, and ``wait_in_sync`` makes the script wait until both have it.
Run it as often as you like against the same server: each write goes over whatever an
earlier run left in the list (``put_over``).

Exit status: 0 when both lists end identical, 1 when they differ (or another error),
2 for a bad argument, 3 when the server denies the token, 4 when it stays unreachable,
5 when the URL leads to no sync server; a failure is one line on stderr (``-v``: the
traceback too).
"""

from __future__ import annotations

import argparse
import sys
import threading
import traceback
from typing import Any

import pouchsync_sync as ps
from pouchsync_sync import signals
from pouchsync_sync.cli import describe

TIMEOUT = 30.0


def show(db: ps.LocalDatabase) -> list[str]:
    rows = db.all_docs(include_docs=True)["rows"]
    return [f"[{'x' if r['doc']['done'] else ' '}] {r['doc']['title']}" for r in rows]


def put_over(db: ps.LocalDatabase, doc: dict[str, Any]) -> dict[str, Any]:
    """Write ``doc`` whether or not its id is already there (left by an earlier run, or
    deleted): the current revision, if any, becomes its parent, so this never raises
    ``Conflict`` the second time."""
    try:
        current = db.get(doc["_id"])
    except ps.NotFound:  # never written, or deleted: a put without _rev
        return db.put(doc)
    return db.put({**doc, "_rev": current["_rev"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.error = lambda message: parser.exit(2, f"todo.py: error: {message}\n")  # one line
    parser.add_argument("--url", help="a running sync server (default: start one here)")
    parser.add_argument("--token", default="todo-token")
    parser.add_argument("--list", default="todos", help="database name on the server")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the traceback of a failure")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Exception as exc:  # noqa: BLE001 - the script's top frame: one line, a status
        message, status = describe(exc)  # the same lines and statuses as `pouchsync`
        if args.verbose:
            traceback.print_exc()
        print(f"todo.py: {message}", file=sys.stderr)
        return status


def run(args: argparse.Namespace) -> int:
    credentials = {"token": args.token}

    server = None
    served: dict[str, ps.LocalDatabase] = {}
    lock = threading.Lock()
    if args.url is None:
        def on_request(creds: Any, db_name: str) -> ps.LocalDatabase:
            if not isinstance(creds, dict) or creds.get("token") != args.token:
                raise ps.Denied("bad token")
            with lock:
                return served.setdefault(db_name, ps.LocalDatabase(":memory:", name=db_name))

        server = ps.create_server(on_request, follow_timeout=0.25).start(port=0)
        args.url = server.url
    print(f"server: {args.url}")

    printing = threading.Lock()

    def arrived(who: str):
        def receiver(sync: ps.Sync, direction: str, docs: list[dict[str, Any]], **_: Any) -> None:
            if direction != "pull":
                return
            for doc in docs:
                what = "deleted" if doc.get("_deleted") else f"{doc.get('title')!r} done={doc.get('done')}"
                with printing:
                    print(f"  {who} <- {doc['_id']}: {what}", flush=True)
        return receiver

    alice_db = ps.LocalDatabase(":memory:", name="alice")
    bob_db = ps.LocalDatabase(":memory:", name="bob")
    # a live sync rides out a lost server for ever by default; this demo gives up after
    # five attempts in a row (a few seconds) instead
    alice, bob = (ps.create_client(max_attempts=5, initial_delay=0.2, max_delay=2.0)
                  for _ in range(2))
    try:
        alice.connect(args.url)
        bob.connect(args.url)
        a = alice.sync(alice_db, remote_name=args.list, credentials=credentials, live=True)
        b = bob.sync(bob_db, remote_name=args.list, credentials=credentials, live=True)
        receivers = [(a, arrived("alice")), (b, arrived("bob"))]
        for sync, receiver in receivers:
            signals.sync_change.connect(receiver, sender=sync, weak=False)

        def settle() -> None:
            """Both sides hold every edit made so far."""
            for sync in (a, b, a):
                sync.wait_in_sync(TIMEOUT)

        print("alice and bob load the list (empty on a first run)")
        settle()
        print("alice adds three todos")
        for key, title in (("milk", "Buy milk"), ("bike", "Fix the bike"), ("mom", "Call mom")):
            put_over(alice_db, {"_id": key, "title": title, "done": False})
        settle()

        print("bob ticks off 'Buy milk' and adds one")
        milk = bob_db.get("milk")
        bob_db.put({**milk, "done": True})
        put_over(bob_db, {"_id": "plants", "title": "Water the plants", "done": False})
        settle()

        print("alice deletes 'Fix the bike'")
        bike = alice_db.get("bike")
        alice_db.delete("bike", bike["_rev"])
        settle()

        for sync, receiver in receivers:
            signals.sync_change.disconnect(receiver, sender=sync)
        mine, theirs = show(alice_db), show(bob_db)
        print("alice's list:", *mine, sep="\n  ")
        print("bob's list:  ", *theirs, sep="\n  ")
        same = mine == theirs and len(mine) == 3
        print("same list on both sides" if same else "THE LISTS DIFFER")
        return 0 if same else 1
    finally:
        alice.close()
        bob.close()
        if server is not None:
            server.stop()
        for db in (alice_db, bob_db, *served.values()):
            db.close()


if __name__ == "__main__":
    sys.exit(main())
