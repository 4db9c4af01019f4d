"""``pouchsync demo``: the whole library in a few seconds, on this machine only.

An embedded sync server on a free loopback port, two local stores (alice and bob, two
devices), writes on both, syncs, both converged; one conflict that both sides resolve
the same way by CouchDB's rule, then merged by the app; a live sync with its latency.
Everything lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parser", "run_demo", "winner_by_rule"]

TOKEN = "demo-token"


def winner_by_rule(revs: list[str]) -> str:
    """CouchDB's deterministic winner among conflicting leaf revisions: the longest
    history (highest generation) wins, then the greatest revision hash."""
    return max(revs, key=lambda rev: (int(rev.split("-", 1)[0]), rev.split("-", 1)[1]))


def _short(rev: str) -> str:
    gen, _, digest = rev.partition("-")
    return f"{gen}-{digest[:7]}"


def _fingerprint(db: Any) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each document's winning revision and conflicts: equal on converged stores."""
    rows = db.all_docs(include_docs=True, conflicts=True)["rows"]
    return {r["id"]: (r["value"]["rev"], tuple(sorted(r["doc"].get("_conflicts", []))))
            for r in rows}


def run_demo(out: TextIO, *, timeout: float = 30.0) -> int:
    from ..client import create_client
    from ..datadir import DataDir
    from ..errors import Denied
    from ..server import create_server
    from ..store.local import LocalDatabase

    started = time.monotonic()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="pouchsync-demo-") as tmp_name:
        tmp = Path(tmp_name)
        data = DataDir(tmp / "server")

        def on_request(credentials: Any, db_name: str) -> Any:
            if isinstance(credentials, dict) and credentials.get("token") == TOKEN:
                return data.database(db_name)
            raise Denied("a valid token is required")

        server = create_server(on_request, follow_timeout=0.25).start(port=0)
        (tmp / "alice").mkdir()
        (tmp / "bob").mkdir()
        alice = LocalDatabase(tmp / "alice" / "todos.sqlite")
        bob = LocalDatabase(tmp / "bob" / "todos.sqlite")
        clients = {name: create_client(initial_delay=0.05, max_delay=0.5, max_attempts=5)
                   for name in ("alice", "bob")}
        stores = {"alice": alice, "bob": bob}
        creds = {"token": TOKEN}
        try:
            assert server.url is not None  # set by start()
            for client in clients.values():
                client.connect(server.url)

            def sync(name: str) -> None:
                result = clients[name].sync(stores[name], credentials=creds).wait(timeout)
                say(f"   {name:<5} synced: pushed {result.docs_pushed}, "
                    f"pulled {result.docs_pulled}")

            say("pouchsync demo: an embedded sync server and two devices, on this machine")
            say(f"   server {server.url} (one SQLite file per database in a temp dir)")
            say("   alice  todos.sqlite      bob  todos.sqlite      (each its own store)")
            say()
            say("1. Offline, each device writes its own todos")
            alice.put({"_id": "buy-milk", "title": "Buy milk", "done": False})
            alice.put({"_id": "call-mom", "title": "Call mom", "done": False})
            bob.put({"_id": "fix-bike", "title": "Fix the bike", "done": False})
            say("   alice  + buy-milk, call-mom      bob  + fix-bike")
            say()
            say("2. Both sync with the server (one-shot, both directions)")
            for name in ("alice", "bob", "alice"):
                sync(name)
            same = _fingerprint(alice) == _fingerprint(bob)
            say(f"   converged: alice {alice.info()['doc_count']} docs, bob "
                f"{bob.info()['doc_count']} docs, same revisions: {'yes' if same else 'NO'}")
            say()
            say('3. A conflict: both edit "buy-milk" offline, then sync')
            rev = alice.get("buy-milk")["_rev"]
            a_rev = alice.put({"_id": "buy-milk", "_rev": rev, "title": "Buy oat milk",
                               "done": False})["rev"]
            b_rev = bob.put({"_id": "buy-milk", "_rev": rev, "title": "Buy milk",
                             "done": True})["rev"]
            say(f'   alice  title -> "Buy oat milk"  ({_short(a_rev)})')
            say(f"   bob    done  -> true            ({_short(b_rev)})")
            for name in ("alice", "bob", "alice"):
                sync(name)
            expected = winner_by_rule([a_rev, b_rev])
            docs = {name: db.get("buy-milk", conflicts=True) for name, db in stores.items()}
            agree = all(d["_rev"] == expected and d.get("_conflicts") == [
                a_rev if expected == b_rev else b_rev] for d in docs.values())
            loser = a_rev if expected == b_rev else b_rev
            say("   CouchDB's rule picks the same winner on every side, without talking:")
            say("   the longest history wins, then the greater revision id")
            say(f"   winner {_short(expected)} ({'bob' if expected == b_rev else 'alice'}'s edit) "
                f"on alice and bob: {'yes' if agree else 'NO'}; "
                f"{_short(loser)} kept in _conflicts")
            winner = docs["bob"]
            losing = bob.get("buy-milk", rev=loser)
            title = losing["title"] if winner["title"] == "Buy milk" else winner["title"]
            merged = {"_id": "buy-milk", "_rev": winner["_rev"], "title": title,
                      "done": winner["done"] or losing["done"]}
            bob.put(merged)
            bob.delete("buy-milk", loser)
            for name in ("bob", "alice"):
                sync(name)
            final = {name: db.get("buy-milk", conflicts=True) for name, db in stores.items()}
            resolved = all(not d.get("_conflicts") and d["title"] == "Buy oat milk" and d["done"]
                           for d in final.values())
            resolved = resolved and final["alice"]["_rev"] == final["bob"]["_rev"]
            say(f'   bob merges both edits and deletes the loser: {_short(final["bob"]["_rev"])} '
                f'"{final["bob"]["title"]}", done={str(final["bob"]["done"]).lower()}, '
                f"no conflicts on either side: {'yes' if resolved else 'NO'}")
            say()
            say("4. Live: alice writes, bob sees it through the server")
            latency = _live_latency(clients, stores, creds, timeout)
            say(f"   bob had alice's new todo {latency * 1000:.0f} ms after she wrote it")
            say()
            same_end = _fingerprint(alice) == _fingerprint(bob)
            ok = same and agree and resolved and same_end
            say(f"{'done' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s: "
                f"alice and bob hold the same {alice.info()['doc_count']} todos.")
            say("Next: pouchsync serve --help, pouchsync sync --help, README.md")
            return 0 if ok else 1
        finally:
            for client in clients.values():
                client.close()
            server.stop()
            alice.close()
            bob.close()
            data.close()


def _live_latency(clients: dict[str, Any], stores: dict[str, Any], creds: Any,
                  timeout: float) -> float:
    """Seconds from a write on alice to the document on bob, over live syncs."""
    from ..errors import Timeout

    alice, bob = stores["alice"], stores["bob"]
    syncs = [clients[name].sync(stores[name], credentials=creds, live=True)
             for name in ("alice", "bob")]
    try:
        for live in syncs:
            live.wait_in_sync(timeout)
        since = bob.info()["update_seq"]
        t0 = time.monotonic()
        alice.put({"_id": "water-plants", "title": "Water the plants", "done": False})
        deadline = t0 + timeout
        while True:
            feed = bob.changes(since=since, feed="longpoll",
                               timeout=max(0.01, deadline - time.monotonic()))
            if any(row["id"] == "water-plants" for row in feed["results"]):
                return time.monotonic() - t0
            since = feed["last_seq"]
            if time.monotonic() >= deadline:
                raise Timeout("the live change did not reach bob")
    finally:
        for live in syncs:
            live.cancel()
        for live in syncs:
            live.join(timeout)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="see two devices sync through a server, in a few seconds",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_demo(sys.stdout)
