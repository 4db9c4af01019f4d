"""Sync benchmarks over a real websocket, client and server in separate processes.

    python3 bench/bench_sync.py oneshot [--docs 100000] [--runs 3] [--batch-size 100]
    python3 bench/bench_sync.py latency [--writes 1000] [--runs 3] [--backend local|couch]
    python3 bench/bench_sync.py big [--docs 1000000]
    python3 bench/bench_sync.py fanout [--clients 1000] [--procs 4] [--runs 3]
    python3 bench/bench_sync.py scaleout [--clients 1000] [--procs 4] [--servers 4] [--runs 3]

Measurements 1, 3, 4 and 5 of bench/run_all.py (which writes bench/results.md); each
function returns a dict of figures, and ``main`` prints it as JSON.
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

from common import (OUT, Child, RssSampler, copy_db, cpu_seconds, cpu_split, load,  # noqa: E402
                    percentile,
                    print_machine, proc_status, py, remove_db, seed_file, summary)


def _server(db: Path, *, max_seconds: float, tag: str, backend: str = "local",
            couch_url: str | None = None, couch_db: str | None = None) -> tuple[Child, str]:
    args = ["--max-seconds", max_seconds]
    if backend == "local":
        args += ["--db", db]
    else:
        args += ["--backend", "couch", "--couch-url", couch_url, "--couch-db", couch_db]
    child = Child(py("sync_server.py", *args), timeout=max_seconds + 30,
                  log_name=f"{tag}-server.log")
    return child, child.read()["url"]


# -- 1. one-shot pull and push ----------------------------------------------------------
def one_run(direction: str, count: int, batch_size: int, run: int,
            server_db: Path | None = None, backend: str = "local",
            couch_url: str | None = None, couch_db: str | None = None,
            sample_rss: bool = False, timeout: float = 900.0) -> dict[str, Any]:
    """One one-shot sync of ``count`` docs in ``direction``, fresh server process."""
    OUT.mkdir(exist_ok=True)
    # per process: two benchmarks running at once must not share (and delete) files
    srv_path = OUT / f"run-server-{direction}-{os.getpid()}.sqlite"
    cli_path = OUT / f"run-client-{direction}-{os.getpid()}.sqlite"
    remove_db(cli_path)
    remove_db(srv_path)
    if backend == "local":
        if direction == "pull":
            copy_db(server_db or seed_file(count), srv_path)
        else:
            copy_db(seed_file(count), cli_path)
    tag = f"{backend}-{direction}-{count}-b{batch_size}-r{run}"
    server, url = _server(srv_path, max_seconds=timeout, tag=tag, backend=backend,
                          couch_url=couch_url, couch_db=couch_db)
    load_before = load()
    try:
        client = Child(py("sync_client.py", "oneshot", url, "--db", cli_path, "--direction",
                          direction, "--expect", count, "--batch-size", batch_size,
                          "--timeout", timeout),
                       timeout=timeout + 30, log_name=f"{tag}-client.log")
        sampler = RssSampler(client.pid).start() if sample_rss else None
        server_cpu0 = cpu_seconds(server.pid)
        try:
            result = client.read()
        finally:
            samples = sampler.stop() if sampler else []
            client.close()
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        server.send("stats")
        server_stats = server.read()
    finally:
        server.close()
        remove_db(cli_path)
        remove_db(srv_path)
    result.update(server_peak_rss_mb=server_stats["peak_rss_mb"],
                  server_threads=server_stats["threads"], server_cpu_s=server_cpu,
                  load=load_before, run=run, rss_samples=samples)
    docs = max(result["docs"], 1)
    calls = sum(result["calls"].values())
    result["round_trips_per_batch"] = calls / max(result["batches"], 1)
    result["bytes_per_doc"] = (result["bytes_sent"] + result["bytes_received"]) / docs
    result["cpu_docs_per_s"] = docs / max(result["cpu_s"] + server_cpu, 1e-9)
    ok = result["docs"] == count and result["local_doc_count"] in (count, count + 0) \
        if direction == "pull" else result["docs"] == count
    result["ok"] = bool(ok)
    print(f"  {tag}: {result['docs']} docs in {result['seconds']:.2f} s = "
          f"{result['docs_per_s']:,.0f} docs/s (CPU {result['cpu_s']:.1f} s client + "
          f"{server_cpu:.1f} s server = {result['cpu_docs_per_s']:,.0f} docs/CPU-s); "
          f"{result['bytes_per_doc']:.0f} B/doc, {result['round_trips_per_batch']:.2f} "
          f"calls/batch, RSS client {result['peak_rss_mb']:.0f} MB server "
          f"{result['server_peak_rss_mb']:.0f} MB; load {load_before}"
          + ("" if result["ok"] else "  !! INCOMPLETE"), flush=True)
    return result


def oneshot(count: int, runs: int, batch_size: int) -> dict[str, Any]:
    seed_file(count)
    out: dict[str, Any] = {"docs": count, "batch_size": batch_size, "runs": {}}
    per: dict[str, list[dict[str, Any]]] = {"pull": [], "push": []}
    for run in range(runs):  # interleaved, so slow spells hit both directions
        for direction in ("pull", "push"):
            per[direction].append(one_run(direction, count, batch_size, run))
    for direction, results in per.items():
        out["runs"][direction] = results
        out[direction] = aggregate(results)
    return out


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    def field(name: str) -> dict[str, Any]:
        return summary([r[name] for r in results])
    return {
        "docs_per_s": field("docs_per_s"), "cpu_docs_per_s": field("cpu_docs_per_s"),
        "seconds": field("seconds"), "bytes_per_doc": field("bytes_per_doc"),
        "round_trips_per_batch": field("round_trips_per_batch"),
        "client_peak_rss_mb": field("peak_rss_mb"),
        "server_peak_rss_mb": field("server_peak_rss_mb"),
        "client_cpu_s": field("cpu_s"), "server_cpu_s": field("server_cpu_s"),
        "calls": results[-1]["calls"], "call_seconds": results[-1].get("call_seconds"),
        "loads": [r["load"] for r in results], "all_ok": all(r["ok"] for r in results),
    }


# -- 3. live latency ------------------------------------------------------------------
def latency(writes: int, runs: int, backend: str = "local", couch_url: str | None = None,
            couch_db: str | None = None) -> dict[str, Any]:
    results = []
    for run in range(runs):
        srv_path = OUT / f"run-server-latency-{os.getpid()}.sqlite"
        remove_db(srv_path)
        tag = f"latency-{backend}-r{run}"
        server, url = _server(srv_path, max_seconds=600, tag=tag, backend=backend,
                              couch_url=couch_url, couch_db=f"{couch_db}-{run}" if couch_db else None)
        load_before = load()
        try:
            client = Child(py("sync_client.py", "latency", url, "--writes", writes),
                           timeout=600, log_name=f"{tag}-client.log")
            try:
                res = client.read()
            finally:
                client.close()
        finally:
            server.close()
            remove_db(srv_path)
        res.update(load=load_before, run=run)
        print(f"  {tag}: p50 {res['p50_ms']:.2f} ms, p90 {res['p90_ms']:.2f} ms, "
              f"p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.1f} ms over {res['writes']} "
              f"writes (missed {res['missed']}); load {load_before}", flush=True)
        results.append(res)
    return {"backend": backend, "writes": writes, "runs": results,
            "p50_ms": summary([r["p50_ms"] for r in results]),
            "p99_ms": summary([r["p99_ms"] for r in results]),
            "missed": sum(r["missed"] for r in results)}


# -- 4. one million docs ----------------------------------------------------------------
def big(count: int) -> dict[str, Any]:
    seed_file(count)
    res = one_run("pull", count, 500, 0, sample_rss=True, timeout=3000.0)
    peak_sampled = max((rss for _, rss in res["rss_samples"]), default=float("nan"))
    res["peak_rss_sampled_mb"] = peak_sampled
    return res


# -- 5. fan-out to many live syncs ----------------------------------------------------------
def fanout(clients: int, procs: int, runs: int, changes: int = 3, *, servers: int = 1,
           backend: str = "local", couch_url: str | None = None,
           couch_db: str | None = None) -> dict[str, Any]:
    """One change reaches ``clients`` live syncs (in ``procs`` client processes) through
    ``servers`` server processes; with several, they share one CouchDB-protocol
    database (``backend="couch"``), client process ``i`` connects to server ``i %
    servers`` and change ``k`` is written through server ``k % servers``, so most
    clients learn of it through another process's change follower."""
    if servers > 1 and backend != "couch":
        raise ValueError("several server processes share a CouchDB-protocol backend")
    srv_path = OUT / f"run-server-fanout-{os.getpid()}.sqlite"
    remove_db(srv_path)
    started = [_server(srv_path, max_seconds=1200, tag=f"fanout-{clients}-s{i}", backend=backend,
                       couch_url=couch_url, couch_db=couch_db) for i in range(servers)]
    server_procs = [child for child, _ in started]
    urls = [url for _, url in started]
    server = server_procs[0]
    before = [proc_status(p.pid) for p in server_procs]
    children: list[Child] = []
    out: dict[str, Any] = {"clients": clients, "procs": procs, "servers": servers,
                           "backend": backend,
                           "server_idle_rss_mb": sum(b.get("VmRSS", 0) for b in before) / 1024,
                           "server_idle_threads": sum(b.get("Threads", 0) for b in before)}
    try:
        server.send("write warmup")
        server.read()
        per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        t0 = time.monotonic()
        for i, n in enumerate(per):
            children.append(Child(py("sync_client.py", "fanout", urls[i % servers], "--count", n,
                                     "--timeout", 60, "--ready-timeout", 900),
                                  timeout=1200, log_name=f"fanout-client{i}.log"))
        ready = [c.read() for c in children]
        out["connect_all_s"] = time.monotonic() - t0
        out["ready"] = sum(r["ready"] for r in ready)
        out["client_procs_rss_mb"] = [r["rss_mb"] for r in ready]
        out["client_procs_threads"] = [r["threads"] for r in ready]
        states = [proc_status(p.pid) for p in server_procs]
        out["server_rss_mb"] = sum(st.get("VmRSS", 0) for st in states) / 1024
        out["server_threads"] = sum(st.get("Threads", 0) for st in states)
        out["per_server_rss_mb"] = [st.get("VmRSS", 0) / 1024 for st in states]
        print(f"  {out['ready']} live syncs ready in {out['connect_all_s']:.1f} s; server RSS "
              f"{out['server_rss_mb']:.0f} MB, {out['server_threads']} threads "
              f"({servers} process(es)); load {load()}", flush=True)
        rounds = []
        for run in range(runs * changes):
            doc_id = f"fan-{run:04d}"
            load_before = load()
            server = server_procs[run % servers]
            server_cpu0 = sum(cpu_seconds(p.pid) for p in server_procs)
            user0, sys0 = _cpu_split_all(server_procs)
            server.send(f"write {doc_id}")
            t_write = server.read()["t0"]
            for c in children:
                c.send(doc_id)
            answers = [c.read() for c in children]
            times = [t for a in answers for t in a["times"]]
            arrived = sum(a["arrived"] for a in answers)
            last = max(times) - t_write if times else float("nan")
            lat = sorted(t - t_write for t in times)
            server_cpu = sum(cpu_seconds(p.pid) for p in server_procs) - server_cpu0
            user1, sys1 = _cpu_split_all(server_procs)
            calls: dict[str, int] = {}
            for a in answers:
                for op, n in a.get("calls", {}).items():
                    calls[op] = calls.get(op, 0) + n
            rounds.append({"id": doc_id, "written_through": run % servers, "arrived": arrived, "all_s": last,
                           "p50_s": percentile(lat, 0.5), "load": load_before,
                           "server_cpu_s": server_cpu, "server_user_s": user1 - user0,
                           "server_sys_s": sys1 - sys0, "calls": calls,
                           "clients_cpu_s": sum(a.get("cpu_s_during", 0.0) for a in answers)})
            print(f"  change {doc_id}: {arrived}/{clients} in {last:.3f} s "
                  f"(median client {percentile(lat, 0.5):.3f} s); server CPU {server_cpu:.2f} s "
                  f"(user {user1 - user0:.2f}, sys {sys1 - sys0:.2f}), "
                  f"client processes CPU {rounds[-1]['clients_cpu_s']:.2f} s, calls {calls}; "
                  f"load {load_before}", flush=True)
            # let the fan-out settle before the next change
            time.sleep(0.5)  # noqa: not waiting for a condition, spacing the samples
        states = [proc_status(p.pid) for p in server_procs]
        out["server_peak_rss_mb"] = sum(st.get("VmHWM", 0) for st in states) / 1024
        out["server_threads_after"] = sum(st.get("Threads", 0) for st in states)
        out["rounds"] = rounds
        out["all_s"] = summary([r["all_s"] for r in rounds])
        out["all_arrived"] = all(r["arrived"] == clients for r in rounds)
        server_procs[0].send("stats")
        out["server_stats"] = server_procs[0].read()
    finally:
        for c in children:
            c.close(timeout=120)
        for p in server_procs:
            p.close(timeout=120)
        remove_db(srv_path)
    return out


def _cpu_split_all(children: list[Child]) -> tuple[float, float]:
    """(user, system) CPU seconds of all ``children`` together."""
    splits = [cpu_split(c.pid) for c in children]
    return sum(u for u, _ in splits), sum(s for _, s in splits)


def scaleout(clients: int, procs: int, runs: int, servers: int = 4) -> dict[str, Any]:
    """The fan-out through ``servers`` server processes on one CouchDB-protocol server,
    beside the same through one process on the same backend, in one run."""
    from tests.couchserver import couch_db_name, start
    url, stop = start()
    try:
        out: dict[str, Any] = {}
        for n in (1, servers):
            print(f"  -- {n} server process(es), {clients} live syncs, CouchDB-protocol backend",
                  flush=True)
            out[str(n)] = fanout(clients, procs, runs, servers=n, backend="couch", couch_url=url,
                                 couch_db=couch_db_name(f"bench-scaleout-{n}"))
        return out
    finally:
        stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("oneshot", "latency", "big", "fanout", "scaleout"))
    parser.add_argument("--docs", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--servers", type=int, default=4)
    args = parser.parse_args()
    print_machine()
    if args.what == "oneshot":
        res = oneshot(args.docs or 100_000, args.runs, args.batch_size)
    elif args.what == "latency":
        res = latency(args.writes, args.runs)
    elif args.what == "big":
        res = big(args.docs or 1_000_000)
    elif args.what == "fanout":
        res = fanout(args.clients, args.procs, args.runs)
    else:
        res = scaleout(args.clients, args.procs, args.runs, args.servers)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.what}.json").write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, default=str)[:3000])


if __name__ == "__main__":
    main()
