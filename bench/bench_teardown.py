"""How long a server process takes to settle when all its sockets drop at once, and
where its threads wait meanwhile.

    python3 bench/bench_teardown.py [--sockets 1500] [--runs 3] [--switch-interval S]

One ``SyncServer`` in this process (embedded store); a child process opens
``--sockets`` websockets to it (hello, open, subscribe: live syncs without a library
client), then exits, so the kernel closes every socket at once (a network blip, a
client host going down). The figure is the time until the server is back to its
thread baseline (it includes the 2 s an idle pool worker waits before it ends).
Meanwhile a sampler thread reads ``sys._current_frames()`` every 50 ms and counts,
over all threads, the innermost frame and the innermost frame of the package: where
the threads wait (py-spy cannot read this machine's Python). With thousands of
threads the sampling itself holds the GIL for long and changes the figure: ``--top 0``
leaves it out.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import raise_nofile  # noqa: E402


def child(url: str, sockets: int) -> None:
    """Open ``sockets`` subscribed websockets, say ready, exit when told (all close)."""
    import websocket

    opened = []
    for _ in range(sockets):
        ws = websocket.create_connection(url, skip_utf8_validation=True, timeout=60)
        ws.send(json.dumps({"type": "hello", "versions": [1], "agent": "bench-teardown"}))
        ws.recv()
        ws.send(json.dumps({"type": "open", "ch": 1, "db": "teardown"}))
        ws.recv()
        ws.send(json.dumps({"type": "subscribe", "ch": 1, "sub": 1, "since": "now"}))
        opened.append(ws)
    print("ready", flush=True)
    sys.stdin.readline()
    os._exit(0)  # the kernel closes every socket at once


def _where(frame: object) -> tuple[str, str | None]:
    """(innermost frame, innermost frame of the package) of one thread's stack."""
    top = frame
    ours = None
    while frame is not None:
        code = frame.f_code  # type: ignore[attr-defined]
        if ours is None and "pouchsync_sync" in code.co_filename:
            ours = (f"{code.co_filename.split('pouchsync_sync/')[-1]}:"
                    f"{frame.f_lineno} {code.co_name}")  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]
    code = top.f_code  # type: ignore[attr-defined]
    return f"{Path(code.co_filename).name}:{top.f_lineno} {code.co_name}", ours  # type: ignore[attr-defined]


def one_run(sockets: int, top: int) -> float:
    import pouchsync_sync as ps

    data = ps.DataDir(tempfile.mkdtemp(prefix="bench-teardown-"))
    srv = ps.create_server(lambda credentials, name: data.database(name))
    srv.start()
    base = threading.active_count()
    proc = subprocess.Popen([sys.executable, __file__, "--child", srv.url, str(sockets)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the child process did not connect its sockets")
        connected = threading.active_count()
        inner: collections.Counter[str] = collections.Counter()
        ours: collections.Counter[str | None] = collections.Counter()
        stop = threading.Event()

        def sample() -> None:
            me = threading.get_ident()
            while not stop.is_set():
                for ident, frame in sys._current_frames().items():
                    if ident != me:
                        where, package = _where(frame)
                        inner[where] += 1
                        ours[package] += 1
                stop.wait(0.05)  # the sampling period

        sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
        if top:  # walking thousands of stacks takes the GIL for long: none with --top 0
            sampler.start()
        started = time.monotonic()
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
        settled = threading.Event()
        counts: list[tuple[float, int]] = []  # (seconds, threads) as this thread saw them
        while threading.active_count() > base + 1 and time.monotonic() - started < 900:
            settled.wait(0.1)  # polling the thread count: nothing to wait on
            counts.append((time.monotonic() - started, threading.active_count()))
        took = time.monotonic() - started
        stop.set()
        if top:
            sampler.join()
        shown = [f"{t:.1f} s: {n:,}" for t, n in counts[::max(1, len(counts) // 8)]]
        print(f"    threads over time (this thread's first look may come late: it waits "
              f"for the GIL like the others): {', '.join(shown)}")
        print(f"  {sockets:,} sockets ({connected - base:,} server threads) dropped at once: "
              f"back to the baseline in {took:.1f} s (threads left {threading.active_count()})",
              flush=True)
        print("    innermost frames (samples):")
        for where, count in inner.most_common(top):
            print(f"      {count:6d}  {where}")
        print("    innermost frames of the package (samples):")
        for package, count in ours.most_common(top):
            print(f"      {count:6d}  {package}")
        return took
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
        data.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=8,
                        help="frames to show; 0: no sampling (it slows thousands of threads)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for this (the server's) process")
    args = parser.parse_args()
    raise_nofile()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"switch interval {sys.getswitchinterval() * 1000:.0f} ms", flush=True)
    times = sorted(one_run(args.sockets, args.top) for _ in range(args.runs))
    print(f"teardown of {args.sockets:,} sockets: median {times[len(times) // 2]:.1f} s "
          f"({times[0]:.1f}–{times[-1]:.1f}) over {args.runs} runs", flush=True)


if __name__ == "__main__":
    main()
