"""Scheduling the eval loop's work: cores shared between the network and the CRF
(:func:`plan_cores`), images read ahead in a thread (:func:`read_ahead`), and consecutive
same-size images grouped into one batch (:func:`consecutive_groups`), so every core stays busy.

None of this changes what is computed for an image: the eval loop gives each image to the same
pipeline call, in dataset order. Two things change float rounding (never the method): torch's
thread count and, with a batch size above 1, the batch the forward pass runs in (convolution and
matrix kernels pick their blocking by shape), so a rare pixel on a class boundary may flip. With
the same threads and batch size 1 the masks are bit-identical to one image at a time.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

import torch

__all__ = ["CorePlan", "available_cores", "plan_cores", "read_ahead", "consecutive_groups",
           "DEFAULT_BATCH_SIZE", "READ_AHEAD"]

T = TypeVar("T")
R = TypeVar("R")

#: Images per forward pass in eval: 1 keeps every mask bit-identical to a run of one image at a time.
DEFAULT_BATCH_SIZE = 1
#: Images the reading thread keeps ready ahead of the network.
READ_AHEAD = 4


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CorePlan:
    """How one eval process shares its cores.

    Attributes:
        crf_workers: CRF processes (0: the CRF runs in this process, between forward passes).
        torch_threads: torch's intra-op threads for the network (None: torch's own default).
        cores: the cores the plan shares out.
    """

    crf_workers: int
    torch_threads: int | None
    cores: int


def plan_cores(crf: bool, device: torch.device, workers: int | None = None, threads: int | None = None,
               cores: int | None = None, processes_here: int = 1) -> CorePlan:
    """The one rule that shares cores between the network and the CRF pool.

    ``cores`` (default :func:`available_cores`) are divided among ``processes_here`` eval
    processes on this machine (``torchrun``'s ``LOCAL_WORLD_SIZE``). ``workers``/``threads``
    None means automatic:

    * no CRF: no workers; the network keeps torch's threads (at most this process's cores);
    * on a GPU the network needs little CPU: every core but one refines (at least one worker);
    * on the CPU half the cores refine and the network's threads take the rest, so the two
      never oversubscribe (one core: the CRF runs here, between forward passes).

    Given ``workers`` and no ``threads``, the network takes the cores the workers leave (at
    least one thread); torch's threads are never raised above torch's own default.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"CRF workers must be 0 or more (or auto), got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"torch threads must be at least 1 (or auto), got {threads}")
    share = max(1, (cores or available_cores()) // max(1, processes_here))
    if workers is None:
        if not crf:
            workers = 0
        elif device.type == "cpu":
            workers = share // 2
        else:
            workers = max(1, share - 1)
    if not crf:
        workers = 0
    if threads is None:
        default = torch.get_num_threads()
        if workers == 0 and share >= default:
            threads = None  # nothing else runs: torch's own choice
        else:
            threads = max(1, min(default, share - workers))
    return CorePlan(crf_workers=workers, torch_threads=threads, cores=share)


_DONE = object()


def read_ahead(items: Iterable[T], load: Callable[[T], R], depth: int = READ_AHEAD,
               start_after: int = 1) -> Iterator[R]:
    """``load(item)`` of every item, in order, the next ``depth`` loaded ahead in a thread.

    The first ``start_after`` items are loaded here and the thread starts only when the next one
    is asked for: by then the eval loop's CRF pool, started at the first image, has forked its
    workers (forking a process while another of its threads runs can deadlock the child). An
    exception in ``load`` is raised here, at its item's place. Closing the generator stops the
    thread after the load in progress; it is a daemon, so it never keeps the process alive.
    """
    it = iter(items)
    for item in islice(it, start_after):
        yield load(item)
    ready: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in it:
                if stop.is_set() or not put((True, load(item))):
                    return
            put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, exc))

    thread = threading.Thread(target=work, name="eval-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = ready.get()
            if not ok:
                assert isinstance(value, BaseException)
                raise value
            if value is _DONE:
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5.0)


def consecutive_groups(items: Iterable[T], key: Callable[[T], Hashable], size: int) -> Iterator[list[T]]:
    """Runs of consecutive items with the same ``key``, at most ``size`` long, in order (nothing is
    reordered: a change of key just ends a run). A full run is handed out at once, without
    looking at the next item; ``size`` 1 gives every item alone."""
    group: list[T] = []
    group_key: Hashable = None
    for item in items:
        k = key(item) if size > 1 else None
        if group and k != group_key:
            yield group
            group = []
        group.append(item)
        group_key = k
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
