"""Whether a process still runs: one answer for the lake's leftovers, the run health sensor and the demo
processes (plain Python, no heavy imports: the demo simulator's process uses it too)."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): kill(0) is all there is
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
