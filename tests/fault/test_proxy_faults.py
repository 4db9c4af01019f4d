"""Bad networks, through the tests' own TCP proxy (``proxy.py``) between the clients and
an in-process server: connections reset mid-frame, slow links, and a server that stops
answering without closing (a stall only pings can detect)."""

from __future__ import annotations

import base64
import random
import threading
from typing import Any

from pouchsync_sync import signals

from .helpers import TOKEN, missing_writes, wait_converged
from .proxy import FaultProxy, wait_until

DB = "net"


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def test_cuts_mid_frame_and_delays_keep_live_syncs_converging(hub, servers, clients, local,
                                                              full_run: bool) -> None:
    rounds = 30 if full_run else 4
    rng = random.Random(11)
    server = servers(hub.on_request, ping_interval=1.0)
    with FaultProxy(_port(server.url)) as proxy:
        a, b = local(DB), local(DB)
        syncs = [clients(ping_interval=0.5, call_timeout=10.0).connect(proxy.url())
                 .sync(db, credentials=TOKEN, live=True, batch_size=20) for db in (a, b)]
        sides = {"server": hub.db(DB), "a": a, "b": b}
        written: list[tuple[str, str]] = []
        for round_no in range(rounds):
            stop = threading.Event()

            def write(db: Any, prefix: str) -> None:
                for i in range(60):
                    body = {"_id": f"{prefix}-{round_no}-{i:03d}", "pad": "x" * rng.randint(0, 3000)}
                    if i % 5 == 0:  # attachments travel too (inline in bulk_get, base64)
                        data = base64.b64encode(rng.randbytes(rng.randint(1, 20_000))).decode()
                        body["_attachments"] = {"blob.bin": {"content_type": "application/octet-stream",
                                                             "data": data}}
                    result = db.put(body)
                    written.append((result["id"], result["rev"]))
                    if stop.wait(0.005):
                        return

            threads = [threading.Thread(target=write, args=(db, name), name=f"fault-writer-{name}")
                       for name, db in sides.items()]
            for t in threads:
                t.start()
            # chaos while the writers run: cut inside frames, slow down, reset everything
            proxy.delay = rng.choice([0.0, 0.002, 0.01])
            proxy.cut_after(rng.randint(50, 20_000))
            threads[0].join(rng.uniform(0.2, 0.6))
            proxy.cut_after(None)
            proxy.cut_all()
            for t in threads:
                t.join(30)
            proxy.delay = 0.0
            wait_converged(sides, syncs, timeout=60)
            for name, db in sides.items():
                assert not missing_writes(db, written), f"{name} lost writes in round {round_no}"
        assert proxy.cuts >= rounds
        print(f"\nproxy: {rounds} rounds, {proxy.cuts} cuts, {proxy.connections_total} connections, "
              f"{len(written)} writes, 0 lost")


def test_stalled_server_is_detected_by_ping_and_client_reconnects(hub, servers, clients, local,
                                                                  recorders) -> None:
    server = servers(hub.on_request, ping_interval=0.5)
    with FaultProxy(_port(server.url)) as proxy:
        a, b = local(DB), local(DB)
        client_a = clients(ping_interval=0.25, dead_timeout=1.0)
        disconnects = recorders(signals.client_disconnect, client_a)
        connects = recorders(signals.client_connect, client_a)
        sync_a = client_a.connect(proxy.url()).sync(a, credentials=TOKEN, live=True)
        sync_b = clients().connect(server.url).sync(b, credentials=TOKEN, live=True)
        a.put({"_id": "before"})
        sync_a.wait_in_sync(timeout=20)
        sync_b.wait_in_sync(timeout=20)
        assert connects.wait_for(lambda ev: len(ev) == 1)

        assert proxy.stall_current() == 1  # bytes stop flowing; no FIN, no RST
        b.put({"_id": "during-stall"})
        a.put({"_id": "a-during-stall"})
        # the client notices the silence through its pings and drops the connection ...
        assert disconnects.wait_for(lambda ev: len(ev) >= 1, timeout=10)
        # ... and connects again (the proxy lets new connections through)
        assert connects.wait_for(lambda ev: len(ev) >= 2, timeout=10)
        sync_a.wait_in_sync(timeout=20)
        sync_b.wait_in_sync(timeout=20)
        assert a.get("during-stall")["_id"] == "during-stall"
        assert b.get("a-during-stall")["_id"] == "a-during-stall"
        # the server dropped its side of the stalled socket by ping too (no thread held)
        assert wait_until(lambda: server.stats()["connections"] == 2, timeout=10)
        proxy.resume()


def test_stall_while_pushing_big_documents_is_detected(hub, servers, clients, local, recorders) -> None:
    """The link stalls while the client is in the middle of sending megabytes: its send
    blocks once the socket buffers are full. The keepalive must still notice the silence
    (a ping stuck behind the blocked send must not stall the keepalive itself), drop the
    connection and reconnect; the push then completes."""
    server = servers(hub.on_request, ping_interval=0.5)
    with FaultProxy(_port(server.url)) as proxy:
        a = local(DB)
        client = clients(ping_interval=0.25, dead_timeout=1.0)
        disconnects = recorders(signals.client_disconnect, client)
        connects = recorders(signals.client_connect, client)
        sync = client.connect(proxy.url()).sync(a, credentials=TOKEN, live=True, batch_size=50)
        a.put({"_id": "first"})
        sync.wait_in_sync(timeout=20)
        proxy.stall_current()
        blob = "b" * 200_000
        for start in range(0, 300, 50):  # 60 MB to push into a stalled link
            a.bulk_docs([{"_id": f"big-{i:03d}", "blob": blob} for i in range(start, start + 50)])
        assert disconnects.wait_for(lambda ev: len(ev) >= 1, timeout=15), "stall never detected"
        assert connects.wait_for(lambda ev: len(ev) >= 2, timeout=15)
        sync.wait_in_sync(timeout=60)
        assert hub.db(DB).info()["doc_count"] == 301
        proxy.resume()
