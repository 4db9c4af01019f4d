"""The CouchDB-protocol server's own rate: its ``_changes?include_docs=true`` feed, read whole.

    python3 bench/bench_feed.py [--docs 100000] [--runs 3] [--page 2000]

The reference of issue 14's CouchDB bar (our pull reaches >= 75 % of it): how fast
pouchdb-server hands out the N docs when nothing else is done with them. One
``requests.Session`` (keep-alive, ``Accept-Encoding: identity`` as our ``CouchHTTP``
asks on loopback) in this process reads the whole feed, two ways:

- ``paged``: ``GET /db/_changes?include_docs=true&limit=P&since=S`` page after page,
  each from the previous ``last_seq``, until a page is short; P is the rows our server's
  read asks pouchdb-server for per request (``couch_readahead.span_rows`` of the
  client's batch size: 2,000 rows at batch_size 500);
- ``whole``: one ``GET /db/_changes?include_docs=true`` for the whole feed.

What is timed (``time.perf_counter``), from the first request sent to the last answer
parsed: the HTTP requests, reading every body, and parsing each with ``orjson.loads``
(what any consumer of the feed must do to use it). Nothing else is done with the rows.
pouchdb-server's CPU seconds over the read are recorded beside it (from ``/proc``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, REPO, cpu_seconds, fill, load, print_machine, summary  # noqa: E402

MODES = ("paged", "whole")


def read_feed(db_url: str, page: int | None, session: requests.Session) -> tuple[int, float]:
    """Read the whole feed (pages of ``page`` rows, or one request if None); returns
    (rows read, seconds)."""
    rows = 0
    since: Any = 0
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    started = time.perf_counter()
    while True:
        params: dict[str, Any] = {"include_docs": "true", "since": since}
        if page is not None:
            params["limit"] = page
        response = session.get(db_url + "/_changes", params=params, headers=headers,
                               timeout=600)
        response.raise_for_status()
        answer = orjson.loads(response.content)
        got = len(answer["results"])
        rows += got
        since = answer["last_seq"]
        if page is None or got < page:
            break
    return rows, time.perf_counter() - started


def feed_run(db_url: str, count: int, page: int, run: int, couch_pid: int | None
             ) -> dict[str, Any]:
    """One read of the feed each way (paged, whole), a fresh connection for each."""
    out: dict[str, Any] = {"run": run, "load": load(), "page": page}
    for mode in MODES:
        with requests.Session() as session:
            couch0 = cpu_seconds(couch_pid) if couch_pid else float("nan")
            rows, seconds = read_feed(db_url, page if mode == "paged" else None, session)
            couch_cpu = cpu_seconds(couch_pid) - couch0 if couch_pid else float("nan")
        if rows != count:
            raise RuntimeError(f"the feed of {db_url} gave {rows} rows, not {count}")
        out[mode] = {"docs": rows, "seconds": seconds, "docs_per_s": rows / seconds,
                     "couch_cpu_s": couch_cpu}
    print(f"  pouchdb-server's own _changes?include_docs=true, {count}: paged by {page} "
          f"{out['paged']['docs_per_s']:,.0f} docs/s (its CPU {out['paged']['couch_cpu_s']:.2f} s), "
          f"whole {out['whole']['docs_per_s']:,.0f} docs/s (its CPU "
          f"{out['whole']['couch_cpu_s']:.2f} s); load {out['load']}", flush=True)
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode and the reference: the faster mode's median."""
    out: dict[str, Any] = {"runs": runs, "page": runs[0]["page"] if runs else None}
    for mode in MODES:
        out[mode] = {"docs_per_s": summary([r[mode]["docs_per_s"] for r in runs]),
                     "couch_cpu_s": summary([r[mode]["couch_cpu_s"] for r in runs])}
    best = max(MODES, key=lambda m: out[m]["docs_per_s"]["median"])
    out["reference_mode"] = best
    out["docs_per_s"] = out[best]["docs_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--page", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench_peers import listener_pid

    from pouchsync_sync import CouchDB
    from tests.couchserver import start

    info = print_machine()
    url, stop = start()
    try:
        couch_pid = listener_pid(url)
        with CouchDB(url) as couch:
            name = f"bench-feed-{args.docs}"
            fill(couch.database(name, create=True), 0, args.docs, chunk=1000)
            res = aggregate([feed_run(f"{url}/{name}", args.docs, args.page, run, couch_pid)
                             for run in range(args.runs)])
            couch.delete_database(name)
    finally:
        stop()
    print(f"  == reference ({res['reference_mode']}): {res['docs_per_s']['median']:,.0f} docs/s",
          flush=True)
    res.update(machine=info, command="python3 bench/bench_feed.py " + " ".join(sys.argv[1:]))
    OUT.mkdir(exist_ok=True)
    (OUT / "feed.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
