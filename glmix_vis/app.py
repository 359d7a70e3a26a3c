"""The web demo: upload or pick an image and see what every GLMix block did with it.

Widgets and callbacks only. The model work is :class:`glmix_vis.predictor.SlotPredictor`'s and
every picture is drawn by :mod:`glmix_vis.figures`, so the app shows exactly what the figures show.

Serving rules: the server binds 127.0.0.1 unless told otherwise; uploads are size-limited, read by
:func:`glmix_vis.io.load_image` (EXIF rotation, any pixel format, decompression bombs refused) and
downscaled before anything else; requests go through a queue with a concurrency limit; models are
loaded once per checkpoint (small LRU) and a visitor can only pick checkpoints the server found.

>>> from glmix_vis.app import launch
>>> launch()                       # http://127.0.0.1:7860 on the bundled demo model
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import gradio as gr
import numpy as np
import torch
from PIL import Image

from .io import DEFAULT_MAX_PIXELS, ImageLoadError, atomic_write_bytes, downscale_to, load_image
from .loading import ModelInfo, load_model
from .models.checkpoints import CheckpointError, checkpoint_dirs, resolve_checkpoint
from .predictor import SlotPredictor

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "SlotApp", "ModelCache", "PictureFiles", "build_app",
           "discover_checkpoints", "example_files", "launch", "limit_heap_fragmentation"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Uploads bigger than this many bytes are refused by the server before any callback runs.
DEFAULT_MAX_FILE_SIZE = "20mb"
#: Uploads are downscaled so that their longer side is at most this many pixels.
DEFAULT_MAX_SIDE = 1024
#: Requests computed at the same time; the others wait in the queue.
DEFAULT_CONCURRENCY = 2
#: Waiting requests beyond this are turned away ("queue full") instead of piling up.
DEFAULT_QUEUE_SIZE = 64
#: Visitors whose page state gradio keeps (least recently used dropped first).
DEFAULT_MAX_SESSIONS = 256
#: Heap blocks this large or larger get their own mapping (see limit_heap_fragmentation).
MMAP_THRESHOLD = 128 * 1024
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8
#: Heap arenas shared by the server's threads (glibc's default is 8 per core).
ARENA_MAX = 2
DEMO_LABEL = "demo model (bundled)"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth")
EXAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
INPUT_SIZES = (96, 640)
#: Longer side of the soft-map and evidence pictures.
SOFT_SIDE = 512
#: Smaller images are shown enlarged to this longer side (the network still sees the original).
MIN_DISPLAY_SIDE = 448
MAX_EVIDENCE_PANELS = 6
TAB_SLOTS, TAB_SOFT, TAB_CLASSES = "slots", "soft", "classes"
DEFAULT_METHOD = "slot-cam"
JPEG_QUALITY = 90
#: Figure files kept for download (older ones are deleted).
MAX_FIGURES = 16

K = TypeVar("K")
V = TypeVar("V")


# ------------------------------------------------------------------------------ what can be served
def discover_checkpoints(checkpoint: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The models a visitor may choose, by dropdown label: the operator's ``checkpoint`` (if given),
    the bundled demo model, then every ``.safetensors``/``.pth`` file directly in the checkpoint
    directory (:func:`glmix_vis.models.checkpoints.checkpoint_dirs`). Nothing else can be loaded."""
    from .assets import default_checkpoint

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
    from .assets import example_images

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


# ------------------------------------------------------------------------------ caches
class _LRU(Generic[K, V]):
    """A small thread-safe least-recently-used map."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with what the UI needs to know about it."""

    model: torch.nn.Module
    info: ModelInfo
    block_names: list[str]
    num_slots: list[int]
    evidence_methods: list[str]

    @property
    def has_classifier(self) -> bool:
        return bool(self.evidence_methods)


class ModelCache:
    """Models by checkpoint file, loaded on first use and kept in a small LRU (a changed file
    is a new entry); one load at a time, so a burst of requests loads a model once."""

    def __init__(self, capacity: int = 2, device: str | torch.device = "auto",
                 loader: Callable[..., tuple[torch.nn.Module, ModelInfo]] = load_model) -> None:
        self._lru: _LRU[tuple[str, int, int], LoadedModel] = _LRU(capacity)
        self._load_lock = threading.Lock()
        self.device = device
        self.loader = loader

    def get(self, path: str | os.PathLike[str]) -> LoadedModel:
        """The model stored in ``path`` (loaded now if it is not cached)."""
        p = Path(path).resolve()
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        cached = self._lru.get(key)
        if cached is not None:
            return cached
        with self._load_lock:
            cached = self._lru.get(key)
            if cached is None:
                model, info = self.loader(p, device=self.device)
                cached = _describe(model, info)
                self._lru.put(key, cached)
        return cached

    def __len__(self) -> int:
        return len(self._lru)


def encode_jpeg(picture: np.ndarray) -> bytes:
    """A gallery picture as JPEG bytes (quality 90)."""
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


@torch.no_grad()
def _describe(model: torch.nn.Module, info: ModelInfo) -> LoadedModel:
    """Block names, slot counts and the evidence methods that work, from one tiny forward pass."""
    from .wsss.evidence import available_evidence_methods, get_evidence_method

    device = next(model.parameters()).device
    out = model.forward_slots(torch.zeros(1, 3, 64, 64, device=device))
    methods = []
    if getattr(model, "num_classes", 0) > 0 and len(info.class_names) > 1:
        for name in available_evidence_methods():
            try:
                get_evidence_method(name, class_map=info.class_map)(model, out, classes=None, size=(64, 64))
            except (ValueError, RuntimeError, KeyError, TypeError, AttributeError):
                continue  # e.g. 'token' needs a token-labeling head
            methods.append(name)
    return LoadedModel(model, info, [m.name for m in out.maps], [m.num_slots for m in out.maps], methods)


@dataclass
class Analysis:
    """One image through one model: the predictor holding the forward pass, plus views of it
    computed on demand (hard maps, evidence, masks) and kept for the next callback."""

    predictor: SlotPredictor
    loaded: LoadedModel
    forward_seconds: float
    min_display_side: int = 0
    memo: dict[tuple, Any] = field(default_factory=dict)

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def shown(self) -> np.ndarray:
        """The image as displayed: its own size, small images enlarged to ``min_display_side``."""
        def compute() -> np.ndarray:
            from .figures import render

            image = self.predictor.image
            scale = self.min_display_side / max(image.shape[:2])
            if scale <= 1:
                return image
            return render.resize_image(image, (round(image.shape[0] * scale), round(image.shape[1] * scale)))
        return self.cached(("shown",), compute)

    def hard(self, block: int) -> np.ndarray:
        """``(H, W)`` hard slot labels at the displayed size (int16: kept for the next callback)."""
        def compute() -> np.ndarray:
            size = self.shown.shape[:2]
            if size == self.predictor.image_size:
                return self.predictor.hard_slots(block).astype(np.int16)
            return self.predictor.maps([block])[0].hard_upsampled(size)[0].cpu().numpy().astype(np.int16)
        return self.cached(("hard", block), compute)

    def shares(self, block: int) -> np.ndarray:
        """Fraction of the block's tokens each slot wins (``SlotMap.share``, as in the figures)."""
        return self.cached(("shares", block),
                           lambda: self.predictor.maps([block])[0].share()[0].cpu().numpy())


class AppError(Exception):
    """A problem to show the visitor as a message (bad upload, unusable checkpoint, ...)."""


# ------------------------------------------------------------------------------ the callbacks
class SlotApp:
    """What the page's callbacks do, usable without a browser: every method takes plain values
    (an image path, bytes or array, a model label, an input size, block indices) and returns
    plain values for the widgets. Errors come back as a message, never as an exception."""

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *, max_side: int = DEFAULT_MAX_SIDE,
                 max_pixels: int = DEFAULT_MAX_PIXELS, device: str | torch.device = "auto",
                 model_cache_size: int = 2, result_cache_size: int = 8) -> None:
        self.checkpoints = discover_checkpoints(checkpoint)
        if not self.checkpoints:
            dirs = ", ".join(str(d) for d in checkpoint_dirs())
            raise FileNotFoundError("no model to serve: the bundled demo checkpoint is missing and there is no "
                                    f"checkpoint in {dirs}; pass --checkpoint FILE or set GLMIX_CHECKPOINT_DIR")
        self.default_label = next(iter(self.checkpoints))
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.models = ModelCache(model_cache_size, device=device)
        self.results: _LRU[tuple, Analysis] = _LRU(result_cache_size)
        self.figure_dir = Path(tempfile.mkdtemp(prefix="glmix-vis-figures-"))
        self._figures: list[Path] = []
        self._figures_lock = threading.Lock()
        atexit.register(shutil.rmtree, self.figure_dir, True)

    # -------------------------------------------------------------- plumbing
    def model(self, label: str) -> LoadedModel:
        """The cached model behind a dropdown label; any other value is refused."""
        path = self.checkpoints.get(label) if isinstance(label, str) else None
        if path is None:
            raise AppError(f"unknown model {label!r}: choose one from the list")
        try:
            return self.models.get(path)
        except (CheckpointError, OSError, ValueError, RuntimeError, KeyError) as exc:
            raise AppError(f"cannot load {label}: {exc}") from exc

    def read_image(self, image: Any) -> np.ndarray:
        """An upload (path, bytes, PIL image or array) as RGB uint8, downscaled to ``max_side``."""
        if image is None:
            raise AppError("upload an image or pick an example")
        try:
            if isinstance(image, np.ndarray):
                rgb = image if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
                    else load_image(Image.fromarray(image))
            else:
                rgb = load_image(image, max_pixels=self.max_pixels)
        except ImageLoadError as exc:
            raise AppError(_strip_dirs(str(exc))) from exc
        except (TypeError, ValueError, OSError) as exc:
            raise AppError(f"cannot read this image ({exc})") from exc
        rgb = downscale_to(rgb, self.max_side)
        return rgb if rgb.flags.writeable else rgb.copy()  # the CRF needs a writable buffer

    def analysis(self, image: Any, label: str, input_size: int | None) -> Analysis:
        """The forward pass of ``image`` through the chosen model, from the cache when possible."""
        loaded = self.model(label)
        size = _input_size(input_size, loaded.info)
        key = (_image_key(image), str(self.checkpoints[label]), size)
        cached = self.results.get(key)
        if cached is not None:
            return cached
        rgb = self.read_image(image)
        predictor = SlotPredictor(loaded.model, loaded.info, device=self.models.device)
        start = time.perf_counter()
        predictor.set_image(rgb, input_size=size)
        result = Analysis(predictor, loaded, time.perf_counter() - start, min(MIN_DISPLAY_SIDE, self.max_side))
        self.results.put(key, result)
        return result

    # -------------------------------------------------------------- model choice
    def model_settings(self, label: str) -> dict[str, Any]:
        """Input size, block choices and whether the class tab applies, for a model label."""
        loaded = self.model(label)
        n = len(loaded.block_names)
        choices = [(f"{i}: {name} ({s} slots)", i) for i, (name, s) in
                   enumerate(zip(loaded.block_names, loaded.num_slots))]
        methods = loaded.evidence_methods
        return dict(input_size=loaded.info.input_size, block_choices=choices,
                    blocks=default_blocks(n), has_classifier=loaded.has_classifier,
                    class_names=list(loaded.info.class_names), evidence_methods=methods,
                    method=DEFAULT_METHOD if DEFAULT_METHOD in methods else (methods or [None])[0])

    # -------------------------------------------------------------- slot groups
    def slot_overlays(self, image: Any, label: str, input_size: int | None,
                      blocks: Sequence[int] | None) -> tuple[str, list[tuple[np.ndarray, str]]]:
        """Status line and one hard-slot overlay per selected block (colours tracked across blocks)."""
        if image is None:
            return "", []
        start = time.perf_counter()
        try:
            result = self.analysis(image, label, input_size)
            chosen = _check_blocks(blocks, len(result.loaded.block_names))
            overlays = self._overlays(result, chosen)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self._error(exc), []
        pred = result.predictor
        h, w = pred.image_size
        net_h, net_w = pred.batch.shape[-2:]
        status = (f"{h}×{w} px image, network input {net_h}×{net_w}, {len(chosen)} block(s) "
                  f"in {time.perf_counter() - start:.2f} s")
        return status, overlays

    def _overlays(self, result: Analysis, blocks: list[int]) -> list[tuple[np.ndarray, str]]:
        from .figures import render

        hard = [result.hard(b) for b in blocks]
        colors = self._slot_colors(result, blocks)
        items = []
        for b, h, c in zip(blocks, hard, colors):
            picture = render.overlay_slots(result.shown, h, c)
            used = int((result.shares(b) > 0).sum())
            m = result.predictor.maps([b])[0]
            items.append((picture, f"block {b} · stage {m.stage + 1} · {used}/{m.num_slots} slots"))
        return items

    def _slot_colors(self, result: Analysis, blocks: list[int]) -> list[np.ndarray]:
        """``(S, 3)`` colours per block: the figures' palette, slots tracked across the blocks shown."""
        from .figures import palette, tracking

        def compute() -> list[np.ndarray]:
            counts = [result.loaded.num_slots[b] for b in blocks]
            colors = palette.slot_palette(max(counts))
            index = tracking.track_slot_colors([result.hard(b) for b in blocks], counts, num_colors=len(colors))
            return [colors[i] for i in index]
        return result.cached(("colors", tuple(blocks)), compute)

    # -------------------------------------------------------------- soft maps
    def slot_order(self, result: Analysis, block: int) -> list[int]:
        """Slots of a block, largest share first."""
        return [int(s) for s in np.argsort(-result.shares(block), kind="stable")]

    def soft_maps(self, image: Any, label: str, input_size: int | None, block: int | None,
                  warn: bool = True) -> tuple[str, list[tuple[np.ndarray, str]]]:
        """Status line and a gallery of one block's per-slot dispatch maps, largest slot first."""
        from .figures import render

        if image is None or block is None:
            return "", []
        try:
            result = self.analysis(image, label, input_size)
            block = _check_blocks([block], len(result.loaded.block_names))[0]
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self._error(exc, warn), []
        shown = downscale_to(result.shown, SOFT_SIDE)
        soft = result.predictor.maps([block])[0].upsample(shown.shape[:2])[0].cpu().numpy()
        shares = result.shares(block)
        items = [(render.heatmap_overlay(shown, soft[s]), f"slot {s} · {shares[s]:.1%}")
                 for s in self.slot_order(result, block)]
        name = result.loaded.block_names[block]
        return (f"Block {block} ({name}), largest slot first; colour = each pixel's dispatch weight to the slot "
                f"(viridis, 0 to 1), caption = the slot's share of the image. Click a slot to enlarge it."), items

    def slot_detail(self, image: Any, label: str, input_size: int | None, block: int | None,
                    index: int | None) -> str:
        """What the ``index``-th entry of the soft-map gallery is: its slot, share and mean weight."""
        if image is None or block is None or index is None:
            return ""
        try:
            result = self.analysis(image, label, input_size)
            block = _check_blocks([block], len(result.loaded.block_names))[0]
            order = self.slot_order(result, block)
            if not 0 <= int(index) < len(order):
                raise AppError(f"no slot at position {index}")
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self._error(exc)
        slot = order[int(index)]
        m = result.predictor.maps([block])[0]
        share = float(result.shares(block)[slot])
        weight = float(m.dispatch[0, slot].mean())
        return (f"**Block {block}, slot {slot}**: wins **{share:.1%}** of the image (hard assignment); "
                f"mean dispatch weight {weight:.1%}.")

    # -------------------------------------------------------------- classes
    def class_view(self, image: Any, label: str, input_size: int | None, method: str, warn: bool = True,
                   ) -> tuple[str, dict[str, float], list[tuple[np.ndarray, str]], tuple | None]:
        """Status, class scores, evidence maps of the likely classes and the pseudo-mask (no CRF)."""
        from .figures import render

        if image is None:
            return "", {}, [], None
        try:
            result = self.analysis(image, label, input_size)
            if not result.loaded.has_classifier:
                raise AppError("this model has no classifier head: no class evidence")
            if method not in result.loaded.evidence_methods:
                raise AppError(f"evidence method {method!r} does not apply to this model; choose one of "
                               f"{', '.join(result.loaded.evidence_methods)}")
            pred = result.predictor
            names = pred.info.foreground_names
            scores = pred.class_scores()
            evidence = result.cached(("evidence", method), lambda: pred.evidence(method))
            mask = result.cached(("mask", method, False), lambda: pred.pseudo_mask(method))
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self._error(exc, warn), {}, [], None
        labels = pred.predicted_labels()
        order = [int(k) for k in np.argsort(-scores) if labels[k] > 0][:MAX_EVIDENCE_PANELS]
        shown = downscale_to(result.shown, SOFT_SIDE)
        gallery = [(render.heatmap_overlay(shown, evidence[k]), f"{names[k]} · p={scores[k]:.2f}") for k in order]
        found = ", ".join(names[k] for k in order) or "nothing"
        head = ""
        if pred.info.head_names:  # an ImageNet head: its own top classes and the VOC class each feeds
            head = " ImageNet head's top classes: " + ", ".join(
                str(p) for p in pred.top_predictions(5, min_score=0.01)) + "."
        return (f"Evidence method `{method}`; classes the model sees: {found}.{head}",
                {n: float(s) for n, s in zip(names, scores)}, gallery, _annotated(pred, mask))

    def crf_mask(self, image: Any, label: str, input_size: int | None, method: str) -> tuple | None:
        """The pseudo-mask refined by a dense CRF (the slow part, asked for separately)."""
        if image is None:
            return None
        try:
            result = self.analysis(image, label, input_size)
            if method not in result.loaded.evidence_methods:
                return None
            pred = result.predictor
            mask = result.cached(("mask", method, True), lambda: pred.pseudo_mask(method, crf=True))
        except AppError:
            return None  # class_view, which runs first, has said what is wrong
        except Exception as exc:
            self._error(exc)
            return None
        return _annotated(pred, mask)

    # -------------------------------------------------------------- figure download
    def figure(self, image: Any, label: str, input_size: int | None, blocks: Sequence[int] | None,
               block: int | None, method: str, view: str, fmt: str = "png") -> tuple[str | None, str]:
        """The current view as a figure file (made by glmix_vis.figures) and a status line."""
        from . import figures

        fmt = str(fmt or "png").lower()
        if fmt not in ("png", "pdf"):
            return None, self._error(AppError(f"unknown figure format {fmt!r}"))
        if image is None:
            return None, self._error(AppError("upload an image or pick an example first"))
        try:
            result = self.analysis(image, label, input_size)
            chosen = _check_blocks(blocks, len(result.loaded.block_names))
            pred = result.predictor
            if view == TAB_SOFT:
                one = _check_blocks([block if block is not None else chosen[-1]], len(result.loaded.block_names))
                fig, name = figures.soft_slot_maps(pred, blocks=one), f"soft_maps_block{one[0]}"
            elif view == TAB_CLASSES:
                if not result.loaded.has_classifier:
                    raise AppError("this model has no classifier head: no class evidence")
                fig, name = figures.evidence_panel(pred, crf=True), "evidence"
            else:
                fig, name = figures.slot_grid(pred, blocks=chosen), "slot_groups"
            out = self._new_figure_path(f"glmix_{name}.{fmt}")
            figures.save_figure(fig, out)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return None, self._error(exc)
        return str(out), f"Figure ready: {out.name}"

    def _new_figure_path(self, name: str) -> Path:
        folder = self.figure_dir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        with self._figures_lock:
            self._figures.append(folder)
            old = self._figures[:-MAX_FIGURES]
            del self._figures[:-MAX_FIGURES]
        for stale in old:
            shutil.rmtree(stale, ignore_errors=True)
        return folder / name

    # -------------------------------------------------------------- messages
    @staticmethod
    def _error(exc: Exception, warn: bool = True) -> str:
        """The message for the page; also a pop-up warning unless an earlier step gave one.

        Anything but an :class:`AppError` is unexpected: its traceback goes to the server log and
        the page only says that something failed."""
        if isinstance(exc, AppError):
            message = str(exc)
        elif isinstance(exc, KeyError | ValueError):  # e.g. an evidence method refusing a model
            message = _strip_dirs(str(exc).strip("'\""))
        else:
            log.error("unexpected error in the web app", exc_info=exc)
            message = f"internal error ({type(exc).__name__}); the details are in the server log"
        if warn:
            gr.Warning(message)
        return f"**Error:** {message}"


def default_blocks(num_blocks: int, count: int = 4) -> list[int]:
    """Up to ``count`` evenly spread block indices, always the first and last."""
    if num_blocks <= count:
        return list(range(num_blocks))
    return sorted({round(i * (num_blocks - 1) / (count - 1)) for i in range(count)})


def _check_blocks(blocks: Sequence[int] | None, num_blocks: int) -> list[int]:
    chosen = sorted({int(b) for b in (blocks or [])})
    if not chosen:
        raise AppError("choose at least one GLMix block")
    bad = [b for b in chosen if not 0 <= b < num_blocks]
    if bad:
        raise AppError(f"this model has {num_blocks} GLMix blocks; no block {bad[0]}")
    return chosen


def _input_size(value: int | float | None, info: ModelInfo) -> int:
    if value is None or value == 0:
        return info.input_size
    size = int(round(float(value) / 32) * 32)
    return min(max(size, INPUT_SIZES[0]), INPUT_SIZES[1])


def _image_key(image: Any) -> tuple:
    if isinstance(image, str | os.PathLike):
        p = Path(image)
        try:
            st = p.stat()
        except OSError:
            return ("path", str(p))
        return ("path", str(p.resolve()), st.st_size, st.st_mtime_ns)
    if isinstance(image, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16)
        digest.update(repr((image.shape, image.dtype.str)).encode())
        return ("array", digest.hexdigest())
    if isinstance(image, bytes | bytearray | memoryview):
        return ("bytes", hashlib.blake2b(bytes(image), digest_size=16).hexdigest())
    return ("object", id(image))


def _strip_dirs(message: str) -> str:
    """Show uploaded files by name only (not the server's temporary folders)."""
    words = []
    for word in message.split(" "):
        core = word.rstrip(":,;)")
        if os.sep in core and Path(core).name:
            word = Path(core).name + word[len(core):]
        words.append(word)
    return " ".join(words)


def _annotated(pred: SlotPredictor, mask: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    names = pred.info.class_names
    return pred.image, [(mask == k, names[k]) for k in np.unique(mask) if 0 < k < len(names)]


def _class_colors(class_names: Sequence[str]) -> dict[str, str]:
    """The mask colour of each class (the VOC palette the pseudo-masks are saved with)."""
    from .data.palette import voc_palette
    from .figures.palette import to_hex

    colors = voc_palette()
    return {name: to_hex(colors[k]) for k, name in enumerate(class_names)}


# ------------------------------------------------------------------------------ the page
class UploadImage(gr.Image):
    """``gr.Image`` that hands the callback the uploaded file untouched, so that every upload is
    read by :func:`glmix_vis.io.load_image` (and a broken file becomes a message, not an error)."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload: Any) -> str | None:
        if payload is None:
            return None
        if getattr(payload, "path", None):
            return str(payload.path)
        raise gr.Error("the image did not arrive; upload it again")


INTRO = """\
# glmix-vis: GLMix slot maps
Each GLMix block of a GLNet groups the pixels into a few *slots*. Upload an image (or pick an example)
to see, per block, the hard slot groups (every pixel coloured by its most likely slot, colours matched
across blocks), each slot's soft dispatch map and, for models with a classifier, the class evidence
and the pseudo-mask it gives.
"""


def build_app(checkpoint: str | os.PathLike[str] | None = None, *, max_side: int = DEFAULT_MAX_SIDE,
              device: str | torch.device = "auto", backend: SlotApp | None = None) -> gr.Blocks:
    """The Gradio page on ``checkpoint`` (default: the bundled demo model) plus the checkpoint directory."""
    app = backend or SlotApp(checkpoint, max_side=max_side, device=device)
    first = app.model_settings(app.default_label)
    examples = example_files()
    colors = _class_colors(first["class_names"])

    with gr.Blocks(title="glmix-vis", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        demo.slot_app = app  # type: ignore[attr-defined]
        gr.Markdown(INTRO)
        view = gr.State(TAB_SLOTS)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                image = UploadImage(label="Image", type="filepath", sources=["upload", "clipboard"], height=300,
                                    elem_id="input-image")
                if examples:
                    gr.Examples([[str(p)] for p in examples.values()], inputs=[image], example_labels=list(examples),
                                label="Examples", examples_per_page=12)
                model = gr.Dropdown(list(app.checkpoints), value=app.default_label, label="Model",
                                    info="the bundled demo model, or a checkpoint found in the checkpoint folder")
                size = gr.Slider(*INPUT_SIZES, step=32, value=first["input_size"], label="Input resolution",
                                 info="short side of the image the network sees, in pixels")
                blocks = gr.CheckboxGroup(first["block_choices"], value=first["blocks"], label="GLMix blocks")
                run = gr.Button("Show slot maps", variant="primary")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=3, min_width=400):
                with gr.Tabs():
                    with gr.Tab("Slot groups", id=TAB_SLOTS) as tab_slots:
                        overlays = gr.Gallery(label="Hard slot groups, one image per block", columns=2,
                                              height="fit-content", object_fit="contain", elem_id="overlays")
                    with gr.Tab("Soft maps", id=TAB_SOFT) as tab_soft:
                        layer = gr.Dropdown(first["block_choices"], value=first["blocks"][-1], label="Block")
                        soft_status = gr.Markdown()
                        soft = gr.Gallery(label="Per-slot dispatch maps", columns=4, height="fit-content",
                                          object_fit="contain", elem_id="soft-maps")
                        slot_text = gr.Markdown(elem_id="slot-detail")
                    with gr.Tab("Classes and pseudo-mask", id=TAB_CLASSES,
                                visible=first["has_classifier"]) as tab_classes:
                        method = gr.Dropdown(first["evidence_methods"], value=first["method"],
                                             label="Evidence method")
                        class_status = gr.Markdown()
                        scores = gr.Label(label="Class scores", num_top_classes=5)
                        evidence = gr.Gallery(label="Class evidence of the classes the model sees", columns=3,
                                              height="fit-content", object_fit="contain", fit_columns=False)
                        with gr.Row():
                            mask = gr.AnnotatedImage(label="Pseudo-mask", color_map=colors)
                            mask_crf = gr.AnnotatedImage(label="Pseudo-mask + dense CRF", color_map=colors)
                with gr.Row(equal_height=False):
                    fmt = gr.Radio(["PNG", "PDF"], value="PNG", label="Figure format", scale=1)
                    make = gr.Button("Make a figure of this view", scale=1)
                figure_status = gr.Markdown()
                figure_file = gr.File(label="Figure", interactive=False, visible=False)

        common = [image, model, size]

        def on_model(label: str) -> tuple:
            try:
                s = app.model_settings(label)
            except Exception as exc:
                app._error(exc)
                return (gr.skip(),) * 7
            cmap = _class_colors(s["class_names"])
            return (gr.update(value=s["input_size"]), gr.update(choices=s["block_choices"], value=s["blocks"]),
                    gr.update(visible=s["has_classifier"]),
                    gr.update(choices=s["block_choices"], value=s["blocks"][-1]),
                    gr.update(color_map=cmap, value=None), gr.update(color_map=cmap, value=None),
                    gr.update(choices=s["evidence_methods"], value=s["method"]))

        files = PictureFiles()

        def on_overlays(img: Any, label: str, input_size: float, chosen: list[int], current: int | None) -> tuple:
            text, items = app.slot_overlays(img, label, input_size, chosen)
            items = files.gallery(items)
            chosen = sorted(chosen or [])
            keep = current if current in chosen else (chosen[-1] if chosen else None)
            return text, items, gr.update(value=keep), gr.update(value=None, visible=False), ""

        def on_soft(img: Any, label: str, input_size: float, block: int | None, current: str) -> tuple:
            if current != TAB_SOFT:  # computed when its tab is opened
                return "", [], ""
            text, items = app.soft_maps(img, label, input_size, block, warn=False)
            return text, files.gallery(items), ""

        def on_layer(img: Any, label: str, input_size: float, block: int | None) -> tuple:
            text, items = app.soft_maps(img, label, input_size, block)
            return text, files.gallery(items), ""

        def on_slot(img: Any, label: str, input_size: float, block: int | None, evt: gr.SelectData) -> str:
            return app.slot_detail(img, label, input_size, block, evt.index)

        def on_classes(img: Any, label: str, input_size: float, meth: str, current: str) -> tuple:
            if current != TAB_CLASSES:  # computed when its tab is opened
                return "", {}, [], None, None
            text, scores_, items, annotated = app.class_view(img, label, input_size, meth, warn=False)
            return text, scores_, files.gallery(items), annotated, None

        def on_crf(img: Any, label: str, input_size: float, meth: str, current: str) -> Any:
            return app.crf_mask(img, label, input_size, meth) if current == TAB_CLASSES else None

        def on_figure(img: Any, label: str, input_size: float, chosen: list[int], block: int | None, meth: str,
                      current: str, kind: str) -> tuple:
            path, text = app.figure(img, label, input_size, chosen, block, meth, current, kind)
            return gr.update(value=path, visible=path is not None), text

        soft_outputs = [soft_status, soft, slot_text]
        class_outputs = [class_status, scores, evidence, mask, mask_crf]
        hidden = dict(api_name=False, show_progress="hidden")

        def follow_up(event: Any) -> None:
            """After new overlays: the open tab's soft maps or class views, then the CRF mask."""
            (event.then(on_soft, common + [layer, view], soft_outputs, **hidden)
                  .then(on_classes, common + [method, view], class_outputs, **hidden)
                  .then(on_crf, common + [method, view], [mask_crf], **hidden))

        analyze = dict(fn=on_overlays, inputs=common + [blocks, layer],
                       outputs=[status, overlays, layer, figure_file, figure_status])
        follow_up(run.click(**analyze, api_name="analyze"))
        follow_up(image.change(**analyze, api_name=False))
        follow_up(size.release(**analyze, api_name=False))
        follow_up(blocks.input(**analyze, api_name=False))
        follow_up(model.input(on_model, [model], [size, blocks, tab_classes, layer, mask, mask_crf, method],
                              api_name=False)
                  .then(**analyze, api_name=False))
        layer.input(on_layer, common + [layer], soft_outputs, api_name="soft_maps")
        soft.select(on_slot, common + [layer], [slot_text], api_name=False)
        tab_slots.select(lambda: TAB_SLOTS, None, [view], api_name=False, queue=False)
        (tab_soft.select(lambda: TAB_SOFT, None, [view], api_name=False, queue=False)
                 .then(on_soft, common + [layer, view], soft_outputs, api_name=False))
        (tab_classes.select(lambda: TAB_CLASSES, None, [view], api_name=False, queue=False)
                    .then(on_classes, common + [method, view], class_outputs, api_name=False)
                    .then(on_crf, common + [method, view], [mask_crf], api_name=False))
        (method.input(on_classes, common + [method, view], class_outputs, api_name=False)
               .then(on_crf, common + [method, view], [mask_crf], api_name=False))
        make.click(on_figure, common + [blocks, layer, method, view, fmt], [figure_file, figure_status],
                   api_name="figure")
    return demo


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


def launch(checkpoint: str | os.PathLike[str] | None = None, *, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT,
           max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, concurrency: int = DEFAULT_CONCURRENCY,
           max_side: int = DEFAULT_MAX_SIDE, device: str | torch.device = "auto", prevent_thread_lock: bool = False,
           max_sessions: int = DEFAULT_MAX_SESSIONS, quiet: bool = False) -> gr.Blocks:
    """Build the app and serve it (blocking unless ``prevent_thread_lock``); returns the Blocks.

    ``max_sessions`` bounds the per-visitor state gradio keeps (least recently used dropped).
    """
    limit_heap_fragmentation()
    demo = build_app(checkpoint, max_side=max_side, device=device)
    demo.queue(default_concurrency_limit=concurrency, max_size=DEFAULT_QUEUE_SIZE)
    demo.launch(server_name=host, server_port=port, max_file_size=max_file_size, show_error=False,
                allowed_paths=[str(p) for p in example_files().values()], prevent_thread_lock=prevent_thread_lock,
                max_threads=max(8, 4 * concurrency), state_session_capacity=max_sessions, quiet=quiet,
                ssr_mode=False, footer_links=["api"], theme=gr.themes.Soft())
    return demo
