"""CouchDatabase throughput against the CouchDB-protocol test server, median of N runs.

    python3 bench/bench_couch.py [--docs 10000] [--batch 500] [--runs 3] [--url URL]

Measures, through ``pouchsync_sync.CouchDatabase`` (and, for comparison, plain
``requests`` on one keep-alive session, the baseline the test server was chosen by):
insert with ``bulk_docs`` batches, read back with one ``changes(include_docs=True)``,
paged ``changes`` (``limit=batch``) and ``bulk_get`` of every doc in batches (the
replicator's read path). Docs are ~110 bytes (see ``doc()``). Without
``--url`` (or ``COUCHDB_URL``) it starts pouchdb-server through tests/couchserver.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from pouchsync_sync import CouchDB  # noqa: E402


def doc(i: int) -> dict[str, Any]:
    return {"_id": f"doc-{i:06d}", "n": i, "name": f"item {i}", "tags": ["alpha", "beta"],
            "value": (i * 7919 % 1000) / 1000}


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, this process's CPU seconds, docs)."""
    started, cpu = time.perf_counter(), time.process_time()
    count = fn()
    return time.perf_counter() - started, time.process_time() - cpu, count


def one_run(couch: CouchDB, url: str, run: int, docs: int, batch: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    name = f"bench-couch-{os.getpid()}-{run}"
    db = couch.database(name, create=True)
    try:
        def insert() -> int:
            for start in range(0, docs, batch):
                results = db.bulk_docs([doc(i) for i in range(start, min(docs, start + batch))])
                assert len(results) == min(batch, docs - start)
            return docs

        def changes_once() -> int:
            return len(db.changes(include_docs=True)["results"])

        def changes_paged() -> int:
            seen, since = 0, 0
            while True:
                page = db.changes(include_docs=True, since=since, limit=batch)
                if not page["results"]:
                    return seen
                seen += len(page["results"])
                since = page["last_seq"]

        def bulk_get() -> int:
            rows = db.changes()["results"]
            got = 0
            for start in range(0, len(rows), batch):
                reqs = [{"id": r["id"], "rev": r["changes"][0]["rev"]}
                        for r in rows[start:start + batch]]
                got += len(db.bulk_get(reqs, revs=True, latest=True)["results"])
            return got

        for label, fn in (("bulk_docs insert", insert), ("changes include_docs, one request",
                                                         changes_once),
                          (f"changes include_docs, limit={batch}", changes_paged),
                          (f"bulk_get revs+latest, {batch} per request", bulk_get)):
            seconds, cpu, count = timed(fn)
            assert count == docs, (label, count)
            rates[label] = count / seconds
            rates[label + " [client CPU us/doc]"] = cpu / count * 1e6
    finally:
        couch.delete_database(name)

    # the same insert and read with plain requests: the backend's overhead
    raw_name = name + "-raw"
    with requests.Session() as http:
        http.headers["Accept"] = "application/json"
        http.put(f"{url}/{raw_name}", timeout=30).raise_for_status()
        try:
            def raw_insert() -> int:
                for start in range(0, docs, batch):
                    body = {"docs": [doc(i) for i in range(start, min(docs, start + batch))]}
                    http.post(f"{url}/{raw_name}/_bulk_docs", json=body,
                              timeout=60).raise_for_status()
                return docs

            def raw_changes() -> int:
                resp = http.get(f"{url}/{raw_name}/_changes?include_docs=true", timeout=60)
                return len(resp.json()["results"])

            for label, fn in (("plain requests: bulk_docs insert", raw_insert),
                              ("plain requests: changes include_docs", raw_changes)):
                seconds, cpu, count = timed(fn)
                rates[label] = count / seconds
                rates[label + " [client CPU us/doc]"] = cpu / count * 1e6
        finally:
            http.delete(f"{url}/{raw_name}", timeout=30)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("COUCHDB_URL"))
    args = parser.parse_args()
    stop = None
    url = args.url
    if not url:
        from tests.couchserver import start
        url, stop = start()
    try:
        runs: list[dict[str, float]] = []
        with CouchDB(url, timeout=120) as couch:
            print(f"server: {couch.info().get('vendor', couch.info())}", flush=True)
            for run in range(args.runs):
                rates = one_run(couch, couch.url, run, args.docs, args.batch)
                runs.append(rates)
                print(f"run {run + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()),
                      flush=True)
        print(f"\n{args.docs} docs, batches of {args.batch}, median of {args.runs} runs "
              f"(docs/s; client CPU in microseconds per doc):")
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for label, rate in medians.items():
            print(f"  {label:65s} {rate:>10,.1f}")
        out = REPO / "bench" / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_couch.json").write_text(json.dumps(
            {"docs": args.docs, "batch": args.batch, "runs": runs, "median": medians}, indent=2))
    finally:
        if stop is not None:
            stop()


if __name__ == "__main__":
    main()
