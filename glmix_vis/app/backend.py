"""What the web app's callbacks compute, without gradio: plain values in, plain values out.

The model work is :class:`glmix_vis.predictor.SlotPredictor`'s, every picture is drawn by
:mod:`glmix_vis.figures` (the pure-numpy :mod:`~glmix_vis.figures.render` for the galleries, the
paper layouts for downloads), so the app shows exactly what the figures show and draws nothing of
its own. Models are loaded once per checkpoint (:class:`ModelCache`, a small LRU), and the forward
pass of an image is kept for the next callback (:class:`Analysis`).

>>> app = SlotApp()                                   # the bundled demo model
>>> status, items = app.slot_overlays("photo.jpg", app.default_label, None, [0, 3])
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from PIL import Image

from ..io import ImageLoadError, downscale_to, load_image
from ..loading import ModelInfo, load_model
from ..models.checkpoints import CheckpointError, checkpoint_dirs
from ..models.slots import block_label
from ..predictor import SlotPredictor
from .serving import discover_checkpoints
from .settings import (
    DEFAULT_DEVICE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    DEFAULT_METHOD,
    FIGURE_CLASSES,
    INPUT_SIZES,
    MAX_EVIDENCE_PANELS,
    MAX_FIGURES,
    MIN_DISPLAY_SIDE,
    MODEL_CACHE_SIZE,
    RESULT_CACHE_SIZE,
    SOFT_SIDE,
    TAB_CLASSES,
    TAB_SOFT,
)

__all__ = ["Analysis", "AppError", "LoadedModel", "ModelCache", "SlotApp", "default_blocks", "describe_model"]

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


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
    #: What a person reads for each block (:func:`glmix_vis.models.slots.block_label`).
    block_labels: list[str] = field(default_factory=list)

    @property
    def has_classifier(self) -> bool:
        return bool(self.evidence_methods)


@torch.no_grad()
def describe_model(model: torch.nn.Module, info: ModelInfo) -> LoadedModel:
    """Block names, slot counts and the evidence methods that work, from one tiny forward pass."""
    from ..wsss.evidence import available_evidence_methods, get_evidence_method

    device = next(model.parameters()).device
    blank = torch.zeros(1, 3, 64, 64, device=device)
    out = model.forward_slots(blank)
    methods = []
    if getattr(model, "num_classes", 0) > 0 and len(info.class_names) > 1:
        for name in available_evidence_methods():
            try:
                get_evidence_method(name, class_map=info.class_map).check(model, out)
            except (ValueError, RuntimeError, KeyError, TypeError, AttributeError):
                continue  # e.g. 'token' needs a token-labeling head
            methods.append(name)
    return LoadedModel(model, info, [m.name for m in out.maps], [m.num_slots for m in out.maps], methods,
                       [block_label(i, m) for i, m in enumerate(out.maps)])


class ModelCache:
    """Models by checkpoint file, loaded on first use and kept in a small LRU (a changed file
    is a new entry); one load at a time, so a burst of requests loads a model once."""

    def __init__(self, capacity: int = MODEL_CACHE_SIZE, device: str | torch.device = DEFAULT_DEVICE,
                 loader: Callable[..., tuple[torch.nn.Module, ModelInfo]] = load_model,
                 precision: str | None = None) -> None:
        self._lru: _LRU[tuple[str, int, int], LoadedModel] = _LRU(capacity)
        self._load_lock = threading.Lock()
        self.device = device
        self.loader = loader
        #: ``--precision`` for every model loaded (None: the loader's default); kept in ``ModelInfo.precision``.
        self.precision = precision

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
                extra = {} if self.precision is None else {"precision": self.precision}
                model, info = self.loader(p, device=self.device, **extra)
                cached = describe_model(model, info)
                self._lru.put(key, cached)
        return cached

    def __len__(self) -> int:
        return len(self._lru)


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
        from ..figures import render

        return self.cached(("shown",), lambda: render.enlarge_to(self.predictor.image, self.min_display_side))

    def hard(self, block: int) -> np.ndarray:
        """``(H, W)`` int16 hard slot labels at the displayed size, the argmax of the block's logits
        upsampled bilinearly (as :meth:`~glmix_vis.models.slots.SlotMap.hard_upsampled`), computed
        from the grid without full-size maps of every slot (:func:`glmix_vis.figures.upsample.hard_labels`)."""
        from ..figures.upsample import hard_labels

        def compute() -> np.ndarray:
            m = self.predictor.maps([block])[0]
            logits = m.logits[0].detach().float().reshape(m.num_slots, *m.grid).cpu().numpy()
            return hard_labels(logits, self.shown.shape[:2])
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
    plain values for the widgets. Errors come back as a message, never as an exception.

    ``notify`` also receives every message shown as an error (the page passes ``gr.Warning``,
    a pop-up); the default shows none.
    """

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *, max_side: int = DEFAULT_MAX_SIDE,
                 max_pixels: int = DEFAULT_MAX_PIXELS, device: str | torch.device = DEFAULT_DEVICE,
                 model_cache_size: int = MODEL_CACHE_SIZE, result_cache_size: int = RESULT_CACHE_SIZE,
                 notify: Callable[[str], Any] | None = None, precision: str | None = None) -> None:
        self.checkpoints = discover_checkpoints(checkpoint)
        if not self.checkpoints:
            dirs = ", ".join(str(d) for d in checkpoint_dirs())
            raise FileNotFoundError("no model to serve: the bundled demo checkpoint is missing and there is no "
                                    f"checkpoint in {dirs}; pass --checkpoint FILE or set GLMIX_CHECKPOINT_DIR")
        self.default_label = next(iter(self.checkpoints))
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.notify = notify
        self.models = ModelCache(model_cache_size, device=device, precision=precision)
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
            raise AppError(_load_error(label, path, exc)) from exc

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

    def forward(self, rgb: np.ndarray, label: str, input_size: int | None = None) -> Analysis:
        """The forward pass of an image as :meth:`read_image` returns it, through the chosen model
        (not cached: :meth:`analysis` is the cached path from an upload)."""
        loaded = self.model(label)
        predictor = SlotPredictor(loaded.model, loaded.info, device=self.models.device)
        start = time.perf_counter()
        predictor.set_image(rgb, input_size=_input_size(input_size, loaded.info))
        return Analysis(predictor, loaded, time.perf_counter() - start, min(MIN_DISPLAY_SIDE, self.max_side))

    def analysis(self, image: Any, label: str, input_size: int | None) -> Analysis:
        """The forward pass of ``image`` through the chosen model, from the cache when possible."""
        loaded = self.model(label)
        size = _input_size(input_size, loaded.info)
        key = (_image_key(image), str(self.checkpoints[label]), size)
        cached = self.results.get(key)
        if cached is not None:
            return cached
        result = self.forward(self.read_image(image), label, input_size)
        self.results.put(key, result)
        return result

    # -------------------------------------------------------------- model choice
    def model_settings(self, label: str) -> dict[str, Any]:
        """Input size, block choices, whether the class tab applies and what the model knows
        (``notice``, :meth:`model_notice`), for a model label."""
        loaded = self.model(label)
        n = len(loaded.block_names)
        choices = [(f"{name} · {s} slots", i)
                   for i, (name, s) in enumerate(zip(loaded.block_labels, loaded.num_slots))]
        methods = loaded.evidence_methods
        return dict(input_size=loaded.info.input_size, block_choices=choices,
                    blocks=default_blocks(n), has_classifier=loaded.has_classifier,
                    class_names=list(loaded.info.class_names), evidence_methods=methods,
                    method=DEFAULT_METHOD if DEFAULT_METHOD in methods else (methods or [None])[0],
                    notice=self.model_notice(label))

    def is_demo(self, label: str) -> bool:
        """Whether ``label`` is the bundled demo model (trained on generated scenes only), by the
        one rule of :attr:`glmix_vis.loading.ModelInfo.is_demo` (however the file was named)."""
        return self.model(label).info.is_demo

    def model_notice(self, label: str) -> str:
        """What the model behind ``label`` knows, in plain words (Markdown): its classes, and for
        the bundled demo model that it was trained on generated scenes, not photos."""
        loaded = self.model(label)
        info = loaded.info
        if not loaded.has_classifier:
            return (f"**{label}** ({info.name}) has no classifier head: it shows slot maps only "
                    "(no class scores, no pseudo-masks).")
        names = ", ".join(info.foreground_names)
        count = len(info.foreground_names)
        if info.head_names:
            return (f"**{label}** ({info.name}): an ImageNet classifier ({len(info.head_names)} classes), read as "
                    f"the {count} PASCAL VOC classes ({names}); the classes tab also lists the ImageNet "
                    "classes it sees.")
        if self.is_demo(label):
            return (f"**Demo model** ({info.name}): trained on generated scenes only, it knows just these "
                    f"{count} shapes: {names}. On a photo its class scores and masks mean nothing: it still "
                    "names one of these shapes. For photos, load an official ImageNet checkpoint: put e.g. "
                    "`glnet_4g.pth` in the checkpoint folder (`$GLMIX_CHECKPOINT_DIR`) and choose it here, "
                    "or start `glmix-vis app --checkpoint glnet_4g`.")
        unnamed = " (its checkpoint does not name them)" if all(n.startswith("class_") for n in
                                                                 info.foreground_names) else ""
        return f"**{label}** ({info.name}) knows {count} classes{unnamed}: {names}."

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
            overlays = self.overlay_pictures(result, chosen)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc), []
        pred = result.predictor
        h, w = pred.image_size
        net_h, net_w = pred.batch.shape[-2:]
        status = (f"{h}×{w} px image, network input {net_h}×{net_w}, {len(chosen)} block(s) "
                  f"in {time.perf_counter() - start:.2f} s")
        return status, overlays

    def overlay_pictures(self, result: Analysis, blocks: list[int]) -> list[tuple[np.ndarray, str]]:
        """One hard-slot overlay per block (drawn by :class:`glmix_vis.figures.render.SlotOverlay`)
        with its caption: block, stage and how many slots win pixels."""
        from ..figures import render

        hard = [result.hard(b) for b in blocks]
        colors = self.slot_colors(result, blocks)
        overlay = render.SlotOverlay(result.shown)  # the photo's share of the blend, once for all blocks
        items = []
        for b, h, c in zip(blocks, hard, colors):
            picture = overlay.draw(h, c)
            used = int((result.shares(b) > 0).sum())
            items.append((picture, f"{result.loaded.block_labels[b]} · {used}/{result.loaded.num_slots[b]} slots"))
        return items

    def slot_colors(self, result: Analysis, blocks: list[int]) -> list[np.ndarray]:
        """``(S, 3)`` colours per block: the figures' palette, slots tracked across the blocks shown."""
        from ..figures import render

        return result.cached(("colors", tuple(blocks)), lambda: render.tracked_slot_colors(
            [result.hard(b) for b in blocks], [result.loaded.num_slots[b] for b in blocks]))

    # -------------------------------------------------------------- soft maps
    def slot_order(self, result: Analysis, block: int) -> list[int]:
        """Slots of a block, largest share first."""
        return [int(s) for s in np.argsort(-result.shares(block), kind="stable")]

    def soft_maps(self, image: Any, label: str, input_size: int | None, block: int | None,
                  warn: bool = True) -> tuple[str, list[tuple[np.ndarray, str]]]:
        """Status line and a gallery of one block's per-slot dispatch maps, largest slot first."""
        from ..figures import render

        if image is None or block is None:
            return "", []
        try:
            result = self.analysis(image, label, input_size)
            block = _check_blocks([block], len(result.loaded.block_names))[0]
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc, warn), []
        shown = downscale_to(result.shown, SOFT_SIDE)
        m = result.predictor.maps([block])[0]
        soft = m.upsample(shown.shape[:2])[0].cpu().numpy()
        peaks = self.slot_peaks(result, block)
        shares = result.shares(block)
        items = [(render.soft_map_overlay(shown, soft[s], peaks[s]), f"slot {s} · {_percent(shares[s])} · "
                  f"peak {peaks[s]:.2f}") for s in self.slot_order(result, block)]
        return (f"{result.loaded.block_labels[block].capitalize()}, largest slot first. Colour: each pixel's "
                f"dispatch weight to the slot, **each map scaled to its own peak** (dark = 0, yellow = the peak "
                f"in its caption; the exported figure uses the same scale). Caption: the slot's share of the "
                f"image's pixels and its peak weight. Click a slot to enlarge it."), items

    def slot_peaks(self, result: Analysis, block: int) -> np.ndarray:
        """``(S,)`` each slot's largest dispatch weight on the block's token grid: the top of its
        soft map's colour scale (:func:`glmix_vis.figures.render.soft_map_overlay`)."""
        return result.cached(("peaks", block), lambda: result.predictor.maps([block])[0].dispatch[0]
                             .flatten(1).amax(1).cpu().numpy())

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
            return self.report(exc)
        slot = order[int(index)]
        m = result.predictor.maps([block])[0]
        share = float(result.shares(block)[slot])
        weight = float(m.dispatch[0, slot].mean())
        peak = float(self.slot_peaks(result, block)[slot])
        return (f"**{result.loaded.block_labels[block].capitalize()}, slot {slot}**: wins **{share:.1%}** of the "
                f"image (hard assignment); dispatch weight {weight:.1%} on average, {peak:.1%} at its peak "
                f"(the yellow end of its map).")

    # -------------------------------------------------------------- classes
    def class_view(self, image: Any, label: str, input_size: int | None, method: str, warn: bool = True,
                   ) -> tuple[str, dict[str, float], list[tuple[np.ndarray, str]], tuple | None]:
        """Status, class scores, evidence maps of the likely classes and the pseudo-mask (no CRF)."""
        from ..figures import render

        if image is None:
            return "", {}, [], None
        try:
            result = self.analysis(image, label, input_size)
            _check_method(result, method)
            pred = result.predictor
            names = pred.info.foreground_names
            scores = pred.class_scores()
            evidence = result.cached(("evidence", method), lambda: pred.evidence(method))
            mask = result.cached(("mask", method, False), lambda: pred.pseudo_mask(method))
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc, warn), {}, [], None
        order = _likely_classes(pred, MAX_EVIDENCE_PANELS)
        shown = downscale_to(result.shown, SOFT_SIDE)
        gallery = [(render.heatmap_overlay(shown, evidence[k]), f"{names[k]} · p={scores[k]:.2f}") for k in order]
        found = ", ".join(names[k] for k in order) or "nothing"
        head = ""
        if pred.info.head_names:  # an ImageNet head: its own top classes and the VOC class each feeds
            head = " ImageNet head's top classes: " + ", ".join(
                str(p) for p in pred.top_predictions(5, min_score=0.01)) + "."
        warning = ""
        if self.is_demo(label):
            warning = (f"⚠️ **The demo model knows only {len(names)} generated shapes** ({', '.join(names)}): "
                       "on a photo these scores and masks mean nothing. For photos, load an official "
                       "checkpoint (see the note under *Model*).\n\n")
        return (f"{warning}Evidence method `{method}`; classes the model sees: {found}.{head} "
                "Evidence: 0 (dark) to 1 (yellow).",
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
            self.report(exc)
            return None
        return _annotated(pred, mask)

    # -------------------------------------------------------------- figure download
    def figure(self, image: Any, label: str, input_size: int | None, blocks: Sequence[int] | None,
               block: int | None, method: str, view: str, fmt: str = "png") -> tuple[str | None, str]:
        """The current view as a figure file (made by glmix_vis.figures) and a status line."""
        from .. import figures

        fmt = str(fmt or "png").lower()
        if fmt not in ("png", "pdf"):
            return None, self.report(AppError(f"unknown figure format {fmt!r}"))
        if image is None:
            return None, self.report(AppError("upload an image or pick an example first"))
        try:
            result = self.analysis(image, label, input_size)
            chosen = _check_blocks(blocks, len(result.loaded.block_names))
            pred = result.predictor
            if view == TAB_SOFT:
                one = _check_blocks([block if block is not None else chosen[-1]], len(result.loaded.block_names))
                fig, name = figures.soft_slot_maps(pred, blocks=one), f"soft_maps_block{one[0]}"
            elif view == TAB_CLASSES:
                fig, name = self._class_figure(result, method), f"classes_{method}"
            else:
                fig, name = figures.slot_grid(pred, blocks=chosen), "slot_groups"
            out = self._new_figure_path(f"glmix_{name}.{fmt}")
            figures.save_figure(fig, out)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return None, self.report(exc)
        return str(out), f"Figure ready: {out.name}"

    def _class_figure(self, result: Analysis, method: str) -> Any:
        """The class tab as a figure, with the chosen evidence method (:func:`glmix_vis.figures.class_view`)."""
        from ..figures import class_view as class_view_figure

        _check_method(result, method)
        pred = result.predictor
        evidence = result.cached(("evidence", method), lambda: pred.evidence(method))
        masks = [result.cached(("mask", method, crf), lambda crf=crf: pred.pseudo_mask(method, crf=crf))
                 for crf in (False, True)]
        return class_view_figure(pred, method, evidence, masks, _likely_classes(pred, FIGURE_CLASSES))

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
    def report(self, exc: Exception, warn: bool = True) -> str:
        """The message for the page; also passed to ``notify`` (a pop-up) unless an earlier step
        gave one (``warn=False``).

        Anything but an :class:`AppError` is unexpected: its traceback goes to the server log and
        the page only says that something failed."""
        if isinstance(exc, AppError):
            message = str(exc)
        elif isinstance(exc, KeyError | ValueError):  # e.g. an evidence method refusing a model
            message = _strip_dirs(str(exc).strip("'\""))
        else:
            log.error("unexpected error in the web app", exc_info=exc)
            message = f"internal error ({type(exc).__name__}); the details are in the server log"
        if warn and self.notify is not None:
            self.notify(message)
        return f"**Error:** {message}"


# ------------------------------------------------------------------------------ helpers
def default_blocks(num_blocks: int, count: int = 4) -> list[int]:
    """Up to ``count`` evenly spread block indices, always the first and last."""
    if num_blocks <= count:
        return list(range(num_blocks))
    return sorted({round(i * (num_blocks - 1) / (count - 1)) for i in range(count)})


def _check_method(result: Analysis, method: str) -> None:
    """An :class:`AppError` unless the loaded model has a head and ``method`` applies to it."""
    if not result.loaded.has_classifier:
        raise AppError("this model has no classifier head: no class evidence")
    if method not in result.loaded.evidence_methods:
        raise AppError(f"evidence method {method!r} does not apply to this model; choose one of "
                       f"{', '.join(result.loaded.evidence_methods)}")


def _likely_classes(pred: SlotPredictor, limit: int) -> list[int]:
    """Foreground indices of the classes the model sees (the pipeline's label rule), most likely
    first, at most ``limit``."""
    scores = pred.class_scores()
    labels = pred.predicted_labels()
    return [int(k) for k in np.argsort(-scores, kind="stable") if labels[k] > 0][:limit]


def _percent(x: float) -> str:
    """A share as a whole percentage that never rounds a slot that wins pixels down to "0%"."""
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"


def _load_error(label: str, path: Path, exc: Exception) -> str:
    """One line naming the file (by its dropdown label, never a server folder) and the problem."""
    text = " ".join(str(exc).strip("'\"").split())  # one line
    for prefix in (str(path), str(Path(path).resolve())):
        if text.startswith(prefix):
            return label + text[len(prefix):]
    text = text.replace(str(path), label)
    return f"cannot load {label}: {text}"


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
    """The value of a ``gr.AnnotatedImage``: the image with every class region outlined, and one
    opacity map per class present (its region at :func:`~glmix_vis.figures.render.mask_alpha`'s
    opacity, higher for grey and dark class colours), so that no class vanishes into a photo."""
    from ..data.palette import voc_palette
    from ..figures import render

    names = pred.info.class_names
    alpha = render.mask_alpha(voc_palette())
    base = render.outline_regions(pred.image, mask)
    return base, [((mask == k).astype(np.float32) * alpha[k], names[k])
                  for k in np.unique(mask) if 0 < k < len(names)]
