"""The limits of the machine that can bind first in ``bench_scale.py``, and where they
show: kernel.pid_max (threads of every process), vm.max_map_count (per process),
``ulimit -u`` / ``ulimit -n``; a sampler of the server's peaks; the messages a limit
leaves in a process's log.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import map_count, proc_status  # noqa: E402


def machine_limits() -> dict[str, Any]:
    """The limits that can bind first, as the kernel and this process see them."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return "?"
    return {"ulimit_u": resource.getrlimit(resource.RLIMIT_NPROC),
            "ulimit_n": resource.getrlimit(resource.RLIMIT_NOFILE),
            "max_map_count": read("/proc/sys/vm/max_map_count"),
            "pid_max": read("/proc/sys/kernel/pid_max"),
            "threads_max": read("/proc/sys/kernel/threads-max"),
            "port_range": read("/proc/sys/net/ipv4/ip_local_port_range")}


def machine_threads() -> int:
    """Threads of every process on the machine (the 4th field of /proc/loadavg): what
    kernel.pid_max bounds."""
    with open("/proc/loadavg") as fh:
        return int(fh.read().split()[3].split("/")[1])


def default_thread_cap() -> int:
    """70 % of kernel.pid_max: the light peers stop connecting there, so that the spike
    of a change (a layout that starts a thread per socket to push it) and the other
    users of the machine keep the rest."""
    try:
        return int(int(Path("/proc/sys/kernel/pid_max").read_text()) * 0.7)
    except (OSError, ValueError):
        return 20_000


def user_threads() -> int:
    """Threads of every process of this user (what ``ulimit -u`` counts)."""
    uid, total = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total


class Sampler:
    """Peak threads, RSS and maps of the server process, every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid, self.interval = pid, interval
        self.peak = {"Threads": 0, "VmRSS": 0, "maps": 0, "machine_threads": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pouchsync-bench-scale-sampler",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            st = proc_status(self.pid)
            if not st:
                return
            st["maps"] = map_count(self.pid)
            st["machine_threads"] = machine_threads()
            for key in self.peak:
                self.peak[key] = max(self.peak[key], st.get(key, 0))

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(10)
        return self.peak


_LOG_LIMITS = {  # what a limit looks like in a process's log
    "can't start new thread": "thread creation refused (ulimit -u, kernel pid_max/threads-max "
                              "or vm.max_map_count)",
    "Too many open files": "open files (ulimit -n)",
    "Cannot allocate memory": "memory (or vm.max_map_count)",
    "Resource temporarily unavailable": "EAGAIN (threads per user or pid_max)",
}


def limits_in_log(path: Path, where: str) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = []
    for needle, meaning in _LOG_LIMITS.items():
        n = len(re.findall(re.escape(needle), text))
        if n:
            found.append(f"{where}: '{needle}' {n}× in {path.name} → {meaning}")
    return found
