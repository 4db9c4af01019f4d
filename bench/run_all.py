"""Run every sync benchmark and write bench/results.md.

    python3 bench/run_all.py            # measurements 1, 2, 3, 5 (about 20-30 min here)
    python3 bench/run_all.py --big      # and measurement 4 (1,000,000 docs; long)
    python3 bench/run_all.py --only 1,3 # a subset; --quick for a smoke run (small sizes)
    python3 bench/run_all.py --only "" --scale 10000  # only the scale run (long: 10-30 min)

Everything binds to 127.0.0.1 and stops by itself (child processes have watchdogs).
Raw figures go to bench/out/*.json; the tables to bench/results.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, OUT, REPO, doc_bytes, fmt_num, fmt_rate, load, print_machine  # noqa: E402

BARS = {
    1: "≥ 50,000 docs/s each way",
    2: ("≥ 75 % of the rate at which pouchdb-server itself serves `_changes?include_docs=true` "
        "(same run) and ≥ 7× PouchDB 9's HTTP replication (issue 14); the original beside them"),
    3: "p50 ≤ 10 ms and p99 ≤ 50 ms (embedded backend)",
    4: "client RSS ≤ 150 MB",
    5: "all 1,000 within 2 s",
}


def yes(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def section_1(results: list[dict[str, Any]] | dict[str, Any], cmd: str) -> list[str]:
    if isinstance(results, dict):  # one batch size (older raw files)
        results = [results]
    res = results[0]
    lines = [f"## 1. Embedded → sync server (embedded) → embedded, {res['docs']:,} docs "
             f"(~{doc_bytes()} B each)", "",
             f"Bar: {BARS[1]}, judged at batch_size 500, `Client.sync`'s default. Client and "
             "server are separate processes on the same 2 cores. batch_size 100 (the default of "
             "`replicate()` and `Replicator`) is shown beside it.", "",
             "| direction | batch_size | docs/s (median [spread]) | docs per CPU-second (client+server) | "
             "bytes on the wire per doc (both ways) | calls per batch | client CPU s | "
             "server CPU s | client peak RSS MB | server peak RSS MB | bar |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for direction in ("pull", "push"):
            a = r[direction]
            ok = a["docs_per_s"]["median"] >= 50_000 and a["all_ok"]
            lines.append(
                f"| {direction} | {r['batch_size']} | {fmt_rate(a['docs_per_s'])} | "
                f"{fmt_rate(a['cpu_docs_per_s'])} | "
                f"{fmt_num(a['bytes_per_doc']['median'], 0)} | "
                f"{fmt_num(a['round_trips_per_batch']['median'], 2)} | "
                f"{fmt_num(a['client_cpu_s']['median'])} | {fmt_num(a['server_cpu_s']['median'])} | "
                f"{fmt_num(a['client_peak_rss_mb']['median'], 0)} | "
                f"{fmt_num(a['server_peak_rss_mb']['median'], 0)} | {yes(ok)} |")
    lines.append("")
    for r in results:
        lines.append(f"- batch_size {r['batch_size']}: calls of the last run (op: count): "
                     + "; ".join(f"{d}: " + ", ".join(f"{k} {v}" for k, v in r[d]['calls'].items())
                                 for d in ("pull", "push")))
        lines.append(f"- batch_size {r['batch_size']}: load average (1/5/15 min) before each run: "
                     + "; ".join(f"{d}: " + " | ".join(r[d]["loads"]) for d in ("pull", "push")))
    lines += ["", f"Command: `{cmd}`", ""]
    return lines


def times(ratio: float, digits: int) -> str:
    return "n/a" if ratio != ratio else f"{fmt_num(ratio, digits)}×"


def summary_median(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) == r.get(key)]
    return statistics.median(values) if values else float("nan")


def section_2(res: dict[str, Any], cmd: str) -> list[str]:
    lines = ["## 2. CouchDB-protocol server (pouchdb-server 4.2.0, in memory) → embedded store",
             "", f"Bar: {BARS[2]}. The server's own rate: the whole feed read with `requests` "
             "(keep-alive, no compression) and parsed with `orjson.loads` in the bench process, "
             "timed from the first request to the last answer parsed; `paged` asks for as many "
             "rows per request as our server's read does (`couch_readahead.span_rows`), `whole` "
             "is one request; the faster median is the reference. Each of its runs comes just "
             "before a run of ours (bench/bench_feed.py).", "",
             "| docs | ours: sync server (CouchDatabase) → websocket → embedded, docs/s | "
             "pouchdb-server's own `_changes?include_docs=true`, paged, docs/s | "
             "the same, whole feed in one request, docs/s | ours ÷ its own rate | "
             "PouchDB 9 HTTP replication into memory, docs/s | ours ÷ PouchDB | "
             "original 0.3.0 (PouchDB 5.4.5, memdown), docs/s | ours ÷ original | "
             "ours, docs per CPU-s (client+server, not counting pouchdb-server) | bar |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    extra_rows = []

    def feed_ratio(e: dict[str, Any], rate: float) -> float | None:
        feed = e.get("feed")
        return rate / feed["docs_per_s"]["median"] if feed else None

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    for count, e in res["sizes"].items():
        if "ours_extra" in e:
            x = e["ours_extra"]
            xr = x["docs_per_s"]["median"]
            rf = feed_ratio(e, xr)
            rp = xr / e["pouchdb_docs_per_s"]["median"] if "pouchdb_docs_per_s" in e else None
            ro = xr / e["original_docs_per_s"]["median"] if "original_docs_per_s" in e else None
            extra_rows.append(
                f"| {int(count):,}, ours with batch_size {x['batch_size']} | {fmt_rate(x['docs_per_s'])} | "
                f"| | {pct(rf)} | | {'n/a' if rp is None else f'{rp:.2f}×'} | | "
                f"{'n/a' if ro is None else f'{ro:.1f}×'} | | "
                f"{yes(rf is not None and rp is not None and rf >= 0.75 and rp >= 7)} |")
    for count, e in res["sizes"].items():
        rp, ro = e.get("ratio_pouchdb"), e.get("ratio_original")
        rf = feed_ratio(e, e["ours_docs_per_s"]["median"])
        ok = rf is not None and rp is not None and rf >= 0.75 and rp >= 7
        feed = e.get("feed")
        paged = (f"{fmt_rate(feed['paged']['docs_per_s'])} (by {feed['page']:,})"
                 if feed else "n/a")
        lines.append(
            f"| {int(count):,} | {fmt_rate(e['ours_docs_per_s'])} | {paged} | "
            f"{fmt_rate(feed['whole']['docs_per_s']) if feed else 'n/a'} | {pct(rf)} | "
            f"{fmt_rate(e['pouchdb_docs_per_s']) if 'pouchdb_docs_per_s' in e else 'n/a'} | "
            f"{'n/a' if rp is None else f'{rp:.2f}×'} | "
            f"{fmt_rate(e['original_docs_per_s']) if 'original_docs_per_s' in e else e.get('original_error', 'n/a')} | "
            f"{'n/a' if ro is None else f'{ro:.1f}×'} | "
            f"{fmt_rate(e['ours_cpu_docs_per_s'])} | {yes(ok)} |")
    lines += extra_rows
    lines += ["", "CPU seconds of every process involved (median of runs): ours = our client + our "
              "server + pouchdb-server; PouchDB = its node process + pouchdb-server; the original "
              "= its node client + its node server. Less sensitive to the shared machine's load "
              "than wall time.", "",
              "| docs | ours CPU s | PouchDB CPU s | original CPU s | PouchDB ÷ ours | original ÷ ours |",
              "|---|---|---|---|---|---|"]
    for count, e in res["sizes"].items():
        o = e.get("ours_total_cpu_s", {}).get("median", float("nan"))
        p = e.get("pouchdb_total_cpu_s", {}).get("median", float("nan"))
        g = e.get("original_total_cpu_s", {}).get("median", float("nan"))
        lines.append(f"| {int(count):,} | {fmt_num(o, 2)} | {fmt_num(p, 2)} | {fmt_num(g, 2)} | "
                     f"{times(p / o, 2)} | {times(g / o, 1)} |")
    lines.append("")
    for count, e in res["sizes"].items():
        if "pouchdb" in e:
            lines.append(f"- {int(count):,}: PouchDB node CPU per run: "
                         + ", ".join(f"{r['cpu_s']:.1f} s" for r in e["pouchdb"])
                         + f" ({fmt_rate(e['pouchdb_cpu_docs_per_s'])} docs per node CPU-s)")
        if "original" in e:
            lines.append(f"- {int(count):,}: original client node CPU per run: "
                         + ", ".join(f"{r['cpu_s']:.1f} s" for r in e["original"]["runs"])
                         + f" ({fmt_rate(e['original_cpu_docs_per_s'])} docs per node CPU-s); "
                         f"{len(e['original']['runs'])} run(s)")
        if "feed" in e:
            f = e["feed"]
            lines.append(f"- {int(count):,}: pouchdb-server's CPU per read of its own feed: paged "
                         f"{fmt_num(f['paged']['couch_cpu_s']['median'], 2)} s, whole "
                         f"{fmt_num(f['whole']['couch_cpu_s']['median'], 2)} s; during ours: "
                         f"{fmt_num(summary_median(e['ours'], 'couch_cpu_s'), 2)} s (median)")
        ours = e["ours"]
        lines.append(f"- {int(count):,}: ours, calls per batch "
                     f"{ours[-1]['round_trips_per_batch']:.2f}, {ours[-1]['bytes_per_doc']:.0f} B/doc "
                     f"on our websocket, client peak RSS {ours[-1]['peak_rss_mb']:.0f} MB, "
                     f"loads: " + " | ".join(r["load"] for r in ours))
    for name, inst in res["install"].items():
        if not inst["ok"] and str(inst.get("error", "")).startswith("skipped"):
            lines.append(f"- {name}: not run ({inst['error']})")
        elif not inst["ok"]:
            lines.append(f"- **{name} could not be installed**: `{inst['error']}`")
    lines += ["", f"Command: `{cmd}`", ""]
    return lines


def section_3(results: list[dict[str, Any]], cmd: str) -> list[str]:
    lines = ["## 3. Live latency: a write on client A until readable on client B", "",
             f"Bar: {BARS[3]}. Each write waits for the previous one to arrive; both clients "
             "run a live two-way sync of their own embedded store; B is watched by a longpoll "
             "on its store.", "",
             "| server backend | writes × runs | p50 ms (median [min–max over runs]) | "
             "p99 ms (median [min–max]) | missed | bar |", "|---|---|---|---|---|---|"]
    for res in results:
        p50, p99 = res["p50_ms"], res["p99_ms"]
        ok = p50["median"] <= 10 and p99["median"] <= 50 and res["missed"] == 0
        bar = yes(ok) if res["backend"] == "local" else ("(no bar) " + ("within" if ok else "outside")
                                                         + " the embedded bar")
        lines.append(f"| {res['backend']} | {res['writes']} × {len(res['runs'])} | "
                     f"{p50['median']:.2f} [{p50['min']:.2f}–{p50['max']:.2f}] | "
                     f"{p99['median']:.2f} [{p99['min']:.2f}–{p99['max']:.2f}] | {res['missed']} | {bar} |")
    lines.append("")
    for res in results:
        lines.append(f"- {res['backend']}: loads " + " | ".join(r["load"] for r in res["runs"]))
    lines += ["", f"Command: `{cmd}`", ""]
    return lines


def section_4(res: dict[str, Any] | None, cmd: str) -> list[str]:
    lines = ["## 4. A 1,000,000-doc pull (embedded → server → embedded), batch_size 500", "",
             f"Bar: {BARS[4]}."]
    if res is None:
        return lines + ["", "Not run (it runs with `--big`).", ""]
    samples = res["rss_samples"]
    ok = res["peak_rss_mb"] <= 150 and res["ok"]
    lines += ["", "| docs | seconds | docs/s | docs per CPU-s | client peak RSS MB (VmHWM) | "
              "server peak RSS MB | bar |", "|---|---|---|---|---|---|---|",
              f"| {res['docs']:,} | {res['seconds']:.1f} | {res['docs_per_s']:,.0f} | "
              f"{res['cpu_docs_per_s']:,.0f} | {res['peak_rss_mb']:.0f} | "
              f"{res['server_peak_rss_mb']:.0f} | {yes(ok)} |", "",
              f"Client RSS over time (sampled every 0.5 s, {len(samples)} samples; every 10th "
              f"shown, MB): "
              + ", ".join(f"{t:.0f}s {rss:.0f}" for t, rss in samples[::10]),
              "", f"Load before: {res['load']}", "", f"Command: `{cmd}`", ""]
    return lines


def section_5(res: dict[str, Any], cmd: str) -> list[str]:
    ok = res["all_arrived"] and res["all_s"]["median"] <= 2.0 and res["ready"] == res["clients"]
    worst = res["all_s"]["max"]
    lines = [f"## 5. {res['clients']:,} live syncs on one server process", "",
             f"Bar: {BARS[5]}. Clients: {res['procs']} processes × "
             f"{res['clients'] // res['procs']} clients, one socket and one live pull sync each. "
             "A change is written into the server's store in the server process; the time is "
             "until the last client's store has it.", "",
             "| live syncs ready | time to connect all | one change reaches all, s (median [min–max]) | "
             "worst | server RSS MB (idle → with syncs → peak) | server threads | bar |",
             "|---|---|---|---|---|---|---|",
             f"| {res['ready']:,} | {res['connect_all_s']:.1f} s | "
             f"{res['all_s']['median']:.3f} [{res['all_s']['min']:.3f}–{res['all_s']['max']:.3f}] | "
             f"{worst:.3f} | {res['server_idle_rss_mb']:.0f} → {res['server_rss_mb']:.0f} → "
             f"{res['server_peak_rss_mb']:.0f} | {res['server_threads']} | {yes(ok)} |", "",
             "| change | reached | last client, s | median client, s | server CPU s | "
             "client processes CPU s | calls by the clients | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rounds"]:
        lines.append(f"| {r['id']} | {r['arrived']}/{res['clients']} | {r['all_s']:.3f} | "
                     f"{r['p50_s']:.3f} | {fmt_num(r.get('server_cpu_s', float('nan')), 2)} | "
                     f"{fmt_num(r.get('clients_cpu_s', float('nan')), 2)} | "
                     f"{', '.join(f'{k} {v}' for k, v in r.get('calls', {}).items()) or 'n/a'} | "
                     f"{r['load']} |")
    lines += [
             "",
             "", f"Client processes: RSS {', '.join(f'{x:.0f}' for x in res['client_procs_rss_mb'])} MB, "
             f"threads {', '.join(str(x) for x in res['client_procs_threads'])}. "
             f"Thread limits: {limits()}.", "", f"Command: `{cmd}`", ""]
    return lines


def section_scale(res: dict[str, Any], cmd: str) -> list[str]:
    import bench_scale

    return (["## Scale: live syncs per server process", "",
             f"Bar: one server process holds {bench_scale.BAR_SYNCS:,} live syncs, one change "
             f"reaches all in ≤ {bench_scale.BAR_FANOUT_S:.0f} s median, server RSS ≤ 1 GB "
             "(issue 14, point 3). Real `Client`s and light protocol-level peers "
             "(bench/light_peers.py) on one server process (embedded store).", ""]
            + bench_scale.section(res, cmd))


def limits() -> str:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    try:
        tmax = Path("/proc/sys/kernel/threads-max").read_text().strip()
    except OSError:
        tmax = "?"
    return f"ulimit -u {soft}/{hard}, kernel threads-max {tmax}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the 1,000,000-doc pull")
    parser.add_argument("--only", default="1,2,3,5", help="which measurements (1-5)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (smoke)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500,
                        help="batch_size of our syncs in 1 and 2 (Client.sync's default is 500)")
    parser.add_argument("--extra-batch", type=int, default=100,
                        help="also measure 1 and 2 with this batch_size (0: no)")
    parser.add_argument("--scale", type=int, default=0, metavar="SYNCS",
                        help="also the scale run: SYNCS live syncs on one server process "
                             "(bench/bench_scale.py; long: 10-30 min at 10,000)")
    parser.add_argument("--out", default=str(BENCH / "results.md"))
    parser.add_argument("--render", nargs="?", const=str(OUT / "run_all.json"), default=None,
                        metavar="JSON", help="measure nothing: rewrite --out from the raw figures "
                                             "of a run (default bench/out/run_all.json)")
    args = parser.parse_args()
    only = {int(x) for x in args.only.split(",") if x.strip()}
    if args.big:
        only.add(4)
    runs = 1 if args.quick else args.runs
    n1 = 5_000 if args.quick else 100_000
    sizes = [2_000] if args.quick else [10_000, 100_000]
    writes = 100 if args.quick else 1000
    clients = 40 if args.quick else 1000
    big_docs = 50_000 if args.quick else 1_000_000

    import bench_peers
    import bench_sync

    started = time.monotonic()
    info = print_machine()
    base = "python3 bench/run_all.py"
    sections: dict[int | str, list[str]] = {}
    raw: dict[str, Any] = {}
    OUT.mkdir(exist_ok=True)

    def save() -> None:
        (OUT / "run_all.json").write_text(json.dumps(raw, indent=1, default=str))

    if args.render:
        raw = json.loads(Path(args.render).read_text())
        only = set()
        cmds = {1: f"{base} --only 1", 2: f"{base} --only 2", 3: f"{base} --only 3",
                4: f"{base} --only 4 --big", 5: f"{base} --only 5"}
        if "1" in raw:
            sections[1] = section_1(raw["1"], cmds[1])
        if "2" in raw:
            sections[2] = section_2(raw["2"], cmds[2])
        if "3" in raw:
            sections[3] = section_3(raw["3"], cmds[3])
        if "4" in raw:
            sections[4] = section_4(raw["4"], cmds[4])
        if "5" in raw:
            sections[5] = section_5(raw["5"], cmds[5])
        if "scale" in raw:
            sections["scale"] = section_scale(raw["scale"], f"{base} --scale {raw['scale']['syncs']}")
        info = dict(info, **raw.get("machine", {}))  # as measured, when recorded
    if 1 in only:
        print(f"\n== 1. pull and push of {n1} docs, {runs} runs", flush=True)
        raw["1"] = [bench_sync.oneshot(n1, runs, args.batch_size)]
        if args.extra_batch:
            raw["1"].append(bench_sync.oneshot(n1, runs, args.extra_batch))
        sections[1] = section_1(raw["1"], f"{base} --only 1 "
                                          f"(or: python3 bench/bench_sync.py oneshot --docs {n1} "
                                          f"--runs {runs} --batch-size {args.batch_size})")
        save()
    if 2 in only:
        print(f"\n== 2. CouchDB-protocol server -> embedded, {sizes}, side by side", flush=True)
        raw["2"] = bench_peers.measure(sizes, runs, 1, args.batch_size,
                                       extra_batch=args.extra_batch or None)
        sections[2] = section_2(raw["2"], f"{base} --only 2 (or: python3 bench/bench_peers.py "
                                          f"--sizes {','.join(map(str, sizes))} --runs {runs})")
        save()
    if 3 in only:
        print(f"\n== 3. live latency, {writes} writes x {runs} runs", flush=True)
        lat = [bench_sync.latency(writes, runs)]
        from tests.couchserver import start
        url, stop = start()
        try:
            lat.append(bench_sync.latency(writes, runs, backend="couch", couch_url=url,
                                          couch_db="bench-latency"))
        finally:
            stop()
        raw["3"] = lat
        sections[3] = section_3(lat, f"{base} --only 3 (or: python3 bench/bench_sync.py latency "
                                     f"--writes {writes} --runs {runs})")
        save()
    if 4 in only:
        print(f"\n== 4. {big_docs}-doc pull", flush=True)
        raw["4"] = bench_sync.big(big_docs)
        sections[4] = section_4(raw["4"], f"{base} --only 4 --big (or: python3 bench/bench_sync.py "
                                          f"big --docs {big_docs})")
        save()
    if 5 in only:
        print(f"\n== 5. {clients} live syncs", flush=True)
        raw["5"] = bench_sync.fanout(clients, 4 if clients >= 100 else 2, runs)
        sections[5] = section_5(raw["5"], f"{base} --only 5 (or: python3 bench/bench_sync.py "
                                          f"fanout --clients {clients} --procs 4 --runs {runs})")
        save()

    if args.scale and not args.render:
        import bench_scale

        print(f"\n== scale: {args.scale} live syncs on one server process", flush=True)
        raw["scale"] = bench_scale.measure(args.scale, changes=max(3, runs))
        sections["scale"] = section_scale(raw["scale"], f"{base} --scale {args.scale} (or: "
                                          f"python3 bench/bench_scale.py --syncs {args.scale})")
        save()

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not args.render:
        raw["machine"] = info
        raw["finished"] = now
        raw["load_end"] = load()
        raw["seconds"] = time.monotonic() - started
        save()
    if args.render:
        when = (f"Measured by `{base} --big`, finished {raw.get('finished', '?')} after "
                f"{raw.get('seconds', 0):.0f} s; tables rendered {now} by `{base} --render`.")
        end_load = raw.get("load_end", "?")
    else:
        when = (f"Run {now}, {time.monotonic() - started:.0f} s, by `{base}"
                f"{' --big' if args.big else ''}{' --quick' if args.quick else ''}`"
                f"{'' if only == {1, 2, 3, 5} | ({4} if args.big else set()) else ' --only ' + args.only}.")
        end_load = load()
    head = ["# Sync benchmarks", "", when,
            "", f"- Machine: {info['machine']}", f"- Versions: {info['versions']}",
            f"- Load average at the end: {end_load} (the machine is shared; other engineers' test "
            "runs compete for the 2 cores, so wall-clock rates are low and noisy: docs per "
            "CPU-second is given beside them)",
            "- Each figure: median of the runs, [spread] = min and max as % off the median.", ""]
    for key, lines in sections.items():  # kept, so a partial run reuses the others
        if not args.render:
            (OUT / f"section-{key}.md").write_text("\n".join(lines))
    body: list[str] = []
    for key in (1, 2, 3, 4, 5, "scale"):
        path = OUT / f"section-{key}.md"
        if key in sections:
            body += sections[key]
        elif path.exists():
            body += [f"<!-- section {key}: from an earlier run (bench/out/section-{key}.md) -->",
                     path.read_text()]
        elif key == 4:
            body += section_4(None, f"{base} --big")
    out_path = Path(args.out)
    text = "\n".join(head + body)
    notes = BENCH / "results_notes.md"
    if notes.exists():
        text += "\n" + notes.read_text()
    out_path.write_text(text)
    print(f"\nwrote {out_path.relative_to(REPO) if out_path.is_relative_to(REPO) else out_path}")


if __name__ == "__main__":
    main()
