"""The CouchDB-protocol server behind the sync server goes away and comes back.

1. An outage: the tests' proxy between the sync server and CouchDB resets every
   connection and refuses new ones for a while, then lets them through again. CouchDB
   keeps its data, so the check is complete: the live syncs go ``offline``, retry with
   backoff, resume, and every write made on any side (including during the outage) ends
   up everywhere with identical revision trees.
2. A real restart of the CouchDB-protocol server on the same port. The test server is
   pouchdb-server ``--in-memory`` (``tests/couchserver.py`` has no on-disk mode), so the
   restart loses CouchDB's data: the database is re-created empty (as an operator would
   restore it), and what must hold is that the clients lose nothing and push everything
   back (their checkpoints on the lost server are gone, so the replicator starts over).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from pouchsync_sync import CouchDB, signals
from pouchsync_sync.client import SyncState

from .helpers import TOKEN, missing_writes, wait_converged
from .proxy import FaultProxy, wait_until


def _couch_backed(couch: CouchDB, name: str) -> Any:
    def on_request(credentials: Any, db_name: str) -> Any:
        if credentials != TOKEN or db_name != name:
            raise PermissionError("not allowed")
        return couch.database(db_name)
    return on_request


def test_couch_outage_syncs_go_offline_back_off_and_resume(servers, clients, local, recorders,
                                                            couch_url: str, full_run: bool) -> None:
    outages = 5 if full_run else 1
    parts = urlsplit(couch_url)
    name = f"outage-{threading.get_ident() % 100000}"
    direct = CouchDB(couch_url)
    direct.database(name, create=True)
    with FaultProxy(parts.port, parts.hostname or "127.0.0.1") as proxy:
        couch = CouchDB(f"http://127.0.0.1:{proxy.port}", timeout=5.0)
        try:
            server = servers(_couch_backed(couch, name), follow_timeout=1.0)
            a, b = local(name), local(name)
            syncs = [clients(max_delay=0.5).connect(server.url).sync(db, credentials=TOKEN, live=True)
                     for db in (a, b)]
            paused = [recorders(signals.sync_paused, sync) for sync in syncs]

            def offline_events() -> int:  # sync_paused without a direction: offline
                return sum(1 for rec in paused for e in rec.events if e.get("direction") is None)

            sides = {"a": a, "b": b, "couch": direct.database(name)}
            written: list[tuple[str, str]] = []

            def put(db: Any, doc_id: str) -> None:
                result = db.put({"_id": doc_id})
                written.append((result["id"], result["rev"]))

            put(a, "before-a")
            put(b, "before-b")
            wait_converged(sides, syncs, timeout=60)
            offline_seen = 0
            for round_no in range(outages):
                proxy.refuse = True
                proxy.cut_all()
                # writes on both clients while CouchDB is unreachable
                for i in range(20):
                    put(a, f"during-{round_no}-a-{i}")
                    put(b, f"during-{round_no}-b-{i}")
                # the syncs notice: offline (sync_paused with direction None), retrying
                assert paused[0].wait_for(lambda ev: offline_events() > offline_seen, timeout=30), \
                    "no sync went offline"
                offline_seen = offline_events()
                proxy.refuse = False
                wait_converged(sides, syncs, timeout=90)
                for side, db in sides.items():
                    assert not missing_writes(db, written), f"{side} lost writes after outage {round_no}"
            for sync in syncs:
                assert sync.state in (SyncState.ACTIVE, SyncState.PAUSED), sync
                assert sync.status.last_error is not None  # it did see the outage
            print(f"\ncouch outage: {outages} outages, {len(written)} writes, "
                  f"{offline_seen} offline events, 0 lost")
        finally:
            couch.close()
            direct.close()


def test_couch_server_restarted_clients_push_everything_back(servers, clients, local, recorders,
                                                             full_run: bool) -> None:
    from tests.couchserver import launch

    restarts = 3 if full_run else 1
    first = launch()
    port = urlsplit(first.url).port
    name = "restarted"
    couches = [first]
    handle = CouchDB(first.url, timeout=5.0)
    try:
        handle.database(name, create=True)
        server = servers(_couch_backed(handle, name), follow_timeout=1.0)
        a, b = local(name), local(name)
        syncs = [clients(max_delay=0.5).connect(server.url).sync(db, credentials=TOKEN, live=True)
                 for db in (a, b)]
        paused = [recorders(signals.sync_paused, sync) for sync in syncs]
        written: list[tuple[str, str]] = []

        def put(db: Any, doc_id: str) -> None:
            result = db.put({"_id": doc_id})
            written.append((result["id"], result["rev"]))

        for i in range(50):
            put(a if i % 2 else b, f"before-{i}")
        wait_converged({"a": a, "b": b, "couch": handle.database(name)}, syncs, timeout=60)
        for round_no in range(restarts):
            couches[-1].stop()  # kills the process group: in-memory data gone
            before = sum(len(r.events) for r in paused)
            for i in range(20):
                put(a, f"down-{round_no}-a-{i}")
                put(b, f"down-{round_no}-b-{i}")
            assert paused[0].wait_for(lambda ev: sum(len(r.events) for r in paused) > before,
                                      timeout=30)
            restarted = launch(config={"httpd": {"port": port}})
            couches.append(restarted)
            assert restarted.url == first.url
            handle.database(name, create=True)  # restored empty, as an operator would
            wait_converged({"a": a, "b": b, "couch": handle.database(name)}, syncs, timeout=90)
            for side, db in (("a", a), ("b", b), ("couch", handle.database(name))):
                assert not missing_writes(db, written), f"{side} lost writes after restart {round_no}"
        print(f"\ncouch restart: {restarts} restarts, {len(written)} writes, all pushed back, 0 lost")
    finally:
        handle.close()
        for couch in couches:
            couch.stop()


def test_backend_failure_takes_a_live_sync_offline_promptly(servers, clients, local, recorders,
                                                             couch_url: str) -> None:
    """One direction of a live round failing (a push answered 503) must stop the other at
    once, even while it waits in a server longpoll (the client's default is 25 s):
    otherwise the sync reports nothing and retries nothing for that long."""
    import time

    parts = urlsplit(couch_url)
    name = f"prompt-{threading.get_ident() % 100000}"
    direct = CouchDB(couch_url)
    direct.database(name, create=True)
    with FaultProxy(parts.port, parts.hostname or "127.0.0.1") as proxy:
        couch = CouchDB(f"http://127.0.0.1:{proxy.port}", timeout=5.0)
        try:
            server = servers(_couch_backed(couch, name), follow_timeout=1.0)
            a = local(name)
            sync = clients(longpoll_timeout=25.0).connect(server.url).sync(a, credentials=TOKEN, live=True)
            paused = recorders(signals.sync_paused, sync)
            a.put({"_id": "first"})
            sync.wait_in_sync(timeout=30)
            proxy.refuse = True
            proxy.cut_all()
            started = time.monotonic()
            a.put({"_id": "during"})  # the push of this fails with 503 at once
            assert paused.wait_for(lambda ev: any(e.get("direction") is None for e in ev),
                                   timeout=20), "the sync never went offline"
            took = time.monotonic() - started
            proxy.refuse = False
            assert took < 10.0, f"offline only after {took:.1f}s (the pull longpoll was waited out)"
            sync.wait_in_sync(timeout=30)
            assert direct.database(name).get("during")["_id"] == "during"
        finally:
            couch.close()
            direct.close()


def test_flaky_couch_link_cut_mid_response_keeps_syncs_converging(servers, clients, local,
                                                                   couch_url: str, full_run: bool) -> None:
    """The link between the sync server and CouchDB is reset inside requests and
    responses (mid-body) again and again while two clients sync live and write: no
    sync ends in error, and all three sides converge."""
    import random

    rounds = 20 if full_run else 3
    rng = random.Random(17)
    parts = urlsplit(couch_url)
    name = f"flaky-{threading.get_ident() % 100000}"
    direct = CouchDB(couch_url)
    direct.database(name, create=True)
    with FaultProxy(parts.port, parts.hostname or "127.0.0.1") as proxy:
        couch = CouchDB(f"http://127.0.0.1:{proxy.port}", timeout=5.0)
        try:
            server = servers(_couch_backed(couch, name), follow_timeout=1.0)
            a, b = local(name), local(name)
            syncs = [clients(max_delay=0.3).connect(server.url).sync(db, credentials=TOKEN, live=True,
                                                                    batch_size=10)
                     for db in (a, b)]
            sides = {"a": a, "b": b, "couch": direct.database(name)}
            written: list[tuple[str, str]] = []
            for round_no in range(rounds):
                cuts_before = proxy.cuts
                proxy.cut_after(rng.randint(200, 6000))
                for i in range(30):
                    for side, db in (("a", a), ("b", b)):
                        result = db.put({"_id": f"{side}-{round_no}-{i}", "pad": "x" * rng.randint(0, 2000)})
                        written.append((result["id"], result["rev"]))
                result = sides["couch"].put({"_id": f"couch-{round_no}"})
                written.append((result["id"], result["rev"]))
                # the writes travel over the flaky link until it has been cut a few times
                assert wait_until(lambda: proxy.cuts >= cuts_before + 3, timeout=30)
                proxy.cut_after(None)
                wait_converged(sides, syncs, timeout=90)
                for side, db in sides.items():
                    assert not missing_writes(db, written), f"{side} lost writes in round {round_no}"
                for sync in syncs:
                    assert not sync.state.final, (sync, sync.status.last_error)
            print(f"\nflaky couch link: {rounds} rounds, {proxy.cuts} cuts, {len(written)} writes, 0 lost")
        finally:
            couch.close()
            direct.close()


def test_couch_answers_cut_anywhere_are_transport_errors(couch_url: str) -> None:
    """Every CouchDB answer cut at any byte (inside the status line, the headers or the
    body) is a retryable TransportError, never a silently empty answer: http.client
    takes the end of the stream as the end of the headers, so a cut inside them looked
    like a complete response with no body (``get`` returned None, ``info`` a TypeError,
    and a sync server answered ``ok: null`` that crashed the client's replicator)."""
    from pouchsync_sync import TransportError

    parts = urlsplit(couch_url)
    name = f"cut-{threading.get_ident() % 100000}"
    direct = CouchDB(couch_url)
    direct.database(name, create=True).put({"_id": "a", "v": 1})
    calls = {
        "info": lambda db: isinstance(db.info(), dict),
        "get": lambda db: db.get("a")["v"] == 1,
        "changes": lambda db: isinstance(db.changes()["results"], list),
        "all_docs": lambda db: isinstance(db.all_docs()["rows"], list),
        "revs_diff": lambda db: isinstance(db.revs_diff({"a": ["1-x"]}), dict),
    }
    outcomes: dict[str, int] = {"ok": 0, "transport": 0}
    try:
        with FaultProxy(parts.port, parts.hostname or "127.0.0.1") as proxy:
            couch = CouchDB(f"http://127.0.0.1:{proxy.port}", timeout=5.0)
            try:
                db = couch.database(name)
                for budget in range(60, 900, 9):  # request and answer bytes before the cut
                    proxy.cut_after(budget)
                    for op, check in calls.items():
                        try:
                            assert check(db), f"{op} cut after {budget} bytes: wrong answer"
                            outcomes["ok"] += 1
                        except TransportError as exc:
                            assert exc.retryable, exc
                            outcomes["transport"] += 1
            finally:
                couch.close()
    finally:
        direct.close()
    assert outcomes["transport"] > 50 and outcomes["ok"] > 10, outcomes
