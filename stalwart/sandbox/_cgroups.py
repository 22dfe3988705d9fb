"""Per-invocation cgroup v1 ``pids`` and ``memory`` groups, where this host lets us write them.

Each sandbox gets ``<our own cgroup>/stalwart/<id>`` in each controller, so the limits nest under
whatever already bounds the worker. bwrap starts with ``--block-fd``: the host moves bwrap and its
namespace init into the groups (outer process first, so any later fork inherits them) before it
lets the tool start, so every process that runs tool code is counted. Moving from the parent
instead of a ``preexec_fn`` keeps ``vfork`` spawning (the ``preexec_fn`` path cost ~15 ms here).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from stalwart.sandbox._proctree import children

__all__ = ["CgroupHandle", "CgroupManager"]

CONTROLLERS = ("pids", "memory")


def _own_path(controller: str, proc_cgroup: str) -> str | None:
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and controller in parts[1].split(","):
            return parts[2]
    return None


@dataclass
class CgroupHandle:
    """The groups of one sandbox; ``join_fds`` are its ``cgroup.procs`` files, open for writing."""

    dirs: dict[str, Path]
    join_fds: list[int] = field(default_factory=list)

    def adopt_tree(self, pid: int) -> None:
        """Move ``pid`` into the groups, then its descendants that already exist."""
        for fd in self.join_fds:
            os.write(fd, str(pid).encode())
        for child in children(pid):
            self.adopt_tree(child)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer acted inside this group."""
        mem = self.dirs.get("memory")
        if mem is None:
            return False
        try:
            text = (mem / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def kill_all(self) -> None:
        """SIGKILL every process still in the group (belt to bwrap's braces)."""
        for d in self.dirs.values():
            try:
                pids = (d / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass

    def close(self) -> None:
        """Close the join fds and remove the groups (retrying while the last processes exit)."""
        for fd in self.join_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.join_fds = []
        for d in self.dirs.values():
            for attempt in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt == 10:
                        self.kill_all()
                    time.sleep(0.005)


class CgroupManager:
    """Finds writable v1 controllers once, then creates one group pair per sandbox."""

    def __init__(self, root: str = "/sys/fs/cgroup") -> None:
        self.root = Path(root)
        self.bases: dict[str, Path] = {}
        self.problems: dict[str, str] = {}
        try:
            own = Path("/proc/self/cgroup").read_text()
        except OSError as exc:
            self.problems = {c: f"cannot read /proc/self/cgroup: {exc}" for c in CONTROLLERS}
            return
        for controller in CONTROLLERS:
            mount = self.root / controller
            rel = _own_path(controller, own)
            if rel is None or not (mount / "cgroup.procs").exists():
                self.problems[controller] = f"cgroup v1 controller {controller!r} is not mounted at {mount}"
                continue
            base = mount / rel.lstrip("/") / "stalwart"
            try:
                base.mkdir(exist_ok=True)
            except OSError as exc:
                self.problems[controller] = f"cannot create {base}: {exc.strerror}"
                continue
            self.bases[controller] = base

    @property
    def available(self) -> list[str]:
        """Controllers in use."""
        return sorted(self.bases)

    def create(self, name: str, *, max_procs: int, memory_bytes: int) -> CgroupHandle:
        """Make the groups, set their limits and open their ``cgroup.procs`` for joining."""
        handle = CgroupHandle(dirs={})
        try:
            for controller, base in self.bases.items():
                d = base / name
                d.mkdir()
                handle.dirs[controller] = d
                if controller == "pids":
                    (d / "pids.max").write_text(str(max_procs))
                else:
                    (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
                    try:
                        (d / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                    except OSError:
                        pass
                handle.join_fds.append(os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            handle.close()
            raise
        return handle
