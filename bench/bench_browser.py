"""PouchDB in headless Chromium through ``pouchsync.js``: an initial pull into IndexedDB,
and the live latency from a browser write to a Python client.

    python3 bench/bench_browser.py                 # 10,000 docs × 3 runs, 300 writes
    python3 bench/bench_browser.py --quick         # a smoke run (1,000 docs, 50 writes)

1. Pull: the server (``browser_server.py``, its own process) holds N small docs
   (``common.small_doc``) in an embedded store; the page creates an empty PouchDB (the
   browser build's default IndexedDB adapter) and runs a one-shot pull
   (``client.sync(db, {live: false, direction: 'pull'})``), timed in the page from
   ``connect`` until the sync resolves and ``db.info()`` shows every doc.
2. Live latency: the page live-syncs one PouchDB with the server's ``live`` database and
   a Python ``Client`` (this process) live-syncs an embedded ``:memory:`` store with the
   same database. The page stamps each doc with its wall clock
   (``performance.timeOrigin + performance.now()``) just before ``db.put``; this process
   sees it arrive through a longpoll on its store and takes ``time.time()``. Both read
   the system clock; their offset is measured as a check (the page's clock read between
   two of ours, the tightest of 20) and reported, not subtracted (its uncertainty, half
   a WebDriver round trip, is larger than the offset). Each write waits for the
   previous one to arrive; the first 10 are warm-up.
3. The ceiling for (1): the same docs written by the page straight into an empty
   PouchDB (``bulkDocs`` with ``new_edits: false``, same batches, no network), run
   right after each pull so that both see the same load; the ratio is per pair.

Prints the figures and writes them into bench/results.md between the markers
``<!-- bench_browser -->`` and ``<!-- /bench_browser -->`` (appended the first time).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BENCH, OUT, Child, copy_db, cpu_seconds, doc_bytes, fmt_num, fmt_rate, load,  # noqa: E402
                    percentile, print_machine, py, remove_db, seed_file, summary)

MARK_START = "<!-- bench_browser -->"
MARK_END = "<!-- /bench_browser -->"
SCRIPT_TIMEOUT = 900.0

PULL_JS = """
var done = arguments[arguments.length - 1];
var name = arguments[0], ws = arguments[1], batch = arguments[2];
var db = new PouchDB(name);
var client = PouchSync.createClient();
var t0 = performance.now();
client.connect(ws);
client.sync(db, {remoteName: 'docs', live: false, direction: 'pull', batchSize: batch}).then(function (res) {
  var t1 = performance.now();
  return db.info().then(function (info) {
    client.end();
    var out = {ms: t1 - t0, doc_count: info.doc_count, adapter: db.adapter};
    return db.destroy().then(function () { done(out); });
  });
}, function (err) {
  client.end();
  done({error: String((err && (err.message || err.reason)) || err)});
});
"""

# The ceiling: the same docs written straight into an empty PouchDB of the same browser
# (bulkDocs new_edits=false in batches of the pull's size), no network at all.
LOCAL_WRITE_JS = """
var done = arguments[arguments.length - 1];
var name = arguments[0], count = arguments[1], batch = arguments[2], filler = arguments[3];
var db = new PouchDB(name);
function doc(i) {
  var id = 'doc' + String(i).padStart(8, '0'), rev = i.toString(16).padStart(32, '0');
  return {_id: id, _rev: '1-' + rev, _revisions: {start: 1, ids: [rev]}, type: 'todo', n: i,
          done: i % 3 === 0, title: 'item number ' + i, tags: ['a', 'b', String(i % 17)], text: filler};
}
var t0 = performance.now();
function next(first) {
  if (first >= count) {
    var ms = performance.now() - t0;
    return db.info().then(function (info) {
      return db.destroy().then(function () { done({ms: ms, doc_count: info.doc_count}); });
    });
  }
  var docs = [];
  for (var i = first; i < Math.min(count, first + batch); i++) docs.push(doc(i));
  return db.bulkDocs(docs, {new_edits: false}).then(function () { return next(first + batch); });
}
next(0).catch(function (err) { done({error: String(err && err.message)}); });
"""

LIVE_SETUP_JS = """
var done = arguments[arguments.length - 1];
var ws = arguments[0];
var db = new PouchDB('live-' + Date.now());
var client = PouchSync.createClient();
var sync = client.sync(db, {remoteName: 'live'});
var answered = false;
function answer(x) { if (!answered) { answered = true; done(x); } }
sync.on('paused', function () { answer({ok: true}); });
sync.on('error', function (err) { answer({error: String(err && err.message)}); });
sync.on('denied', function (err) { answer({error: 'denied: ' + String(err && err.message)}); });
client.connect(ws);
window.bench = {
  db: db, client: client, sync: sync,
  write: function (id) {
    db.put({_id: id, t: performance.timeOrigin + performance.now()});
  },
  end: function () { client.end(); return db.destroy(); }
};
"""


def browser_clock_offset(driver: Any, tries: int = 20) -> tuple[float, float]:
    """(page clock − our clock, uncertainty) in ms: the tightest of ``tries`` readings."""
    best: tuple[float, float] | None = None
    for _ in range(tries):
        before = time.time() * 1000
        page = driver.execute_script("return performance.timeOrigin + performance.now();")
        after = time.time() * 1000
        width = after - before
        if best is None or width < best[1]:
            best = (page - (before + after) / 2, width / 2)
    assert best is not None
    return best


def pull_once(driver: Any, ws: str, server_pid: int, docs: int, batch: int) -> dict[str, Any]:
    """One timed pull into a fresh PouchDB: docs/s, server CPU seconds, the adapter."""
    cpu0 = cpu_seconds(server_pid)
    res = driver.execute_async_script(PULL_JS, f"pull-{time.time_ns()}", ws, batch)
    cpu1 = cpu_seconds(server_pid)
    if "error" in res:
        raise RuntimeError(f"pull: {res['error']}")
    if res["doc_count"] != docs:
        raise RuntimeError(f"pull: {res['doc_count']} docs in IndexedDB, not {docs}")
    return {"rate": docs / (res["ms"] / 1000), "server_cpu_s": cpu1 - cpu0, "adapter": res["adapter"]}


def local_write_once(driver: Any, docs: int, batch: int) -> float:
    """The ceiling: docs/s of the same docs written by the page into a fresh PouchDB."""
    from common import FILLER

    res = driver.execute_async_script(LOCAL_WRITE_JS, f"local-{time.time_ns()}", docs, batch, FILLER[:160])
    if "error" in res or res["doc_count"] != docs:
        raise RuntimeError(f"local write: {res}")
    return docs / (res["ms"] / 1000)


def run_pulls(driver: Any, ws: str, server_pid: int, docs: int, runs: int, batch: int) -> dict[str, Any]:
    """``runs`` pulls, each followed by a ceiling run, so both see the same load."""
    rates, cpus, ceilings, ratios, adapter = [], [], [], [], ""
    for run in range(runs):
        pulled = pull_once(driver, ws, server_pid, docs, batch)
        ceiling = local_write_once(driver, docs, batch)
        adapter = pulled["adapter"]
        rates.append(pulled["rate"])
        cpus.append(pulled["server_cpu_s"])
        ceilings.append(ceiling)
        ratios.append(pulled["rate"] / ceiling)
        print(f"  run {run + 1}: pull {pulled['rate']:,.0f} docs/s (server CPU "
              f"{pulled['server_cpu_s']:.2f} s), local write {ceiling:,.0f} docs/s, "
              f"ratio {ratios[-1] * 100:.0f} % (load {load()})", flush=True)
    return {"docs": docs, "batch_size": batch, "adapter": adapter, "docs_per_s": summary(rates),
            "server_cpu_s": summary(cpus), "ceiling_docs_per_s": summary(ceilings),
            "ratio": summary(ratios)}


def run_latency(driver: Any, ws: str, writes: int, warmup: int = 10) -> dict[str, Any]:
    import pouchsync_sync as ps

    local = ps.LocalDatabase(":memory:", name="live")
    client = ps.create_client()
    try:
        client.connect(ws)
        live = client.sync(local, live=True)
        live.wait_in_sync(timeout=60)
        ready = driver.execute_async_script(LIVE_SETUP_JS, ws)
        if "error" in ready:
            raise RuntimeError(f"live sync in the page: {ready['error']}")
        offset, uncertainty = browser_clock_offset(driver)
        since = local.info()["update_seq"]
        latencies, missed = [], 0
        for i in range(warmup + writes):
            doc_id = f"w{i:05d}"
            driver.execute_script("window.bench.write(arguments[0]);", doc_id)
            deadline = time.monotonic() + 30
            arrived = None
            while arrived is None and time.monotonic() < deadline:
                res = local.changes(since=since, feed="longpoll", include_docs=True,
                                    timeout=max(0.0, deadline - time.monotonic()))
                now = time.time() * 1000
                since = res["last_seq"]
                for row in res["results"]:
                    if row["id"] == doc_id:
                        arrived = now - row["doc"]["t"]
            if arrived is None:
                missed += 1
            elif i >= warmup:
                latencies.append(arrived)
        driver.execute_async_script("var done = arguments[arguments.length - 1];"
                                    "window.bench.end().then(function () { done(true); });")
        live.cancel()
    finally:
        client.close()
        local.close()
    return {"writes": writes, "missed": missed, "clock_offset_ms": offset,
            "clock_uncertainty_ms": uncertainty,
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies) if latencies else float("nan")}


def section(result: dict[str, Any], cmd: str) -> str:
    pull, lat = result["pull"], result["latency"]
    lines = [
        MARK_START,
        f"## 7. pouchsync.js: PouchDB 9 in headless Chromium ({result['date']})", "",
        f"Measured by `bench/bench_browser.py`: Chromium {result['chromium']}, PouchDB's browser "
        f"build (adapter `{pull['adapter']}`, i.e. IndexedDB), the sync server in its own process "
        "(embedded store), everything on 127.0.0.1 on the same 2 cores.", "",
        "| measurement | figure |", "|---|---|",
        f"| initial pull of {pull['docs']:,} docs (~{doc_bytes()} B) into IndexedDB, one-shot, "
        f"batchSize {pull['batch_size']}, {pull['docs_per_s']['runs']} runs | "
        f"{fmt_rate(pull['docs_per_s'])} docs/s (median [spread]); server CPU "
        f"{fmt_num(pull['server_cpu_s']['median'], 2)} s per run |",
        f"| the same docs written by the page straight into an empty PouchDB (`bulkDocs`, "
        f"new_edits=false, same batches, no network): the ceiling | "
        f"{fmt_rate(pull['ceiling_docs_per_s'])} docs/s; each pull reached "
        f"{pull['ratio']['median'] * 100:.0f} % [{pull['ratio']['min'] * 100:.0f}–"
        f"{pull['ratio']['max'] * 100:.0f} %] of the ceiling run that followed it |",
        f"| live latency, browser `db.put` → readable in a Python client's embedded store "
        f"({lat['writes']} writes, each after the previous arrived) | p50 {fmt_num(lat['p50_ms'], 2)} ms, "
        f"p99 {fmt_num(lat['p99_ms'], 2)} ms, max {fmt_num(lat['max_ms'], 2)} ms, missed {lat['missed']} |",
        "",
        "Latency is the Python client's `time.time()` at arrival minus the page's "
        "`performance.timeOrigin + performance.now()` just before `db.put`: both read the "
        "system clock. Their offset, measured as the page's clock read between two of ours "
        f"(tightest of 20), was {fmt_num(lat['clock_offset_ms'], 2)} ± "
        f"{fmt_num(lat['clock_uncertainty_ms'], 2)} ms, not subtracted. "
        f"Load average at the start {result['load_start']}, at the end {result['load']} "
        "(other engineers' test runs share the machine).",
        "",
        f"Command: `{cmd}`",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def write_results(path: Path, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if MARK_START in old and MARK_END in old:
        head, rest = old.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="1,000 docs, 1 run, 50 writes")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.docs, args.runs, args.writes = 1000, 1, 50

    from tests.browser.page import find_chromium, make_driver

    chromium = find_chromium()
    if isinstance(chromium, str):
        print(f"bench_browser: {chromium}", file=sys.stderr)
        return 1
    print_machine()
    load_start = load()
    OUT.mkdir(exist_ok=True)
    docs_path = copy_db(seed_file(args.docs), OUT / "browser-docs.sqlite")
    live_path = OUT / "browser-live.sqlite"
    remove_db(live_path)
    from tests.webapp import js_home  # the tests' npm cache folder: PouchDB 9.0.0, pinned

    server = Child(py("browser_server.py", "--docs", docs_path, "--live", live_path,
                      "--js-home", js_home()),
                   timeout=SCRIPT_TIMEOUT * 2, log_name="browser_server.log")
    driver = None
    try:
        info = server.read()
        base = info["base"]
        ws = base.replace("http://", "ws://") + "sync"
        with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
            driver = make_driver(chromium, Path(profile))
            driver.set_script_timeout(SCRIPT_TIMEOUT)
            driver.get(base)
            loaded = "return typeof PouchDB === 'function' && typeof PouchSync === 'object';"
            if not driver.execute_script(loaded):
                raise RuntimeError(f"the bench page did not load PouchDB and pouchsync.js: "
                                   f"{driver.get_log('browser')}")
            version = driver.capabilities.get("browserVersion", "?")
            print(f"pull: {args.docs:,} docs into IndexedDB, {args.runs} runs, each followed by "
                  "its ceiling (the same docs written by the page itself)", flush=True)
            pull = run_pulls(driver, ws, info["pid"], args.docs, args.runs, args.batch_size)
            print(f"latency: {args.writes} browser writes to a Python client", flush=True)
            latency = run_latency(driver, ws, args.writes)
            driver.quit()
            driver = None
    finally:
        if driver is not None:
            driver.quit()
        server.close()
        remove_db(docs_path)
        remove_db(live_path)
    result = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "chromium": version, "pull": pull, "latency": latency, "load_start": load_start, "load": load()}
    (OUT / "bench_browser.json").write_text(json.dumps(result, indent=2))
    print(f"pull: {fmt_rate(pull['docs_per_s'])} docs/s; live latency p50 {latency['p50_ms']:.2f} ms, "
          f"p99 {latency['p99_ms']:.2f} ms (missed {latency['missed']})", flush=True)
    cmd = "python3 bench/bench_browser.py" + (" --quick" if args.quick else "")
    if not args.no_write:
        write_results(args.out, section(result, cmd))
        print(f"written into {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
