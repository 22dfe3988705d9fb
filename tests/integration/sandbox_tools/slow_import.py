"""A tool module whose import never finishes inside a sandbox (a warm-up that cannot complete);
on the host, where the test registers its tool, it imports at once."""

from __future__ import annotations

import time

if __file__.startswith("/opt/stalwart/"):  # the sandbox's view of the code
    time.sleep(600)


def never_warm() -> int:
    return 1
