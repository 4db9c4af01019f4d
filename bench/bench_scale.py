"""Live syncs per server process: N live syncs on ONE server process, what each costs
the server (threads, RSS), and how fast one change reaches all of them.

    python3 bench/bench_scale.py [--syncs 10000] [--real 1000] [--real-procs 4]
                                 [--light-procs 2] [--syncs-per-socket 1] [--changes 3]
                                 [--connect-timeout 600] [--quiet-wait 35]
                                 [--max-machine-threads (70 % of kernel.pid_max)]
                                 [--switch-interval S]

One server process (``sync_server.py``, embedded store). ``--real`` of the syncs are real
``pouchsync_sync.Client``s (one live pull sync each on its own ``:memory:`` store, in
``--real-procs`` processes of ``sync_client.py fanout``); the rest are light
protocol-level peers (``light_peers.py``: thousands of WebSockets in one thread each,
``--syncs-per-socket`` channels per socket; the light count is rounded up to whole
sockets). The real Clients connect first, then the light peers; ``--quiet-wait`` s later
the server is read again (today's per-socket pool threads idle out after 30 s). Then
``--changes`` times one doc is written through the server process and timed until every
sync still connected has received it; each change's server CPU is also given per sync,
with the calls the real Clients made meanwhile. At the end, the time for every socket
to close at once (the client processes end) and the server to stop. ``--switch-interval``
sets the server process's ``sys.setswitchinterval`` (docs/deployment.md).

Where a limit of the machine binds first (threads per user, kernel pid_max, memory maps
per process, open files), the run goes on with what connected and says which limit and
where in ``limits_hit``. Raw figures: bench/out/scale-<syncs>.json. Everything binds to
127.0.0.1; every child is in its own process group, killed on exit or when it overstays.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (OUT, Child, cpu_seconds, load, map_count, percentile,  # noqa: E402
                    print_machine, proc_status, py, raise_nofile, remove_db)
from scale_limits import (Sampler, default_thread_cap, limits_in_log,  # noqa: E402
                          machine_limits, machine_threads, user_threads)

BAR_FANOUT_S = 2.0
BAR_RSS_MB = 1024.0
BAR_SYNCS = 10_000


def server_reading(server: Child) -> dict[str, Any]:
    st = proc_status(server.pid)
    out = {"threads": st.get("Threads", 0), "rss_mb": st.get("VmRSS", 0) / 1024,
           "hwm_mb": st.get("VmHWM", 0) / 1024, "maps": map_count(server.pid)}
    try:
        server.send("stats")
        out["stats"] = server.read().get("server", {})
    except (RuntimeError, OSError) as exc:
        out["stats_error"] = str(exc)
    return out


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, parts)
    return [n for n in (total // parts + (1 if i < total % parts else 0)
                        for i in range(parts)) if n > 0]


def measure(syncs: int = 10_000, *, real: int = 1000, real_procs: int = 4, light_procs: int = 2,
            syncs_per_socket: int = 1, changes: int = 3, concurrency: int = 100,
            change_timeout: float = 60.0, max_machine_threads: int | None = None,
            connect_timeout: float = 600.0, quiet_wait: float = 35.0,
            switch_interval: float | None = None) -> dict[str, Any]:
    raise_nofile()
    if max_machine_threads is None:
        max_machine_threads = default_thread_cap()
    real = min(real, syncs)
    light = syncs - real
    light_sockets = -(-light // syncs_per_socket)
    max_s = 600 + syncs * 0.3
    srv_path = OUT / f"run-server-scale-{os.getpid()}.sqlite"
    remove_db(srv_path)
    out: dict[str, Any] = {"syncs": syncs, "real": real, "real_procs": real_procs,
                           "light": light, "light_procs": light_procs,
                           "syncs_per_socket": syncs_per_socket, "changes": changes,
                           "machine_limits": machine_limits(), "user_threads_before": user_threads(),
                           "max_machine_threads": max_machine_threads,
                           "machine_threads_before": machine_threads(),
                           "load_before": load()}
    server_args: list[Any] = ["--db", srv_path, "--max-seconds", max_s]
    if switch_interval is not None:
        server_args += ["--switch-interval", switch_interval]
        out["switch_interval"] = switch_interval
    server = Child(py("sync_server.py", *server_args),
                   timeout=max_s + 60, log_name=f"scale-{syncs}-server.log")
    children: list[tuple[str, Child]] = []
    limits_hit: list[str] = []
    sampler = None
    try:
        url = server.read()["url"]
        server.send("write warmup")  # update_seq >= 1: light peers subscribe from seq - 1
        server.read()
        out["server_idle"] = server_reading(server)
        sampler = Sampler(server.pid)
        t0 = time.monotonic()
        alive: list[tuple[str, Child]] = []
        ready: list[dict[str, Any]] = []

        def wait_ready(started: list[tuple[str, Child]]) -> None:
            for kind, child in started:
                try:
                    r = child.read()
                except RuntimeError as exc:
                    limits_hit.append(f"{kind} client process {child.log_path.name} ended: {exc}")
                    continue
                r["kind"] = kind
                ready.append(r)
                alive.append((kind, child))

        # the real Clients first, then the light peers: one crowd at a time
        started = [("real", Child(
            py("sync_client.py", "fanout", url, "--count", n, "--timeout", change_timeout,
               "--ready-timeout", connect_timeout),
            timeout=max_s, log_name=f"scale-{syncs}-real{i}.log"))
            for i, n in enumerate(_split(real, real_procs))]
        children += started
        wait_ready(started)
        out["connect_real_s"] = time.monotonic() - t0
        per_light = _split(light_sockets, light_procs)
        started = [("light", Child(
            py("light_peers.py", url, "--sockets", n, "--channels-per-socket",
               syncs_per_socket, "--concurrency", max(10, concurrency // len(per_light)),
               "--ready-timeout", connect_timeout, "--timeout", change_timeout,
               "--max-machine-threads", max_machine_threads),
            timeout=max_s, log_name=f"scale-{syncs}-light{i}.log"))
            for i, n in enumerate(per_light)] if light else []
        children += started
        wait_ready(started)
        children_alive = alive
        out["connect_all_s"] = time.monotonic() - t0
        out["ready"] = sum(r["ready"] for r in ready)
        out["ready_real"] = sum(r["ready"] for r in ready if r["kind"] == "real")
        out["ready_light"] = sum(r["ready"] for r in ready if r["kind"] == "light")
        out["client_procs"] = [{k: r.get(k) for k in ("kind", "ready", "threads", "rss_mb",
                                                       "seconds", "failed", "ready_when_failed")}
                               for r in ready]
        for r in ready:
            for reason, n in (r.get("failed") or {}).items():
                at = (r.get("ready_when_failed") or {}).get(reason)
                limits_hit.append(f"{r['kind']} client process: {n}× {reason}"
                                  + (f" (that process had {at} syncs ready when it first "
                                     "happened)" if at is not None else ""))
        out["server_connected"] = server_reading(server)
        out["user_threads_connected"] = user_threads()
        out["machine_threads_connected"] = machine_threads()
        conns = out["server_connected"].get("stats", {}).get("connections", 0)
        idle_r = out["server_idle"]
        con = out["server_connected"]
        out["per_connection"] = _per(con, idle_r, conns)
        out["per_sync"] = _per(con, idle_r, out["ready"])
        if quiet_wait > 0:  # pool threads that idle out after their work are gone by then
            threading.Event().wait(quiet_wait)
            out["server_quiet"] = server_reading(server)
            out["quiet_wait_s"] = quiet_wait
            q_conns = out["server_quiet"].get("stats", {}).get("connections", 0)
            out["per_connection_quiet"] = _per(out["server_quiet"], idle_r, q_conns)
        print(f"  {out['ready']:,}/{syncs:,} live syncs ready ({out['ready_real']:,} real, "
              f"{out['ready_light']:,} light) on {conns:,} sockets in {out['connect_all_s']:.1f} s; "
              f"server {con['threads']:,} threads, RSS {con['rss_mb']:.0f} MB, "
              f"{con['maps']:,} maps; load {load()}", flush=True)
        rounds = []
        for k in range(changes):
            doc_id = f"fan-{k:04d}"
            load0 = load()
            cpu0 = cpu_seconds(server.pid)
            server.send(f"write {doc_id}")
            t_write = server.read()["t0"]
            for _, child in children_alive:
                child.send(doc_id)
            answers = []
            for kind, child in children_alive:
                try:
                    answers.append(dict(child.read(), kind=kind))
                except RuntimeError as exc:
                    limits_hit.append(f"{kind} client process {child.log_path.name} ended "
                                      f"during change {doc_id}: {exc}")
            cpu = cpu_seconds(server.pid) - cpu0
            lat = sorted(t - t_write for a in answers for t in a["times"])
            expected = sum(a["of"] for a in answers)
            arrived = len(lat)
            rnd = {"id": doc_id, "arrived": arrived, "of": expected,
                   "all_s": lat[-1] if lat and arrived >= expected else float("nan"),
                   "last_s": lat[-1] if lat else float("nan"),
                   "p50_s": percentile(lat, 0.5), "p99_s": percentile(lat, 0.99),
                   "server_cpu_s": cpu, "load": load0,
                   "real_p50_s": percentile(sorted(t - t_write for a in answers
                                                   if a["kind"] == "real" for t in a["times"]), 0.5),
                   "light_p50_s": percentile(sorted(t - t_write for a in answers
                                                    if a["kind"] == "light" for t in a["times"]), 0.5),
                   "client_cpu_s": sum(a.get("cpu_s_during", 0.0) for a in answers)}
            rnd["server_cpu_us_per_sync"] = cpu * 1e6 / arrived if arrived else float("nan")
            calls: dict[str, int] = {}  # what the real Clients called meanwhile (checkpoints)
            for a in answers:
                for op, n in (a.get("calls") or {}).items():
                    calls[op] = calls.get(op, 0) + n
            rnd["client_calls"] = calls
            rounds.append(rnd)
            print(f"  change {doc_id}: {arrived:,}/{expected:,} arrived, last {rnd['last_s']:.3f} s, "
                  f"median {rnd['p50_s']:.3f} s, p99 {rnd['p99_s']:.3f} s (real median "
                  f"{rnd['real_p50_s']:.3f}, light median {rnd['light_p50_s']:.3f}); server CPU "
                  f"{cpu:.2f} s ({rnd['server_cpu_us_per_sync']:.0f} µs per sync); calls by the "
                  f"real Clients {calls or 'none'}; load {load0}",
                  flush=True)
            threading.Event().wait(1.0)  # spacing the samples, not waiting for a condition
        out["rounds"] = rounds
        out["server_after"] = server_reading(server)
        out["client_threads"] = [{"kind": a["kind"], "threads": a.get("threads")}
                                 for a in answers] if rounds else []
    except RuntimeError as exc:
        limits_hit.append(f"server process ended: {exc}")
    finally:
        out["server_peak"] = sampler.stop() if sampler else {}
        out["server_peak"]["VmHWM"] = proc_status(server.pid).get("VmHWM", 0)
        t_close = time.monotonic()
        for _, child in reversed(children):
            child.close(timeout=120)
        out["clients_closed_s"] = time.monotonic() - t_close  # every socket closing at once
        server.close(timeout=120)
        out["teardown_s"] = time.monotonic() - t_close
        print(f"  teardown: client processes closed in {out['clients_closed_s']:.1f} s, the "
              f"server stopped {out['teardown_s']:.1f} s after they began", flush=True)
        remove_db(srv_path)
        for path, where in [(server.log_path, "server process")] + \
                [(c.log_path, f"{k} client process") for k, c in children]:
            limits_hit.extend(limits_in_log(path, where))
        out["limits_hit"] = limits_hit
    return out


def _per(now: dict[str, Any], idle: dict[str, Any], n: int) -> dict[str, float]:
    if not n:
        return {"threads": float("nan"), "rss_kb": float("nan")}
    return {"threads": (now["threads"] - idle["threads"]) / n,
            "rss_kb": (now["rss_mb"] - idle["rss_mb"]) * 1024 / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=1000, help="real Clients among the syncs")
    parser.add_argument("--real-procs", type=int, default=4)
    parser.add_argument("--light-procs", type=int, default=2)
    parser.add_argument("--syncs-per-socket", type=int, default=1)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100,
                        help="light sockets mid-handshake at once (over all light processes)")
    parser.add_argument("--change-timeout", type=float, default=60.0)
    parser.add_argument("--quiet-wait", type=float, default=35.0,
                        help="seconds after connecting before the 'quiet' reading (0: none); "
                             "today's per-socket workers end after 30 s idle")
    parser.add_argument("--connect-timeout", type=float, default=600.0,
                        help="each client process reports what is ready after this long")
    parser.add_argument("--max-machine-threads", type=int, default=None,
                        help="light peers stop connecting when the machine runs this many "
                             "threads (default 70 %% of kernel.pid_max)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="the server process's sys.setswitchinterval (default CPython's "
                             "5 ms): how often each thread waiting for the GIL wakes up")
    args = parser.parse_args()
    print_machine()
    res = measure(args.syncs, real=args.real, real_procs=args.real_procs,
                  light_procs=args.light_procs, syncs_per_socket=args.syncs_per_socket,
                  changes=args.changes, concurrency=args.concurrency,
                  change_timeout=args.change_timeout,
                  max_machine_threads=args.max_machine_threads,
                  connect_timeout=args.connect_timeout, quiet_wait=args.quiet_wait,
                  switch_interval=args.switch_interval)
    OUT.mkdir(exist_ok=True)
    path = OUT / f"scale-{args.syncs}.json"
    path.write_text(json.dumps(res, indent=1, default=str))
    print("\n".join(section(res, "python3 bench/bench_scale.py " + " ".join(sys.argv[1:]))))
    print(f"raw figures: {path}")


def section(res: dict[str, Any], cmd: str) -> list[str]:
    """The results.md section of one run."""
    rounds = res.get("rounds", [])
    idle, con = res.get("server_idle", {}), res.get("server_connected", {})
    peak = res.get("server_peak", {})
    conns = con.get("stats", {}).get("connections", 0)
    all_s = [r["all_s"] for r in rounds]
    med_all = percentile(sorted(all_s), 0.5) if rounds else float("nan")
    ok = (res.get("ready", 0) >= BAR_SYNCS and med_all <= BAR_FANOUT_S
          and peak.get("VmHWM", 0) / 1024 <= BAR_RSS_MB)
    lines = [f"### {res['syncs']:,} live syncs requested ({res['real']:,} real `Client`s in "
             f"{res['real_procs']} processes, {res['light']:,} light peers in "
             f"{res['light_procs']} process(es), {res['syncs_per_socket']} sync(s) per light "
             "socket)", "",
             "| syncs ready (real + light) | sockets | time to connect all | server threads "
             "idle → connected (peak) | server RSS MB idle → connected (peak VmHWM) | "
             "threads per connection | RSS KB per connection | threads per live sync | "
             "RSS KB per live sync | server maps (peak) |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| {res.get('ready', 0):,} ({res.get('ready_real', 0):,} + "
             f"{res.get('ready_light', 0):,}) | {conns:,} | {res.get('connect_all_s', float('nan')):.1f} s | "
             f"{idle.get('threads', 0)} → {con.get('threads', 0):,} ({peak.get('Threads', 0):,}) | "
             f"{idle.get('rss_mb', 0):.0f} → {con.get('rss_mb', 0):.0f} "
             f"({peak.get('VmHWM', 0) / 1024:.0f}) | "
             f"{res.get('per_connection', {}).get('threads', float('nan')):.2f} | "
             f"{res.get('per_connection', {}).get('rss_kb', float('nan')):.0f} | "
             f"{res.get('per_sync', {}).get('threads', float('nan')):.2f} | "
             f"{res.get('per_sync', {}).get('rss_kb', float('nan')):.0f} | "
             f"{con.get('maps', 0):,} ({peak.get('maps', 0):,}) |", "",
             "| change | reached / syncs still connected | all reached, s | median, s | p99, s | "
             "median real / light, s | "
             "server CPU s | server CPU µs per sync | client processes CPU s | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        lines.append(f"| {r['id']} | {r['arrived']:,}/{r['of']:,} | "
                     f"{'not all' if r['all_s'] != r['all_s'] else format(r['all_s'], '.3f')} | "
                     f"{r['p50_s']:.3f} | {r['p99_s']:.3f} | {r['real_p50_s']:.3f} / "
                     f"{r['light_p50_s']:.3f} | {r['server_cpu_s']:.2f} | "
                     f"{r.get('server_cpu_us_per_sync', float('nan')):.0f} | "
                     f"{r['client_cpu_s']:.2f} | {r['load']} |")
    quiet = res.get("server_quiet")
    if quiet:
        qc = quiet.get("stats", {}).get("connections", 0)
        pq = res.get("per_connection_quiet", {})
        lines += ["", f"Quiet, {res.get('quiet_wait_s', 0):.0f} s after connecting: {qc:,} "
                  f"connections, server {quiet.get('threads', 0):,} threads "
                  f"({pq.get('threads', float('nan')):.2f} per connection; "
                  f"{quiet.get('stats', {}).get('workers', 0):,} of them pool workers), "
                  f"RSS {quiet.get('rss_mb', 0):.0f} MB ({pq.get('rss_kb', float('nan')):.0f} KB "
                  "per connection)."]
    procs = res.get("client_procs", [])
    lines += ["", "Client processes (kind: syncs ready, threads, RSS MB): "
              + "; ".join(f"{p['kind']}: {p['ready']}, {p['threads']}, {p['rss_mb']:.0f}"
                          for p in procs) + ".",
              f"Threads on the machine (all users; kernel.pid_max bounds them): "
              f"{res.get('machine_threads_before', 0):,} before, "
              f"{res.get('machine_threads_connected', 0):,} with everything connected, "
              f"{peak.get('machine_threads', 0):,} at the peak; the light peers stop connecting at "
              f"{res.get('max_machine_threads', 0):,}. Time to connect: real Clients "
              f"{res.get('connect_real_s', float('nan')):.1f} s, then the light peers (all: the "
              "table's figure). Limits: "
              + ", ".join(f"{k} {v}" for k, v in res.get("machine_limits", {}).items()) + "."]
    hit = res.get("limits_hit", [])
    lines.append("Limits that bound, and failures: " + ("; ".join(hit) if hit else "none") + ".")
    lines += [f"Bar (10,000 live syncs, one change reaches all in ≤ {BAR_FANOUT_S:.0f} s median, "
              f"RSS ≤ 1 GB): {'**met**' if ok else '**not met**'}.", "", f"Command: `{cmd}`", ""]
    return lines


if __name__ == "__main__":
    main()
