"""What a sandbox's process tree has used, read from the host's ``/proc`` (never from the tool).

The tree is found from the bwrap process the host spawned. Two numbers matter for a timeout:
``cpu_s`` (time on a CPU) and ``demand_s`` (time on a CPU plus time waiting for one in the run
queue, from ``schedstat``). ``demand_s`` tells a CPU-bound tool from a waiting one even on a busy
host, where a spinning tool gets only a share of a core but is runnable the whole time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["TreeUsage", "descendants", "tree_usage"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class TreeUsage:
    """Totals over the live processes (and their reaped children) of one tree."""

    cpu_s: float = 0.0
    demand_s: float = 0.0
    rss_bytes: int = 0
    processes: int = 0

    def since(self, earlier: TreeUsage) -> TreeUsage:
        """Usage accrued after ``earlier`` (RSS and process count are current values)."""
        return TreeUsage(
            max(0.0, self.cpu_s - earlier.cpu_s),
            max(0.0, self.demand_s - earlier.demand_s),
            self.rss_bytes,
            self.processes,
        )


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list; host pids)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (host pids)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 100_000:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def _stat_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11:15] = utime stime cutime cstime (man 5 proc, counted after the comm field)
    return sum(int(x) for x in fields[11:15]) / _TICK


def _run_wait(pid: int) -> float:
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def tree_usage(pid: int) -> TreeUsage:
    """Sum CPU, run-queue wait and resident memory over ``pid``'s tree; a vanished process counts 0."""
    cpu = wait = 0.0
    rss = n = 0
    for p in descendants(pid):
        try:
            c = _stat_cpu(p)
            r = _rss(p)
        except (OSError, IndexError, ValueError):
            continue
        cpu += c
        wait += _run_wait(p)
        rss += r
        n += 1
    return TreeUsage(cpu_s=cpu, demand_s=cpu + wait, rss_bytes=rss, processes=n)
