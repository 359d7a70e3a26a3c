"""A cooperative time budget for evidence methods whose cost grows with channels x classes.

Score-CAM runs the network once per channel of its target layers for every class (768 masked
copies per class on ``glnet_stl``): on a CPU that is half an hour for one photo. A thread cannot
be killed from outside, so such a method checks the budget between its batches
(:func:`check_budget`) and stops with :class:`OutOfTime` once the caller's deadline has passed or
the caller has cancelled it (a web visitor who left or uploaded another image). Outside a
:func:`time_budget` block the check costs nothing and never stops anything (eval, the CLI).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["OutOfTime", "TimeBudget", "check_budget", "time_budget"]


class OutOfTime(RuntimeError):
    """The running computation passed its deadline or was cancelled by its caller."""

    def __init__(self, message: str, cancelled: bool) -> None:
        super().__init__(message)
        self.cancelled = cancelled


class TimeBudget:
    """A deadline (``seconds`` from now; ``None``: none) and a cancel flag another thread may set."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + float(seconds)
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Ask the computation under this budget to stop at its next check."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise :class:`OutOfTime` if cancelled or past the deadline."""
        if self._cancelled.is_set():
            raise OutOfTime("cancelled", cancelled=True)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise OutOfTime(f"stopped after its time budget of {self.seconds:g} s", cancelled=False)


_current: ContextVar[TimeBudget | None] = ContextVar("glmix_time_budget", default=None)


@contextmanager
def time_budget(budget: TimeBudget) -> Iterator[TimeBudget]:
    """Run the block under ``budget``: every :func:`check_budget` inside it (same thread) checks it."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def check_budget() -> None:
    """Raise :class:`OutOfTime` when the current :func:`time_budget` is spent or cancelled."""
    budget = _current.get()
    if budget is not None:
        budget.check()
