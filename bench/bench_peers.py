"""Measurement 2: from the CouchDB-protocol server into an embedded store, side by side.

    python3 bench/bench_peers.py [--sizes 10000,100000] [--runs 3] [--orig-runs-big 1]
                                 [--batch-size 500] [--extra-batch N] [--no-original]

The same N docs sit in pouchdb-server 4.2.0 (in memory, 127.0.0.1, tests/couchserver.py).
- the reference: pouchdb-server's own ``_changes?include_docs=true``, the whole feed read
  with ``requests`` + ``orjson`` in this process (bench/bench_feed.py says what is timed),
  paged by the rows our server asks for per request, and in one request; each run of it
  just before a run of ours, so a slow spell of the shared machine hits both;
- ours: our sync server process (backend CouchDatabase on that db) -> websocket -> our
  client process pulling into a fresh embedded store (one-shot pull);
- PouchDB: pouchdb 9 + pouchdb-adapter-memory, ``PouchDB.replicate(url, memorydb)`` over
  HTTP from the same server (bench/js/modern/replicate.js);
- the original: pouch-websocket-sync 0.3.0 on pouchdb 5.4.5 + memdown 1.1.2; its server
  (bench/js/orig/server.js, the same N docs seeded into a memdown PouchDB) and its client
  (bench/js/orig/client.js) pulling into a memdown PouchDB until it holds N docs.

Each one runs with its own defaults: ours with the client's ``batch_size`` (500), PouchDB
with its ``batch_size`` 100. Raw results go to bench/out/peers.json (with the machine,
versions, git commit, start and end time and load).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feed import aggregate as feed_aggregate  # noqa: E402
from bench_feed import feed_run  # noqa: E402
from common import (BENCH, OUT, REPO, Child, cpu_seconds, fill, load, print_machine,  # noqa: E402
                    summary)

from pouchsync_sync.store.couch_readahead import span_rows  # noqa: E402

JS = BENCH / "js"


def npm_install(folder: Path) -> dict[str, Any]:
    """``npm install`` of a pinned peer into ``folder/node_modules`` (once)."""
    if (folder / "node_modules" / ".package-lock.json").exists():
        return {"ok": True, "cached": True}
    cmd = ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    print(f"  npm install in {folder.relative_to(REPO)} ...", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "error": f"{' '.join(cmd)}: {exc}"}
    if proc.returncode != 0:
        return {"ok": False, "error": f"{' '.join(cmd)} exited {proc.returncode}: "
                                      f"{(proc.stderr or proc.stdout).strip()[-2000:]}"}
    return {"ok": True, "cached": False}


def node_lines(cmd: list[str], timeout: float) -> list[dict[str, Any]]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def listener_pid(url: str) -> int | None:
    """The pid listening on ``url``'s port (pouchdb-server), from ``ss -ltnp``."""
    import re
    from urllib.parse import urlparse
    port = urlparse(url).port
    try:
        out = subprocess.run(["ss", "-ltnpH", f"( sport = :{port} )"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def pouchdb_http(db_url: str, count: int, runs: int, couch_pid: int | None
                 ) -> list[dict[str, Any]]:
    out = []
    for run in range(runs):  # a fresh node per run, as a user would start it
        load_before = load()
        couch0 = cpu_seconds(couch_pid) if couch_pid else float("nan")
        res = node_lines(["node", str(JS / "modern" / "replicate.js"), db_url, str(count), "1"],
                         timeout=1800)[0]
        couch_cpu = cpu_seconds(couch_pid) - couch0 if couch_pid else float("nan")
        res.update(load=load_before, run=run, couch_cpu_s=couch_cpu,
                   total_cpu_s=res["cpu_s"] + couch_cpu)
        print(f"  pouchdb-http {count}: {res['docs']} docs in {res['seconds']:.2f} s = "
              f"{res['docs_per_s']:,.0f} docs/s (node CPU {res['cpu_s']:.1f} s); load {load_before}",
              flush=True)
        out.append(res)
    return out


def original(count: int, runs: int) -> dict[str, Any]:
    server = Child(["node", str(JS / "orig" / "server.js"), str(count)], timeout=3600,
                   log_name=f"orig-server-{count}.log")
    results = []
    try:
        hello = server.read()
        url = f"ws://127.0.0.1:{hello['port']}/"
        for run in range(runs):
            load_before = load()
            server0 = cpu_seconds(server.pid)
            res = node_lines(["node", str(JS / "orig" / "client.js"), url, str(count)],
                             timeout=1800)[0]
            server_cpu = cpu_seconds(server.pid) - server0
            res.update(load=load_before, run=run, server_cpu_s=server_cpu,
                       total_cpu_s=res["cpu_s"] + server_cpu)
            print(f"  original {count}: {res['docs']} docs in {res['seconds']:.2f} s = "
                  f"{res['docs_per_s']:,.0f} docs/s (node CPU {res['cpu_s']:.1f} s); "
                  f"load {load_before}", flush=True)
            results.append(res)
    finally:
        server.close()
    return {"versions": hello.get("versions"), "runs": results}


def ours(couch_url: str, db_name: str, count: int, runs: int, batch_size: int,
         couch_pid: int | None, first_run: int = 0) -> list[dict[str, Any]]:
    from bench_sync import one_run
    out = []
    for run in range(first_run, first_run + runs):
        couch0 = cpu_seconds(couch_pid) if couch_pid else float("nan")
        res = one_run("pull", count, batch_size, run, backend="couch", couch_url=couch_url,
                      couch_db=db_name, timeout=1800.0)
        couch_cpu = cpu_seconds(couch_pid) - couch0 if couch_pid else float("nan")
        res.update(couch_cpu_s=couch_cpu, total_cpu_s=res["cpu_s"] + res["server_cpu_s"] + couch_cpu)
        out.append(res)
    return out


def measure(sizes: list[int], runs: int, orig_runs_big: int, batch_size: int,
            skip_original: bool = False, extra_batch: int | None = None) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from pouchsync_sync import CouchDB
    from tests.couchserver import start

    out: dict[str, Any] = {"sizes": {}, "install": {}, "batch_size": batch_size}
    out["install"]["pouchdb"] = npm_install(JS / "modern")
    out["install"]["original"] = (npm_install(JS / "orig") if not skip_original
                                  else {"ok": False, "error": "skipped (--no-original)"})
    for name, inst in out["install"].items():
        if not inst["ok"]:
            print(f"  !! {name} could not be installed: {inst['error']}", flush=True)
    url, stop = start()
    couch_pid = listener_pid(url)
    out["couch_pid_found"] = couch_pid is not None
    try:
        couch = CouchDB(url)
        for count in sizes:
            name = f"bench-{count}"
            db = couch.database(name, create=True)
            fill(db, 0, count, chunk=1000)
            print(f"  pouchdb-server holds {count} docs in {name}", flush=True)
            entry: dict[str, Any] = {"ours": []}
            feed_runs = []
            page = span_rows(batch_size)  # the rows our server asks for per request
            for run in range(runs):  # interleaved, so a slow spell hits both
                feed_runs.append(feed_run(f"{url}/{name}", count, page, run, couch_pid))
                entry["ours"] += ours(url, name, count, 1, batch_size, couch_pid, first_run=run)
            entry["feed"] = feed_aggregate(feed_runs)
            if out["install"]["pouchdb"]["ok"]:
                entry["pouchdb"] = pouchdb_http(f"{url}/{name}", count, runs, couch_pid)
            if out["install"]["original"]["ok"]:
                try:
                    entry["original"] = original(count, runs if count <= 10_000 else orig_runs_big)
                except Exception as exc:  # noqa: BLE001 - report it, measure the rest
                    entry["original_error"] = repr(exc)
                    print(f"  !! original failed: {exc!r}", flush=True)
            if extra_batch:
                extra = ours(url, name, count, runs, extra_batch, couch_pid)
                entry["ours_extra"] = {"batch_size": extra_batch, "runs": extra,
                                       "docs_per_s": summary([r["docs_per_s"] for r in extra]),
                                       "total_cpu_s": summary([r["total_cpu_s"] for r in extra])}
            ours_rate = summary([r["docs_per_s"] for r in entry["ours"]])
            entry["ours_docs_per_s"] = ours_rate
            entry["ours_cpu_docs_per_s"] = summary([r["cpu_docs_per_s"] for r in entry["ours"]])
            entry["ours_total_cpu_s"] = summary([r["total_cpu_s"] for r in entry["ours"]])
            entry["ratio_feed"] = ours_rate["median"] / entry["feed"]["docs_per_s"]["median"]
            if "pouchdb" in entry:
                entry["pouchdb_docs_per_s"] = summary([r["docs_per_s"] for r in entry["pouchdb"]])
                entry["pouchdb_cpu_docs_per_s"] = summary(
                    [r["docs"] / r["cpu_s"] for r in entry["pouchdb"]])
                entry["ratio_pouchdb"] = ours_rate["median"] / entry["pouchdb_docs_per_s"]["median"]
                entry["pouchdb_total_cpu_s"] = summary([r["total_cpu_s"] for r in entry["pouchdb"]])
            if "original" in entry:
                runs_o = entry["original"]["runs"]
                entry["original_docs_per_s"] = summary([r["docs_per_s"] for r in runs_o])
                entry["original_cpu_docs_per_s"] = summary([r["docs"] / r["cpu_s"] for r in runs_o])
                entry["ratio_original"] = (ours_rate["median"]
                                           / entry["original_docs_per_s"]["median"])
                entry["original_total_cpu_s"] = summary([r["total_cpu_s"] for r in runs_o])
            print(f"  == {count}: ours {ours_rate['median']:,.0f} docs/s = "
                  f"{entry['ratio_feed']:.0%} of pouchdb-server's own _changes?include_docs=true "
                  f"({entry['feed']['docs_per_s']['median']:,.0f} docs/s, "
                  f"{entry['feed']['reference_mode']}); ratio to PouchDB "
                  f"{entry.get('ratio_pouchdb', float('nan')):.2f}x, to the original "
                  f"{entry.get('ratio_original', float('nan')):.1f}x", flush=True)
            out["sizes"][str(count)] = entry
            couch.delete_database(name)
        couch.close()
    finally:
        stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orig-runs-big", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=500,
                        help="batch_size of our client (500: the client's default)")
    parser.add_argument("--no-original", action="store_true")
    parser.add_argument("--extra-batch", type=int, default=None,
                        help="also measure ours with this batch_size")
    args = parser.parse_args()
    info = print_machine()
    load_at_start = load()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    res = measure([int(s) for s in args.sizes.split(",")], args.runs, args.orig_runs_big,
                  args.batch_size, args.no_original, args.extra_batch)
    res.update(machine=info, started=started, load_at_start=load_at_start,
               finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               load_at_end=load(), command="python3 bench/bench_peers.py " + " ".join(sys.argv[1:]))
    print(f"finished {res['finished']}, load average {res['load_at_end']}", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "peers.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
