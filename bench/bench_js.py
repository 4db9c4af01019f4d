"""pouchsync.js against PouchDB 9's own HTTP replication, side by side in one run.

    python3 bench/bench_js.py [--count 100000] [--batch 500] [--http-batch 100] [--only ...]

PouchDB 9 in Node (memory adapter, a fresh db) pulls N small docs (~300 bytes, the
bench's ``small_doc``), then pushes them to an empty database, through:

- ``pouchsync-embedded``: pouchsync.js -> our sync server process (bench/sync_server.py,
  embedded store: a copy of the seeded file to pull from, an empty file to push to);
- ``pouchsync-couch``: the same with the CouchDB-protocol backend (pouchdb-server 4.2.0,
  tests/couchserver.py: a seeded database and an empty one);
- ``pouchdb-http``: ``PouchDB.replicate`` from / to that pouchdb-server over HTTP.

For each phase: docs/s, CPU seconds of node, of each sync server and of pouchdb-server
(/proc), and for pouchsync.js the characters on the wire per doc both ways (the client's
``stats()``; the docs are ASCII, so characters are bytes). Node packages come from
tests/jsdeps.py (pinned pouchdb@9.0.0, pouchdb-adapter-memory, ws). Raw results go to
bench/out/js.json; the table printed at the end goes into bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BENCH, OUT, REPO, Child, copy_db, cpu_seconds, fill, load,  # noqa: E402
                    print_machine, py, remove_db, seed_file)

SCRIPT = BENCH / "js" / "pouchsync" / "bench.js"


def _node_env(modules: Path) -> dict[str, str]:
    from pouchsync_sync import js_client_path
    return dict(os.environ, NODE_PATH=str(modules), POUCHSYNC_JS=js_client_path())


def _server(tag: str, *args: Any) -> tuple[Child, str]:
    child = Child(py("sync_server.py", "--max-seconds", 1800, *args), timeout=1830,
                  log_name=f"js-{tag}-server.log")
    return child, child.read()["url"]


def _phases(node: Child, pids: dict[str, int]) -> list[dict[str, Any]]:
    """Run the pull and the push phase, sampling every process's CPU around each."""
    out = []
    for _ in ("pull", "push"):
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        load_before = load()
        node.send("go")
        res = node.read()
        res["cpu_of"] = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        res["cpu_of"]["node"] = res["cpu_s"]
        res["total_cpu_s"] = sum(v for v in res["cpu_of"].values() if v == v)
        res["load"] = load_before
        if "chars_sent" in res:
            res["wire_chars_per_doc"] = (res["chars_sent"] + res["chars_received"]) / max(res["docs"], 1)
        print(f"  {res['mode']:>10} {res['phase']}: {res['docs']} docs in {res['seconds']:.2f} s = "
              f"{res['docs_per_s']:,.0f} docs/s; CPU {json.dumps({k: round(v, 2) for k, v in res['cpu_of'].items()})}"
              + (f"; {res['wire_chars_per_doc']:.0f} B/doc on the wire" if "wire_chars_per_doc" in res else ""),
              flush=True)
        out.append(res)
    end = node.read()
    assert end["doc_count"] == end["expected"], end
    return out


def run_pouchsync(tag: str, modules: Path, count: int, batch: int, pull_args: list[Any],
                  push_args: list[Any], extra_pids: dict[str, int]) -> list[dict[str, Any]]:
    pull_srv, pull_url = _server(f"{tag}-pull", *pull_args)
    push_srv, push_url = _server(f"{tag}-push", *push_args)
    node = Child(["node", str(SCRIPT), "pouchsync", pull_url, push_url, str(count), str(batch)],
                 timeout=1800, log_name=f"js-{tag}-node.log", env=_node_env(modules))
    try:
        pids = {"node": node.pid, "pull_server": pull_srv.pid, "push_server": push_srv.pid, **extra_pids}
        pids.pop("node")
        return _phases(node, pids)
    finally:
        node.close()
        pull_srv.close()
        push_srv.close()


def run_http(modules: Path, count: int, batch: int, pull_url: str, push_url: str,
             couch_pid: int) -> list[dict[str, Any]]:
    node = Child(["node", str(SCRIPT), "http", pull_url, push_url, str(count), str(batch)],
                 timeout=1800, log_name="js-http-node.log", env=_node_env(modules))
    try:
        return _phases(node, {"pouchdb_server": couch_pid})
    finally:
        node.close()


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    rows = ["| peer | phase | docs | docs/s | node CPU s | server CPU s | pouchdb-server CPU s | wire B/doc |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for peer, phases in results.items():
        for res in phases:
            cpu = res["cpu_of"]
            server = cpu.get("pull_server", 0.0) + cpu.get("push_server", 0.0) if "pull_server" in cpu else None
            couch = cpu.get("pouchdb_server")
            wire = res.get("wire_chars_per_doc")
            rows.append(f"| {peer} | {res['phase']} | {res['docs']:,} | {res['docs_per_s']:,.0f} | "
                        f"{cpu['node']:.1f} | {'' if server is None else f'{server:.1f}'} | "
                        f"{'' if couch is None else f'{couch:.1f}'} | "
                        f"{'' if wire is None else f'{wire:.0f}'} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="pouchsync.js batchSize")
    parser.add_argument("--http-batch", type=int, default=100, help="PouchDB's batch_size (its default)")
    parser.add_argument("--only", default="pouchsync-embedded,pouchsync-couch,pouchdb-http")
    args = parser.parse_args()
    only = set(args.only.split(","))
    sys.path.insert(0, str(REPO))
    from tests.couchserver import launch
    from tests.jsdeps import ensure_installed

    import pouchsync_sync as ps

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = print_machine()
    modules = ensure_installed()
    results: dict[str, list[dict[str, Any]]] = {}
    couch = launch() if only & {"pouchsync-couch", "pouchdb-http"} else None
    try:
        if couch is not None:
            handle = ps.CouchDB(couch.url)
            t0 = time.perf_counter()
            fill(handle.database("bench-pull", create=True), 0, args.count)
            for name in ("bench-push-ours", "bench-push-http"):
                handle.database(name, create=True)
            print(f"  seeded {args.count} docs into pouchdb-server in {time.perf_counter() - t0:.1f} s",
                  flush=True)
        if "pouchsync-embedded" in only:
            pull_db = copy_db(seed_file(args.count), OUT / "js-pull.sqlite")
            push_db = OUT / "js-push.sqlite"
            remove_db(push_db)
            try:
                results["pouchsync-embedded"] = run_pouchsync(
                    "embedded", modules, args.count, args.batch, ["--db", pull_db], ["--db", push_db], {})
            finally:
                remove_db(pull_db)
                remove_db(push_db)
        if "pouchsync-couch" in only:
            results["pouchsync-couch"] = run_pouchsync(
                "couch", modules, args.count, args.batch,
                ["--backend", "couch", "--couch-url", couch.url, "--couch-db", "bench-pull"],
                ["--backend", "couch", "--couch-url", couch.url, "--couch-db", "bench-push-ours"],
                {"pouchdb_server": couch.proc.pid})
        if "pouchdb-http" in only:
            results["pouchdb-http"] = run_http(modules, args.count, args.http_batch,
                                               f"{couch.url}/bench-pull", f"{couch.url}/bench-push-http",
                                               couch.proc.pid)
    finally:
        if couch is not None:
            couch.stop()
    text = table(results)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "js.json").write_text(json.dumps({"started": started, "machine": machine, "args": vars(args),
                                             "results": results, "table": text}, indent=1))


if __name__ == "__main__":
    main()
