"""Embedded store throughput: bulk_docs(new_edits=False), changes(include_docs), revs_diff.

    python3 bench/bench_store.py [--docs 100000] [--batch 500] [--runs 3]

Prints docs/s (median of runs, with min–max) for writing N small (~300 byte) docs
with their revision history in batches, reading them back through the changes feed,
and the time of one revs_diff call for 500 ids (half known).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pouchsync_sync import LocalDatabase  # noqa: E402


def make_docs(n: int) -> list[dict]:
    filler = "lorem ipsum dolor sit amet " * 8
    return [{"_id": f"doc-{i:07d}", "_rev": f"1-{i:032x}",
             "_revisions": {"start": 1, "ids": [f"{i:032x}"]},
             "n": i, "name": f"item {i}", "tags": ["alpha", "beta"], "text": filler[: 180]}
            for i in range(n)]


def run_once(docs: list[dict], batch: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        with LocalDatabase(Path(tmp) / "bench.sqlite") as db:
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(docs), batch):
                db.bulk_docs(docs[i:i + batch], new_edits=False)
            write = len(docs) / (time.perf_counter() - started)
            write_cpu = len(docs) / (time.process_time() - cpu)
            started = time.perf_counter()
            since, seen = 0, 0
            while True:
                page = db.changes(since=since, limit=batch, include_docs=True)
                if not page["results"]:
                    break
                seen += len(page["results"])
                since = page["last_seq"]
            read = seen / (time.perf_counter() - started)
            assert seen == len(docs)
            query = {d["_id"]: [d["_rev"]] for d in docs[:250]}
            query.update({f"new-{i}": ["1-abc"] for i in range(250)})
            started = time.perf_counter()
            for _ in range(20):
                diff = db.revs_diff(query)
            revs_diff_ms = (time.perf_counter() - started) / 20 * 1000
            assert len(diff) == 250
    return write, read, revs_diff_ms, write_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, python {platform.python_version()}, "
          f"sqlite {sqlite3.sqlite_version}, cpus {os.cpu_count()}, load {os.getloadavg()}")
    docs = make_docs(args.docs)
    size = len(str(docs[0]))
    results = [run_once(docs, args.batch) for _ in range(args.runs)]
    for label, index, unit in (("bulk_docs(new_edits=False)", 0, "docs/s"),
                               ("changes(include_docs=True)", 1, "docs/s"),
                               ("revs_diff 500 ids", 2, "ms"),
                               ("bulk_docs per CPU-second", 3, "docs/s")):
        values = [r[index] for r in results]
        print(f"{label:30s} median {statistics.median(values):>10,.1f} {unit} "
              f"[{min(values):,.1f}–{max(values):,.1f}] over {args.runs} runs, "
              f"{args.docs} docs of ~{size} B, batch {args.batch}")


if __name__ == "__main__":
    main()
