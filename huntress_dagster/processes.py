"""This process and others: whether a process still runs (one answer for the lake's leftovers, the run
health sensor and the demo processes), and handing memory a finished step freed back to the OS (plain
Python, no heavy imports: the demo simulator's process uses it too)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from pathlib import Path
from typing import Any


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


def release_unused_memory() -> None:
    """Give back memory the last step freed but the allocators keep for reuse: Arrow's pool (mimalloc or
    jemalloc) and glibc's heap (`malloc_trim`). Runs execute steps one after another in one process, and
    each step's peak (a walk's pages, an alerts build) would otherwise stay in its RSS under the next one
    and under the parse workers it starts: the whole pipeline's memory is what a pod's limit sees. Well under
    a millisecond; no `gc.collect()`, which costs 50-180 ms in a process with Dagster loaded, on each step of
    a webhook's run (the data freed here is acyclic, freed by reference counting)."""
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None (another libc or platform); looked up once (find_library runs ldconfig)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
