"""``doctor()``: what this host supports for sandboxed tools, as ``stalwart doctor`` prints it."""

from __future__ import annotations

import os
import shutil

from stalwart.sandbox._cgroups import CgroupManager
from stalwart.sandbox._host import Check, discover
from stalwart.settings import SandboxSettings

__all__ = ["Check", "doctor"]


def doctor(settings: SandboxSettings | None = None) -> list[Check]:
    """Every check, required or advisory; a required one that fails makes sandboxed tools refuse to run."""
    s = settings or SandboxSettings.model_validate({})
    _, checks = discover(s.uid, s.python)
    if os.geteuid() == 0:
        mgr = CgroupManager()
        for controller in ("pids", "memory"):
            ok = controller in mgr.bases
            checks.append(
                Check(
                    f"cgroup {controller}",
                    ok,
                    str(mgr.bases.get(controller)) if ok else mgr.problems.get(controller, ""),
                    "" if ok else "mount the cgroup v1 controller writable; rlimits still apply",
                )
            )
    else:
        checks.append(
            Check(
                "cgroups",
                False,
                "not root: per-sandbox pids/memory cgroups are not used",
                "run workers as root so tools can run under a dedicated uid with cgroups",
            )
        )
    runsc = shutil.which("runsc")
    checks.append(
        Check(
            "gVisor runsc (optional)",
            runsc is not None,
            runsc or "not installed",
            "" if runsc else "optional; only the benchmark compares against it",
        )
    )
    return checks
