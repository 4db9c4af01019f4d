"""Replication throughput: docs/s, median of N runs.

1. local → local: a one-shot replication of 100,000 small (~300-byte) docs between two
   embedded SQLite stores (files in a temp dir), in-process.
2. CouchDB-protocol server → local: 10,000 docs from the test server
   (tests/couchserver.py's ``start``) into a fresh embedded store.

    python3 bench/bench_replicate.py [--docs 100000] [--couch-docs 10000] [--runs 3]
                                     [--batch-size 500] [--modes 1,10] [--no-couch]

Each figure is given per ``batches_limit`` mode: 1 runs the read side inline, 10 (the
default) reads ahead on a second thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pouchsync_sync.replication import replicate  # noqa: E402
from pouchsync_sync.store.local import LocalDatabase  # noqa: E402

FILLER = "lorem ipsum dolor sit amet " * 8


def small_doc(i: int) -> dict[str, Any]:
    """About 300 bytes of JSON."""
    return {"_id": f"doc{i:08d}", "type": "todo", "n": i, "done": i % 3 == 0,
            "title": f"item number {i}", "tags": ["a", "b", str(i % 17)],
            "text": FILLER[: 160]}


def fill(db: Any, count: int, chunk: int = 2000) -> None:
    for start in range(0, count, chunk):
        db.bulk_docs([small_doc(i) for i in range(start, min(count, start + chunk))])


def interleaved_runs(runs: int, modes: list[int],
                     one: Callable[[int, int], tuple[float, int]]) -> dict[int, float]:
    """Median docs/s per mode; modes alternate run by run so load drifts hit all alike."""
    rates: dict[int, list[float]] = {mode: [] for mode in modes}
    for run in range(runs):
        for mode in modes:
            seconds, written = one(mode, run)
            rates[mode].append(written / seconds)
            print(f"  run {run + 1}, batches_limit={mode}: {written} docs in {seconds:.2f} s"
                  f" = {written / seconds:,.0f} docs/s", flush=True)
    return {mode: statistics.median(values) for mode, values in rates.items()}


def bench_local(count: int, runs: int, batch_size: int, modes: list[int]) -> dict[int, float]:
    with tempfile.TemporaryDirectory(prefix="pouchsync-bench-") as tmp:
        source = LocalDatabase(os.path.join(tmp, "source.sqlite"))
        t0 = time.perf_counter()
        fill(source, count)
        print(f"  filled source with {count} docs in {time.perf_counter() - t0:.1f} s", flush=True)

        medians = interleaved_runs(runs, modes, one_run(source, tmp, count, batch_size))
        source.close()
    return medians


def one_run(source: Any, tmp: str, count: int, batch_size: int
            ) -> Callable[[int, int], tuple[float, int]]:
    """``(mode, run) -> (seconds, docs written)``: one replication of ``source`` into a
    fresh SQLite file in ``tmp`` with ``batches_limit=mode``."""
    def one(mode: int, run: int) -> tuple[float, int]:
        target = LocalDatabase(os.path.join(tmp, f"target{mode}-{run}.sqlite"))
        try:
            t = time.perf_counter()
            result = replicate(source, target, batch_size=batch_size, batches_limit=mode)
            seconds = time.perf_counter() - t
            assert result.status == "complete" and result.docs_written == count, result
            return seconds, result.docs_written
        finally:
            target.close()

    return one


def bench_couch(count: int, runs: int, batch_size: int, modes: list[int]
                ) -> dict[int, float] | None:
    try:
        from pouchsync_sync import CouchDB  # type: ignore[attr-defined]
        from tests.couchserver import start
    except ImportError as exc:
        print(f"  skipped: {exc}")
        return None
    url, stop = start()
    try:
        server = CouchDB(url)
        source = server.database("bench-source", create=True)
        t0 = time.perf_counter()
        fill(source, count, chunk=1000)
        print(f"  filled the server with {count} docs in {time.perf_counter() - t0:.1f} s",
              flush=True)
        with tempfile.TemporaryDirectory(prefix="pouchsync-bench-") as tmp:
            medians = interleaved_runs(runs, modes, one_run(source, tmp, count, batch_size))
        server.close()
    finally:
        stop()
    return medians


def machine() -> str:
    import orjson
    fast = f"orjson {orjson.__version__}"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}; "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {fast}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--couch-docs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--modes", default="1,10", help="batches_limit values to measure")
    parser.add_argument("--no-couch", action="store_true")
    args = parser.parse_args()
    modes = [int(m) for m in args.modes.split(",")]
    print(f"machine: {machine()}")
    print(f"load average before: {os.getloadavg()}")
    print(f"local -> local, {args.docs} docs, batch_size={args.batch_size}:")
    local_rates = bench_local(args.docs, args.runs, args.batch_size, modes)
    couch_rates = None
    if not args.no_couch:
        print(f"CouchDB-protocol server -> local, {args.couch_docs} docs, "
              f"batch_size={args.batch_size}:")
        couch_rates = bench_couch(args.couch_docs, args.runs, args.batch_size, modes)
    print(f"load average after: {os.getloadavg()}")
    print("summary (median docs/s):")
    for mode, rate in local_rates.items():
        print(f"  local -> local, {args.docs} docs, batches_limit={mode}: {rate:,.0f} docs/s")
    for mode, rate in (couch_rates or {}).items():
        print(f"  server -> local, {args.couch_docs} docs, batches_limit={mode}: {rate:,.0f} docs/s")


if __name__ == "__main__":
    main()
