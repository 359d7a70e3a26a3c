"""Worker processes that never outlive their parent: the one rule every process pool here follows
(the CRF pool of eval, the scene generator of ``make-data``).

A parent killed by SIGKILL runs no cleanup code, so its pool workers would keep running (and keep
the caller's stderr open) until their queue drains, or forever when they wait for work. Each worker
therefore arms its own end at start (:func:`watch_parent`): pass :func:`init_worker` as a pool's
``initializer``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["ORPHAN_POLL_S", "exit_when_orphaned", "init_worker", "watch_parent"]

#: Seconds between a worker's checks that its parent is alive (the non-prctl fallback).
ORPHAN_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_when_orphaned(parent: int, interval: float) -> None:
    """Poll every ``interval`` seconds and end this process once it is no longer ``parent``'s child."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent:  # re-parented: the parent is gone
            os._exit(1)


def watch_parent(interval: float = ORPHAN_POLL_S) -> None:
    """End this process soon after its parent dies, even by SIGKILL (which no cleanup code sees).

    On Linux the kernel does it at once (``prctl(PR_SET_PDEATHSIG, SIGKILL)``; note it fires when
    the parent *thread* that started this process exits). Everywhere, a daemon thread also polls
    ``os.getppid()`` every ``interval`` seconds and exits when this process is re-parented.
    A parent that died before this call (between fork and pool initializer) goes unnoticed.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no usable libc: the thread below still works
            pass
    if os.getppid() != parent:  # died before the signal was armed
        os._exit(1)
    threading.Thread(target=exit_when_orphaned, args=(parent, interval), daemon=True,
                     name="exit-when-orphaned").start()


def init_worker() -> None:
    """Pool initializer: die with the parent, and leave Ctrl-C to it.

    SIGINT reaches the whole foreground process group; the parent turns it into an orderly
    ``shutdown(cancel_futures=True)`` of the pool, so a worker must neither die mid-job nor print
    a traceback. Submit from a thread that outlives the pool (the main thread): on Linux the
    workers die with the thread that started them (:func:`watch_parent`).
    """
    watch_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
