"""Shared helpers of the sync benchmarks: docs, seeding, /proc readings, statistics,
machine description, and child processes that always stop.

Nothing here binds a socket; the server and client processes are ``sync_server.py``
and ``sync_client.py``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"          # gitignored: seed files, logs, raw JSON
PY = sys.executable

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FILLER = "lorem ipsum dolor sit amet " * 8


def small_doc(i: int) -> dict[str, Any]:
    """About 300 bytes of JSON once it has ``_rev`` (the same shape as bench_replicate)."""
    return {"_id": f"doc{i:08d}", "type": "todo", "n": i, "done": i % 3 == 0,
            "title": f"item number {i}", "tags": ["a", "b", str(i % 17)],
            "text": FILLER[:160]}


def replicated_doc(i: int) -> dict[str, Any]:
    """``small_doc(i)`` at a fixed first revision (seeding through new_edits=False)."""
    rev = f"{i:032x}"
    return dict(small_doc(i), _rev=f"1-{rev}", _revisions={"start": 1, "ids": [rev]})


def doc_bytes() -> int:
    doc = dict(small_doc(12345), _rev="1-" + "0" * 32)
    return len(json.dumps(doc, separators=(",", ":")))


def fill(db: Any, start: int, stop: int, chunk: int = 2000) -> None:
    for first in range(start, stop, chunk):
        db.bulk_docs([small_doc(i) for i in range(first, min(stop, first + chunk))])


def seed_file(count: int) -> Path:
    """A LocalDatabase file holding docs 0..count-1, built once and cached in bench/out."""
    from pouchsync_sync import LocalDatabase

    OUT.mkdir(exist_ok=True)
    path = OUT / f"seed-{count}.sqlite"
    if path.exists():
        return path
    tmp = OUT / f"seed-{count}.building.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    db = LocalDatabase(str(tmp))
    for first in range(0, count, 5000):
        db.bulk_docs([replicated_doc(i) for i in range(first, min(count, first + 5000))],
                     new_edits=False)
    db.close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(path)
    print(f"  seeded {count} docs into {path.name} in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return path


def copy_db(src: Path, dst: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    return dst


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


# -- /proc ------------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of a process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children is not included)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except OSError:
        return float("nan"), float("nan")


def raise_nofile() -> int:
    """Raise this process's soft limit of open files to the hard one; the new soft limit.

    Every process of the scale benchmark calls it first: one socket is one descriptor."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep the soft limit: the benchmark reports it where it binds
    return soft


def map_count(pid: int) -> int:
    """Memory mappings of a process (each thread's stack and guard page are two; the
    kernel refuses a new one past vm.max_map_count)."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return -1


def own_usage() -> dict[str, Any]:
    """This process: peak RSS (MB), threads, CPU seconds."""
    st = proc_status(os.getpid())
    return {"peak_rss_mb": st.get("VmHWM", 0) / 1024, "rss_mb": st.get("VmRSS", 0) / 1024,
            "threads": st.get("Threads", 0), "cpu_s": time.process_time()}


class RssSampler:
    """Samples a pid's VmRSS every ``interval`` s on a named thread until ``stop()``."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pouchsync-bench-rss",
                                        daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = proc_status(self.pid).get("VmRSS")
            if rss is None:
                break
            self.samples.append((time.monotonic() - self._t0, rss / 1024))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


# -- statistics -------------------------------------------------------------------------
def summary(values: Sequence[float]) -> dict[str, Any]:
    vals = [v for v in values if v == v]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"),
                "runs": 0, "values": []}
    med = statistics.median(vals)
    return {"median": med, "min": min(vals), "max": max(vals), "runs": len(vals),
            "values": list(vals)}


def fmt_rate(s: dict[str, Any], unit: str = "") -> str:
    """``12,345 [−5/+3 %]`` : median and spread (min, max as % off the median)."""
    med = s["median"]
    if med != med:
        return "n/a"
    if s["runs"] < 2 or med == 0:
        return f"{med:,.0f}{unit}"
    lo = (s["min"] - med) / med * 100
    hi = (s["max"] - med) / med * 100
    return f"{med:,.0f}{unit} [{lo:+.0f}/{hi:+.0f} %]"


def fmt_num(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def percentile(values: Sequence[float], q: float) -> float:
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = (len(vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# -- machine and versions ---------------------------------------------------------------
def _version(module: str) -> str:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:  # noqa: BLE001 - absent or odd metadata
        return "absent"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _node() -> str:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "absent"


def machine() -> dict[str, str]:
    mem_kb = 0
    try:
        with open("/proc/meminfo") as fh:
            mem_kb = int(fh.readline().split()[1])
    except OSError:
        pass
    return {
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs ({_cpu_model()}), "
                   f"{mem_kb / 1024 / 1024:.1f} GiB RAM",
        "versions": (f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
                     f"orjson {_version('orjson')}, websocket-client {_version('websocket-client')}, "
                     f"simple-websocket {_version('simple-websocket')}, "
                     f"werkzeug {_version('werkzeug')}, requests {_version('requests')}, "
                     f"node {_node()}; pouchsync_sync at git {_git_head()}"),
    }


def print_machine() -> dict[str, str]:
    info = machine()
    print(f"machine: {info['machine']}")
    print(f"versions: {info['versions']}")
    print(f"load average: {load()}", flush=True)
    return info


# -- child processes --------------------------------------------------------------------
class Child:
    """A child process speaking JSON lines on stdout; killed by pid if it overstays."""

    def __init__(self, args: Sequence[str], *, timeout: float, log_name: str,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        OUT.mkdir(exist_ok=True)
        self.log_path = OUT / log_name
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1, env=env, cwd=cwd,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self._deadline = time.monotonic() + timeout
        self._watch_stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name="pouchsync-bench-watchdog",
                                       daemon=True)
        self._watch.start()

    def _watchdog(self) -> None:
        while not self._watch_stop.wait(1.0):
            if self.proc.poll() is not None:
                return
            if time.monotonic() > self._deadline:
                print(f"  !! {self.log_path.name}: pid {self.pid} overstayed, killing it",
                      flush=True)
                self.kill()
                return

    def read(self) -> dict[str, Any]:
        """The next JSON line (other lines are echoed); EOF raises."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.log_path.name} ended (rc={self.proc.poll()}); "
                                   f"see {self.log_path}")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
            if line:
                print(f"  [{self.log_path.stem}] {line}", flush=True)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self, timeout: float = 30.0) -> int | None:
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._watch_stop.set()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, 9)  # its own session: only what we started
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def py(script: str, *args: Any) -> list[str]:
    return [PY, str(BENCH / script), *[str(a) for a in args]]


def chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
