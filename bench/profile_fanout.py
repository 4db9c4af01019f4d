"""Where the server's CPU goes when one change reaches many live subscriptions.

    python3 bench/profile_fanout.py [--sockets 1000] [--changes 5] [--top 25]

One ``SyncServer`` in this process (embedded store), ``--sockets`` light peers
(``light_peers.py``, one process) subscribed to its database, then ``--changes`` docs
written one at a time. The server process's CPU per change is read from /proc
(everything: the fan-out, the follower, pings, the handler threads), and the fan-out's
own task (``FanOut._run``, the only code that pushes to the subscriptions after a
change) runs under cProfile: its functions' own time per push, the top ``--top``.
Bench only: it wraps the method in this process, the package is not changed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import Child, cpu_seconds, percentile, py, raise_nofile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    raise_nofile()

    import os

    import pouchsync_sync as ps
    from pouchsync_sync.server import fanout

    prof = cProfile.Profile()
    runs: list[float] = []
    original = fanout.FanOut._run

    def profiled(self: Any) -> None:
        t0 = time.thread_time()
        prof.runcall(original, self)
        runs.append(time.thread_time() - t0)

    fanout.FanOut._run = profiled  # type: ignore[method-assign]
    tmp = tempfile.mkdtemp(prefix="pouchsync-profile-")
    store = ps.LocalDatabase(os.path.join(tmp, "bench.sqlite"))
    server = ps.create_server(lambda credentials, name: store)
    server.start("127.0.0.1", 0)
    store.put({"_id": "warmup"})
    peers = Child(py("light_peers.py", server.url, "--sockets", args.sockets),
                  timeout=600, log_name="profile-fanout-light.log")
    try:
        ready = peers.read()
        print(f"{ready['ready']} light syncs ready in {ready['seconds']:.1f} s", flush=True)
        threading.Event().wait(1.0)  # the subscriptions' first pushes settle
        prof.disable()
        prof = cProfile.Profile()
        runs.clear()
        me = os.getpid()
        rows = []
        for k in range(args.changes):
            doc_id = f"fan-{k:04d}"
            cpu0 = cpu_seconds(me)
            t0 = time.monotonic()
            store.put({"_id": doc_id})
            peers.send(doc_id)
            got = peers.read()
            cpu = cpu_seconds(me) - cpu0
            lat = sorted(t - t0 for t in got["times"])
            rows.append((got["arrived"], got["of"], lat[-1] if lat else float("nan"),
                         percentile(lat, 0.5), cpu))
            print(f"{doc_id}: {got['arrived']}/{got['of']}, last {rows[-1][2]:.3f} s, median "
                  f"{rows[-1][3]:.3f} s; server process CPU {cpu:.3f} s "
                  f"({cpu * 1e6 / max(1, got['arrived']):.0f} µs per sync)", flush=True)
            threading.Event().wait(0.5)  # spacing the changes, not waiting for a condition
        pushes = sum(r[0] for r in rows)
        fan_cpu = sum(runs)
        print(f"fan-out tasks: {len(runs)}, their thread CPU {fan_cpu:.3f} s under cProfile "
              f"({fan_cpu * 1e6 / max(1, pushes):.1f} µs per push, profiler included)")
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    finally:
        peers.close(timeout=30)
        server.stop()
        store.close()


if __name__ == "__main__":
    main()
