"""How the web app is served, without gradio: what a visitor may load, the gallery files handed to
the server, the glibc heap settings, and the options the page passes to gradio's queue and launch.

Serving rules: the server binds 127.0.0.1 unless told otherwise; uploads are size-limited and
downscaled before anything else; requests go through a queue with a concurrency limit; a visitor
can only pick the checkpoints found here (:func:`discover_checkpoints`); every file written for a
visitor lives in one folder of this server process (:class:`ServerScratch`), removed when it stops,
by SIGTERM and Ctrl-C too; the reference cycles closed connections leave are freed within
:data:`GC_INTERVAL_S` seconds (:func:`collect_cycles_promptly`).
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import gc
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from PIL import Image

from ..io import atomic_write_bytes
from ..models.checkpoints import CHECKPOINT_SUFFIXES, checkpoint_dirs, resolve_checkpoint
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PORT,
    DEFAULT_QUEUE_SIZE,
    DEMO_LABEL,
    EXAMPLE_PHOTOS,
    JPEG_QUALITY,
    QUEUE_EVENT_RECORDS,
)

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "SCRATCH_PREFIX", "PictureFiles", "ServeError", "ServerScratch",
           "address_problem", "discover_checkpoints", "encode_jpeg", "example_files", "launch_options",
           "limit_heap_fragmentation", "queue_options"]

#: Heap blocks this large or larger get their own mapping (see limit_heap_fragmentation).
MMAP_THRESHOLD = 128 * 1024
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8
#: Heap arenas shared by the server's threads (glibc's default is 8 per core).
ARENA_MAX = 2


# ------------------------------------------------------------------------------ what can be served
def discover_checkpoints(checkpoint: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The models a visitor may choose, by dropdown label: the operator's ``checkpoint`` (if given),
    the bundled demo model, then every ``.safetensors``/``.pth`` file directly in the checkpoint
    directory (:func:`glmix_vis.models.checkpoints.checkpoint_dirs`). Nothing else can be loaded."""
    from ..assets import default_checkpoint

    try:
        demo: Path | None = default_checkpoint()
    except FileNotFoundError:
        demo = None
    found: dict[str, Path] = {}
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
        if demo is None or path.resolve() != demo.resolve():
            found[path.name] = path
    if demo is not None:
        found[DEMO_LABEL] = demo
    known = {p.resolve() for p in found.values()}
    for folder in checkpoint_dirs():
        try:
            entries = sorted(folder.iterdir()) if folder.is_dir() else []
        except OSError:  # unreadable folder: nothing to offer from it
            entries = []
        for path in entries:
            if path.suffix not in CHECKPOINT_SUFFIXES or not path.is_file() or path.resolve() in known:
                continue
            label = path.name if path.name not in found else f"{path.name} ({folder})"
            found[label] = path
            known.add(path.resolve())
    return found


def example_files() -> dict[str, Path]:
    """Example images by name: the bundled generated scenes, then scikit-image's photos."""
    from ..assets import example_images

    examples: dict[str, Path] = {}
    try:
        examples.update(example_images())
    except OSError:
        pass
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    for name in EXAMPLE_PHOTOS:
        if (folder / name).is_file():
            examples.setdefault(Path(name).stem, folder / name)
    return examples


# ------------------------------------------------------------------------------ gallery files
def encode_jpeg(picture: np.ndarray) -> bytes:
    """A gallery picture as JPEG bytes (quality :data:`~glmix_vis.app.settings.JPEG_QUALITY`)."""
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


class PictureFiles:
    """Gallery pictures as finished JPEG files, named by their content.

    Gradio stores returned arrays by writing them in place under a name derived from their
    bytes, so two requests that produce the same picture at the same time (two visitors, one
    example) can serve a half-written file. Files handed to gradio are copied with a temporary
    name and a rename instead. Files unused for ``max_age_s`` are deleted.
    """

    def __init__(self, max_age_s: float = 900.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="glmix-vis-pictures-"))
        self.max_age_s = max_age_s
        self._saved = 0
        atexit.register(shutil.rmtree, self.root, True)

    def save(self, picture: np.ndarray) -> str:
        """The path of a JPEG file holding ``picture``."""
        data = encode_jpeg(picture)
        path = self.root / f"{hashlib.blake2b(data, digest_size=16).hexdigest()}.jpg"
        try:
            os.utime(path)  # in use again: not to be pruned
        except FileNotFoundError:
            atomic_write_bytes(path, data)
        self._saved += 1
        if self._saved % 64 == 0:
            self.prune()
        return str(path)

    def gallery(self, items: list[tuple[np.ndarray, str]]) -> list[tuple[str, str]]:
        """Gallery items with the pictures saved as files."""
        return [(self.save(picture), caption) for picture, caption in items]

    def prune(self) -> None:
        """Delete the pictures not used for ``max_age_s``."""
        limit = time.time() - self.max_age_s
        for path in self.root.glob("*.jpg"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except FileNotFoundError:
                pass


# ------------------------------------------------------------------------------ visitors' files
#: The scratch folder of server process PID is ``<temp>/glmix-vis-server-<PID>-<random>``.
SCRATCH_PREFIX = "glmix-vis-server-"


class ServerScratch:
    """One folder holding every file the server writes for its visitors: gradio's copies of their
    uploads (``GRADIO_TEMP_DIR``), the gallery pictures and the figures (``tempfile``'s folder).

    :meth:`activate` points both there and removes the folder when the process ends: at exit, and on
    SIGTERM (what service managers send) and SIGINT (Ctrl-C) before the server is closed as Ctrl-C
    closes it. Only SIGKILL leaves it behind; the next server removes the folders of servers that no
    longer run. The folder is created in the operator's ``GRADIO_TEMP_DIR`` if set, else the system's
    temporary folder.
    """

    def __init__(self, base: str | os.PathLike[str] | None = None) -> None:
        base = base or os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.removed_stale = remove_stale_scratch(self.base)
        self.root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=self.base))
        self.signalled: int | None = None  # the signal that stopped the server, if one did
        self._saved: tuple[str | None, str | None, dict[int, Any]] = (None, None, {})

    def activate(self) -> ServerScratch:
        """Send every temporary file of this process here, and remove the folder when it ends.
        Call before gradio is imported (it reads ``GRADIO_TEMP_DIR`` then), from the main thread.
        :meth:`deactivate` (or leaving the ``with`` block) restores what was there before."""
        self._saved = (os.environ.get("GRADIO_TEMP_DIR"), tempfile.tempdir, {})
        os.environ["GRADIO_TEMP_DIR"] = str(self.root / "gradio")
        tempfile.tempdir = str(self.root)
        atexit.register(self.remove)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[2][sig] = signal.signal(sig, self._on_signal)
        return self

    def deactivate(self) -> None:
        """Undo :meth:`activate`: the environment, ``tempfile``'s folder and the signal handlers as before."""
        gradio_dir, temp_dir, handlers = self._saved
        if gradio_dir is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = gradio_dir
        tempfile.tempdir = temp_dir
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    def __enter__(self) -> ServerScratch:
        return self.activate()

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()
        self.remove()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Remove the visitors' files at once, then stop as Ctrl-C does (gradio closes the server,
        and the folder is removed again at exit, with anything a request wrote meanwhile)."""
        self.signalled = signum
        self.remove()
        raise KeyboardInterrupt

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def remove_stale_scratch(base: str | os.PathLike[str]) -> list[Path]:
    """Remove the scratch folders in ``base`` of server processes that no longer run (killed by
    SIGKILL, which leaves no time to clean up); returns them."""
    removed = []
    for folder in Path(base).glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).partition("-")[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid() or _running(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# ------------------------------------------------------------------------------ the process
class ServeError(RuntimeError):
    """The server cannot start (address taken, unusable checkpoint): one line for the operator,
    naming the problem and the option that fixes it."""


def operator_message(message: str, checkpoint: str | os.PathLike[str] | None) -> str:
    """A page message about the operator's own ``--checkpoint``, reworded for the operator.

    The page names a checkpoint by its file name only (its dropdown label: a visitor sees no server
    folder), which names no existing file from where the operator started the server
    (``app --checkpoint rel/path.pth`` said ``path.pth is ...``); the operator gets its absolute path.
    """
    if checkpoint is None or not Path(checkpoint).exists():
        return message  # a name, or a missing file, is said as given
    path = Path(checkpoint)
    found = re.search(rf"(?<![\w/.-]){re.escape(path.name)}(?![\w.-])", message)
    if found is None:
        return message
    return message[:found.start()] + str(path.resolve()) + message[found.end():]


def address_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port``, as one line naming the option to change
    (``--port``, ``--host``), or None when it can.

    Binds a socket there and lets it go (with ``SO_REUSEADDR``, as the server binds: a port left
    in TIME_WAIT by an earlier run is free, one with a listener is not).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return f"cannot resolve host {host!r} ({reason}); choose another with --host (e.g. 127.0.0.1)"
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is in use; choose another with --port"
        if exc.errno == errno.EACCES:
            return f"port {port} needs administrator rights; choose one above 1023 with --port"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine; choose another with --host (e.g. 127.0.0.1)"
        return f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
    return None


def limit_heap_fragmentation(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve every heap block of ``threshold`` bytes or more with its own mapping (glibc only).

    glibc raises its mmap threshold each time a large block is freed, after which image-sized
    buffers come from the heap, which fragments across the server's threads: under load the
    resident memory then creeps up by ~20 MB per 80 requests (eval/RESULTS.md). A fixed
    threshold returns those buffers to the system when freed, and fewer heap arenas
    (:data:`ARENA_MAX`) leave less of it stranded per thread. An operator's own
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` is left alone. Returns whether the
    threshold was applied.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
        if applied and not os.environ.get("MALLOC_ARENA_MAX"):
            libc.mallopt(M_ARENA_MAX, ARENA_MAX)
        return applied
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        return False


#: Seconds between the server's own full garbage collections (see collect_cycles_promptly). What waits
#: for the next one (requests' and figures' reference cycles, free heap pages) stays resident meanwhile:
#: 12.6 MB on average at 10 s, 2.5 MB at 2 s, for 1.2% of one core (eval/RESULTS.md, the memory soak).
GC_INTERVAL_S = 2.0


class CycleCollector:
    """A daemon thread that runs a full garbage collection every ``interval_s`` seconds.

    A closed connection is left in reference cycles that only a full collection frees (see
    :func:`collect_cycles_promptly`); this bounds how long they wait for it, whatever CPython's own
    schedule. After :func:`collect_cycles_promptly` froze the startup objects a collection scans
    only the server's own (tens of thousands: milliseconds).
    """

    def __init__(self, interval_s: float = GC_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.collections = 0
        self.busy_s = 0.0  # time spent collecting and trimming, all collections together
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="glmix-vis-gc", daemon=True)

    def start(self) -> CycleCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            start = time.perf_counter()
            gc.collect()
            self.collections += 1
            release_free_heap()  # after counting: a trim of a large heap takes a while
            self.busy_s += time.perf_counter() - start


def release_free_heap() -> bool:
    """Give the free pages of every malloc arena back to the system (glibc's ``malloc_trim(0)``).

    The freed analyses, uploads and connections leave free chunks scattered through the arenas of the
    server's threads, which glibc keeps resident (the memory soak's "free" column grew 18 -> 31 MB in
    45 rounds); the collector releases them after each collection. Returns whether it ran (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        return False


def collect_cycles_promptly(interval_s: float = GC_INTERVAL_S) -> CycleCollector:
    """Free the server's reference cycles within ``interval_s`` seconds instead of every few thousand
    requests; once per process (later calls return the running collector).

    A closed connection is left in reference cycles: asyncio's ``_SelectorSocketTransport`` with its
    own ``_read_ready__data_received`` callback, uvicorn's ``H11Protocol``, ``RequestResponseCycle``
    and ``FlowControl`` with the transport and the request. Nothing else holds them, but only a full
    (generation 2) collection frees them, and CPython postpones that until the objects waiting for
    it exceed a quarter of the long-lived ones: with torch, gradio and the model loaded (~600,000
    objects), about 150,000, and the server's memory grows meanwhile (eval/RESULTS.md, the memory
    soak). The objects alive now (libraries, model, page: they live as long as the server) are
    frozen out of every collection, and a :class:`CycleCollector` collects the rest periodically.
    """
    global _COLLECTOR
    if _COLLECTOR is None:
        gc.collect()
        gc.freeze()
        gc.collect()  # a full collection now resets the long-lived count CPython's postponement compares with
        _COLLECTOR = CycleCollector(interval_s).start()
    return _COLLECTOR


_COLLECTOR: CycleCollector | None = None


def bound_session_queues(demo: Any, max_sessions: int = DEFAULT_MAX_SESSIONS) -> bool:
    """Keep gradio's per-visitor message queues for as many visitors as their state.

    gradio's queue holds one message queue per visitor (``pending_messages_per_session``) in an LRU
    of 2000 visitors, whatever ``state_session_capacity`` says, so a server that sees many new
    visitors keeps growing until the 2000th (eval/RESULTS.md, the memory soak). Returns whether the
    bound was applied (False on a gradio without that attribute: nothing to do)."""
    pending = getattr(getattr(demo, "_queue", None), "pending_messages_per_session", None)
    if pending is None or not hasattr(pending, "max_size"):
        return False
    pending.max_size = max(1, int(max_sessions))
    return True


def bound_event_records(demo: Any, max_events: int = QUEUE_EVENT_RECORDS) -> bool:
    """Keep the timing of the last ``max_events`` requests in gradio's queue, not 10,000.

    gradio records every request's time, status and visitor for its monitoring page
    (``event_analytics``) and drops the oldest only beyond ``GRADIO_ANALYTICS_MAX_EVENTS``
    (10,000 unless set): a dict per request for the first 10,000 requests, which the memory soak
    counted as growth (100 requests a round). An operator's ``GRADIO_ANALYTICS_MAX_EVENTS`` is left
    alone. Returns whether the bound was applied (False on a gradio without that attribute)."""
    queue = getattr(demo, "_queue", None)
    if os.environ.get("GRADIO_ANALYTICS_MAX_EVENTS") or not hasattr(queue, "ANALYTICS_MAX_EVENTS"):
        return False
    queue.ANALYTICS_MAX_EVENTS = max(1, int(max_events))
    return True


def queue_options(concurrency: int = DEFAULT_CONCURRENCY) -> dict[str, Any]:
    """Keyword arguments of gradio's ``Blocks.queue``: ``concurrency`` requests computed at once,
    at most :data:`~glmix_vis.app.settings.DEFAULT_QUEUE_SIZE` waiting."""
    return dict(default_concurrency_limit=concurrency, max_size=DEFAULT_QUEUE_SIZE)


def launch_options(*, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT,
                   max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, concurrency: int = DEFAULT_CONCURRENCY,
                   max_sessions: int = DEFAULT_MAX_SESSIONS, prevent_thread_lock: bool = False,
                   quiet: bool = False) -> dict[str, Any]:
    """Keyword arguments of gradio's ``Blocks.launch`` (all but the theme): the address, the upload
    limit, no error details for visitors, only the example images readable from the server's disk,
    enough threads for ``concurrency``, and ``max_sessions`` visitors' state kept."""
    return dict(server_name=host, server_port=port, max_file_size=max_file_size, show_error=False,
                allowed_paths=[str(p) for p in example_files().values()], prevent_thread_lock=prevent_thread_lock,
                max_threads=max(8, 4 * concurrency), state_session_capacity=max_sessions, quiet=quiet,
                ssr_mode=False, footer_links=["api"])
