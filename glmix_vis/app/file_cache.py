"""The files gradio keeps for the app's visitors, bounded in number and size as well as age.

gradio copies every upload and every picture a request returns into its cache folder and keeps
each file's name in memory (``Blocks.temp_file_sets``) until its ``delete_cache`` rule finds the
file older than its age (:data:`~glmix_vis.app.settings.CACHE_MAX_AGE_S`). Age alone bounds
nothing on a busy server: the memory soak wrote ~520 files (25 MB) a round, an hour of them
holds gigabytes on disk and tens of thousands of names in memory (the server's memory grew by them),
and a hostile visitor can fill the disk with uploads for an hour. :class:`VisitorFileCache`
keeps at most :data:`~glmix_vis.app.settings.CACHE_MAX_FILES` files and
:data:`~glmix_vis.app.settings.CACHE_MAX_MB` megabytes, deleting the least recently written first
(gradio touches a file it hands out again), and forgets the names of files already gone, which
gradio keeps forever. The age rule stays gradio's.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .settings import CACHE_MAX_FILES, CACHE_MAX_MB

__all__ = ["SWEEP_INTERVAL_S", "VisitorFileCache"]

#: Seconds between two sweeps of the cache by a started :class:`VisitorFileCache`.
SWEEP_INTERVAL_S = 20.0


class VisitorFileCache:
    """Keeps gradio's cache of visitors' files of ``demo`` (a ``gradio.Blocks``) within ``max_files``
    files and ``max_mb`` megabytes; :meth:`sweep` once, or :meth:`start` a daemon thread that sweeps
    every ``interval_s`` seconds for as long as ``demo`` exists. Files a component must keep
    (gradio's ``keep_in_cache``: the examples) are never deleted nor counted."""

    def __init__(self, demo: Any, max_files: int = CACHE_MAX_FILES, max_mb: float = CACHE_MAX_MB,
                 interval_s: float = SWEEP_INTERVAL_S) -> None:
        if max_files < 0 or not max_mb >= 0 or not interval_s > 0:
            raise ValueError(f"max_files and max_mb must be >= 0 and interval_s > 0, got {max_files}, {max_mb}, "
                             f"{interval_s}")
        self._demo = weakref.ref(demo)
        self.max_files, self.max_bytes, self.interval_s = int(max_files), int(max_mb * 2 ** 20), interval_s
        self.deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """Delete the oldest files beyond the bounds and forget the names of missing ones; returns
        how many files were deleted."""
        demo = self._demo()
        if demo is None:
            return 0
        sets: list[set[str]] = list(getattr(demo, "temp_file_sets", []))
        keep: set[str] = set()
        for component in list(getattr(demo, "blocks", {}).values()):
            keep.update(getattr(component, "keep_in_cache", ()))
        owners: dict[str, list[set[str]]] = {}
        for names in sets:
            for name in list(names):  # a copy: requests add to the set meanwhile
                if name not in keep:
                    owners.setdefault(name, []).append(names)
        files: list[tuple[float, int, str]] = []
        for name in owners:
            try:
                st = os.lstat(name)
            except OSError:  # deleted already (by gradio's age rule, or by hand): forget its name
                _forget(name, owners[name])
                continue
            files.append((st.st_ctime, st.st_size, name))
        files.sort()
        count, total = len(files), sum(size for _, size, _ in files)
        deleted = 0
        for _, size, name in files:
            if count <= self.max_files and total <= self.max_bytes:
                break
            _delete(name)
            _forget(name, owners[name])
            count, total, deleted = count - 1, total - size, deleted + 1
        self.deleted += deleted
        return deleted

    def start(self) -> VisitorFileCache:
        """Sweep every ``interval_s`` seconds on a daemon thread until :meth:`stop` or ``demo`` is gone."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="glmix-vis-files", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and self._demo() is not None:
            try:
                self.sweep()
            except Exception as exc:  # a sweep must never take the server down; the next one tries again
                print(f"glmix-vis: sweeping the upload cache failed ({type(exc).__name__}: {exc})", flush=True)


def _delete(name: str) -> None:
    """Delete a cached file and its folder when that is left empty (gradio makes one per file's hash)."""
    path = Path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    try:
        path.parent.rmdir()
    except OSError:  # not empty (another name of the same content), or gone
        pass


def _forget(name: str, owners: Iterable[set[str]]) -> None:
    for names in owners:
        names.discard(name)
