"""The benchmarks' sync client process. Prints one JSON line per result.

    python3 bench/sync_client.py oneshot URL --db PATH --direction pull|push --expect N
    python3 bench/sync_client.py latency URL --writes 1000
    python3 bench/sync_client.py fanout URL --count 250

``oneshot``: one one-shot ``Client.sync`` in one direction; wall and CPU time, docs/s,
calls by op (counted by wrapping ``Channel.call`` in this process only), bytes both ways
on the client's TCP socket (``ss -tin``: websocket frames with their headers), peak RSS.

``latency``: two clients A and B in this process, each with a live two-way sync of its
own embedded store with the same server database. Each write on A's store is timed until
B's store returns it from ``changes`` (a longpoll watcher on B), one write at a time.

``fanout``: ``--count`` clients, each with a live pull sync into its own ``:memory:``
store. Prints ``{"ready"}`` once all are in sync, then for each line ``ID`` on stdin it
waits until every client's store has doc ``ID`` and prints the arrival times
(``time.monotonic()``, comparable with the server process's ``t0``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import own_usage, percentile, raise_nofile, small_doc  # noqa: E402

import pouchsync_sync as ps  # noqa: E402
from pouchsync_sync import signals  # noqa: E402
from pouchsync_sync.client import channel as _channel  # noqa: E402

CALLS: Counter[str] = Counter()
CALL_SECONDS: Counter[str] = Counter()
_calls_lock = threading.Lock()


def count_calls() -> None:
    """Count calls by op (bench instrumentation; the call itself is unchanged)."""
    original = _channel.Channel.call

    def call(self: Any, op: str, args: Any = None, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, op, args, **kw)
        finally:
            with _calls_lock:
                CALLS[op] += 1
                CALL_SECONDS[op] += time.perf_counter() - t0

    _channel.Channel.call = call  # type: ignore[method-assign]


def socket_bytes(url: str) -> dict[str, int]:
    """bytes sent/received by this machine's client sockets to the server's port."""
    port = urlparse(url).port
    try:
        out = subprocess.run(["ss", "-tinH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    sent = sum(int(m) for m in re.findall(r"bytes_acked:(\d+)", out))
    received = sum(int(m) for m in re.findall(r"bytes_received:(\d+)", out))
    return {"bytes_sent": sent, "bytes_received": received}


def oneshot(args: argparse.Namespace) -> None:
    count_calls()
    db = ps.LocalDatabase(args.db)
    client = ps.create_client(ping_interval=30.0)
    client.connect(args.url)
    client.wait_connected(30)
    before = socket_bytes(args.url)
    usage0 = own_usage()
    t0 = time.perf_counter()
    sync = client.sync(db, remote_name="bench", direction=args.direction,
                       batch_size=args.batch_size)
    result = sync.wait(timeout=args.timeout)
    seconds = time.perf_counter() - t0
    usage1 = own_usage()
    after = socket_bytes(args.url)
    moved = result.docs_pulled if args.direction == "pull" else result.docs_pushed
    info = db.info()
    client.close()
    db.close()
    batches = -(-moved // args.batch_size) if moved else 0
    out = {
        "direction": args.direction, "docs": moved, "expected": args.expect,
        "local_doc_count": info.get("doc_count"), "seconds": seconds,
        "docs_per_s": moved / seconds if seconds else 0.0,
        "cpu_s": usage1["cpu_s"] - usage0["cpu_s"],
        "peak_rss_mb": usage1["peak_rss_mb"], "threads": usage1["threads"],
        "calls": dict(CALLS),
        "call_seconds": {k: round(v, 3) for k, v in CALL_SECONDS.items()}, "batches": batches, "batch_size": args.batch_size,
        "bytes_sent": after.get("bytes_sent", 0) - before.get("bytes_sent", 0),
        "bytes_received": after.get("bytes_received", 0) - before.get("bytes_received", 0),
        "state": result.state.value,
    }
    print(json.dumps(out), flush=True)


class Watcher:
    """Follows a local store's changes feed on a thread; ``wait_for(id)``."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._since = db.info()["update_seq"]
        self._thread = threading.Thread(target=self._run, name="pouchsync-bench-watch",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            res = self.db.changes(since=self._since, feed="longpoll", timeout=0.5)
            now = time.monotonic()
            if res["results"]:
                with self._cond:
                    for row in res["results"]:
                        self.seen.setdefault(row["id"], now)
                    self._cond.notify_all()
            self._since = res["last_seq"]

    def wait_for(self, doc_id: str, timeout: float) -> float | None:
        with self._cond:
            if not self._cond.wait_for(lambda: doc_id in self.seen, timeout):
                return None
            return self.seen[doc_id]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def latency(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pouchsync-bench-") as tmp:
        db_a = ps.LocalDatabase(os.path.join(tmp, "a.sqlite"))
        db_b = ps.LocalDatabase(os.path.join(tmp, "b.sqlite"))
        client_a = ps.create_client(ping_interval=30.0)
        client_b = ps.create_client(ping_interval=30.0)
        client_a.connect(args.url)
        client_b.connect(args.url)
        sync_a = client_a.sync(db_a, remote_name="bench", live=True)
        sync_b = client_b.sync(db_b, remote_name="bench", live=True)
        sync_a.wait_in_sync(60)
        sync_b.wait_in_sync(60)
        watcher = Watcher(db_b)
        lat: list[float] = []
        missed = 0
        prefix = f"lat-{os.getpid()}-"
        t_start = time.perf_counter()
        cpu0 = time.process_time()
        for i in range(args.warmup + args.writes):
            doc = small_doc(i)
            doc["_id"] = f"{prefix}{i:06d}"
            t0 = time.monotonic()
            db_a.put(doc)
            arrived = watcher.wait_for(doc["_id"], 10.0)
            if arrived is None:
                missed += 1
                continue
            if i >= args.warmup:
                lat.append(arrived - t0)
        wall = time.perf_counter() - t_start
        cpu = time.process_time() - cpu0
        check = db_b.get(f"{prefix}{args.warmup + args.writes - 1:06d}")
        watcher.stop()
        sync_a.cancel()
        sync_b.cancel()
        client_a.close()
        client_b.close()
        db_a.close()
        db_b.close()
    ms = [x * 1000 for x in lat]
    print(json.dumps({"writes": len(ms), "missed": missed,
                      "p50_ms": percentile(ms, 0.5), "p90_ms": percentile(ms, 0.9),
                      "p99_ms": percentile(ms, 0.99), "max_ms": max(ms) if ms else None,
                      "wall_s": wall, "cpu_s": cpu, "last_readable": check["_id"]}),
          flush=True)


def fanout(args: argparse.Namespace) -> None:
    clients = []
    syncs = []
    dbs = []
    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()
    cond = threading.Condition(lock)

    def on_change(sender: Any, **kw: Any) -> None:
        now = time.monotonic()
        docs = kw.get("docs") or []
        with cond:
            for doc in docs:
                doc_id = doc.get("_id") if isinstance(doc, dict) else None
                if doc_id is not None and doc_id.startswith("fan-"):
                    arrivals.setdefault(doc_id, []).append(now)
            cond.notify_all()

    signals.sync_change.connect(on_change)
    count_calls()
    t0 = time.monotonic()
    failed: Counter[str] = Counter()
    for _ in range(args.count):
        try:
            db = ps.LocalDatabase(":memory:")
            dbs.append(db)
            client = ps.create_client(ping_interval=60.0, connect_timeout=60.0, open_timeout=120.0)
            clients.append(client)
            client.connect(args.url)
            syncs.append(client.sync(db, remote_name="bench", live=True, direction="pull"))
        except (RuntimeError, OSError, ps.PouchSyncError) as exc:
            # a limit of the machine (threads, fds, maps): report it, keep what runs
            failed[f"starting a client: {type(exc).__name__}: {exc}"[:160]] += 1
            break
    live = []
    for sync in syncs:
        try:
            sync.wait_in_sync(max(5.0, args.ready_timeout - (time.monotonic() - t0)))
            live.append(sync)
        except (RuntimeError, ps.PouchSyncError) as exc:
            failed[f"not in sync: {type(exc).__name__}: {exc}"[:160]] += 1
    print(json.dumps({"ready": len(live), "of": args.count, "failed": dict(failed),
                      "seconds": time.monotonic() - t0, **own_usage()}), flush=True)
    expected = len(live)
    for line in sys.stdin:
        doc_id = line.strip()
        if not doc_id:
            continue
        with _calls_lock:
            calls0 = dict(CALLS)
        cpu0 = time.process_time()
        with cond:
            cond.wait_for(lambda: len(arrivals.get(doc_id, [])) >= expected, args.timeout)
            times = list(arrivals.get(doc_id, []))
        # the calls that follow an arrival (checkpoint, next longpoll) may still be in flight
        with _calls_lock:
            calls = {op: n - calls0.get(op, 0) for op, n in CALLS.items() if n != calls0.get(op, 0)}
        print(json.dumps({"id": doc_id, "arrived": len(times), "of": expected,
                          "times": times, "calls": calls,
                          "cpu_s_during": time.process_time() - cpu0, **own_usage()}), flush=True)
    for sync in syncs:
        sync.cancel()
    for client in clients:
        client.close()
    for db in dbs:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("oneshot", "latency", "fanout"))
    parser.add_argument("url")
    parser.add_argument("--db")
    parser.add_argument("--direction", choices=("pull", "push"), default="pull")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--count", type=int, default=250)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    raise_nofile()
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    {"oneshot": oneshot, "latency": latency, "fanout": fanout}[args.mode](args)


if __name__ == "__main__":
    main()
