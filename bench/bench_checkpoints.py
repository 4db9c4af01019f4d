"""Many checkpoint writes at once on one embedded store (issue 14, point 5).

    python3 bench/bench_checkpoints.py [--writers 1000] [--rounds 5]

A live server holds one ``LocalDatabase`` for all channels on a database; after one
change is fanned out, every live replication records its checkpoint (a ``_local`` doc
``put``) at about the same moment. This starts ``--writers`` threads that each update
their own ``_local`` doc, released together by a barrier, and prints per round: the
time until all are written, the median and worst writer's own time, and how many SQLite
transactions carried them (``GroupCommit`` batches concurrent ``_local`` writes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pouchsync_sync import LocalDatabase  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = LocalDatabase(os.path.join(folder, "checkpoints.sqlite"))
        n = args.writers
        docs = {}
        for i in range(n):
            db.put({"_id": f"_local/c{i}", "last_seq": 0})
            docs[i] = db.get(f"_local/c{i}")
        transactions = [0]
        write_batch = db._local_writes._write_batch  # counted, not changed

        def counted(items):  # type: ignore[no-untyped-def]
            transactions[0] += 1
            return write_batch(items)

        db._local_writes._write_batch = counted
        totals = []
        for run in range(args.rounds):
            barrier = threading.Barrier(n + 1)
            own: list[float] = []

            def writer(i: int) -> None:
                doc = dict(docs[i], last_seq=run + 1)
                barrier.wait()
                t0 = time.perf_counter()
                docs[i]["_rev"] = db.put(doc)["rev"]
                own.append(time.perf_counter() - t0)

            threads = [threading.Thread(target=writer, args=(i,), name=f"bench-writer-{i}")
                       for i in range(n)]
            for t in threads:
                t.start()
            transactions[0] = 0
            t0 = time.perf_counter()
            barrier.wait()
            for t in threads:
                t.join()
            total = time.perf_counter() - t0
            totals.append(total)
            print(f"round {run}: {n} checkpoint writes in {total * 1000:.0f} ms; writer median "
                  f"{statistics.median(own) * 1000:.1f} ms, worst {max(own) * 1000:.0f} ms; "
                  f"{transactions[0]} transactions", flush=True)
        print(f"median of {args.rounds} rounds: {statistics.median(totals) * 1000:.0f} ms")
        db.close()


if __name__ == "__main__":
    main()
