"""How much of our cores other processes keep busy (Linux), for choosing llama.cpp's threads.

llama.cpp's worker threads meet at a barrier after every matrix operation, so when another process
holds one of the cores, the thread on it runs late and the others spin waiting for it. Measured
with scripts/bench_threads.py (Qwen2 0.5B Q4_K_M, 2 cores, one kept busy by another process):
2 threads decode at 58 ms/token and 1 thread at 35 ms (23 ms with 2 threads on a quiet
machine); the prompt, 100 tokens, 1.95 s against 1.23 s. A cron job on a busy Raspberry Pi hits
exactly this.

The measure: CPU time spent on the cores we may run on (``/proc/stat``), minus our own process's
(``/proc/self/stat``), over the time since the last look. No extra waiting: the window is whatever
ran in between (loading the model, the previous record). The load average won't do: it lags by
a minute and, in a container, counts the whole host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

# llama.cpp's own limit (GGML_MAX_N_THREADS): more and it crashes (SIGSEGV) instead of refusing.
# --threads and the library's extract(threads=) both stop here.
MAX_THREADS = 512
_MIN_WINDOW_S = 0.1  # shorter windows hold too few clock ticks (10 ms each) to judge


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return list(range(os.cpu_count() or 1))


class CoreWatch:
    """Cores' worth of CPU time other processes used on ``cpus``, window by window."""

    def __init__(self, cpus: Sequence[int] | None = None) -> None:
        self.cpus = set(allowed_cpus() if cpus is None else cpus)
        try:
            self._tick = float(os.sysconf("SC_CLK_TCK"))
        except (AttributeError, ValueError, OSError):
            self._tick = 0.0
        self._last = self._sample()

    def _sample(self) -> tuple[float, int, int] | None:
        """(monotonic time, busy ticks on our cores, our own ticks), or None off Linux."""
        if self._tick <= 0:
            return None
        try:
            with open("/proc/stat", encoding="ascii") as f:
                lines = f.read().splitlines()
            with open("/proc/self/stat", encoding="ascii") as f:
                own_fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        busy = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            try:
                cpu = int(name[3:])
                # user nice system idle iowait irq softirq steal (guest is inside user).
                values = [int(v) for v in rest.split()[:8]]
            except ValueError:
                continue
            if cpu in self.cpus and len(values) == 8:
                busy += sum(values) - values[3] - values[4]  # all but idle and iowait
        # After the ")" closing the command name: state is field 3, utime and stime 14 and 15.
        own = int(own_fields[11]) + int(own_fields[12])
        return time.monotonic(), busy, own

    def others_busy(self) -> float | None:
        """Cores' worth of CPU others used since the last call (or since creation), and start
        a new window. None off Linux or when the window is too short to judge."""
        now = self._sample()
        last = self._last
        if now is None or last is None:
            return None
        elapsed = now[0] - last[0]
        if elapsed < _MIN_WINDOW_S:
            return None
        self._last = now
        others = (now[1] - last[1]) - (now[2] - last[2])
        return max(0.0, others / (elapsed * self._tick))


def threads_for(free_cores: float, defaults: tuple[int, int]) -> tuple[int, int]:
    """(decode, prompt) threads: the defaults, cut to the cores other processes leave free."""
    free = max(1, round(free_cores))
    return min(defaults[0], free), min(defaults[1], free)
