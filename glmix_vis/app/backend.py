"""What the web app's callbacks compute, without gradio: plain values in, plain values out.

:class:`SlotApp` is the seam between the page and the library: it picks the model (from
:class:`~glmix_vis.app.model_cache.ModelCache`), keeps each image's forward pass
(:class:`~glmix_vis.app.views.Analysis`) for the next callback, asks :mod:`~glmix_vis.app.views`
for the pictures and :mod:`~glmix_vis.app.messages` for the words, and turns every failure into
a message. The model work is :class:`glmix_vis.predictor.SlotPredictor`'s.

>>> app = SlotApp()                                   # the bundled demo model
>>> status, items = app.slot_overlays("photo.jpg", app.default_label, None, [0, 3])
"""

from __future__ import annotations

import atexit
import contextvars
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..io import ImageLoadError, downscale_to, load_image
from ..loading import ModelInfo
from ..models.checkpoints import CheckpointError, checkpoint_dirs
from ..models.slots import resolve_blocks
from ..predictor import SlotPredictor
from ..wsss.evidence.base import evidence_class
from ..wsss.evidence.budget import OutOfTime, TimeBudget, time_budget
from . import messages, views
from .messages import AppError
from .model_cache import LRU, LoadedModel, ModelCache
from .serving import discover_checkpoints
from .settings import (
    DEFAULT_DEVICE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    DEFAULT_METHOD,
    DEFAULT_TIME_BUDGET,
    FIGURE_CLASSES,
    INPUT_SIZES,
    MAX_EVIDENCE_PANELS,
    MAX_FIGURES,
    MIN_DISPLAY_SIDE,
    MODEL_CACHE_SIZE,
    RESULT_CACHE_SIZE,
    SOFT_SHOWN,
    TAB_SLOTS,
)

__all__ = ["SlotApp"]

log = logging.getLogger(__name__)

#: A gallery: pictures with their captions.
Gallery = list[views.Picture]


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
                 notify: Callable[[str], Any] | None = None, precision: str | None = None,
                 time_budget: float | None = DEFAULT_TIME_BUDGET) -> None:
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
        self.results: LRU[tuple, views.Analysis] = LRU(result_cache_size)
        #: Uploads that could not be read, by image key: their message (asked again, not read again).
        self._unreadable: LRU[tuple, str] = LRU(result_cache_size)
        self.figure_dir = Path(tempfile.mkdtemp(prefix="glmix-vis-figures-"))
        self._figures: list[Path] = []
        self._figures_lock = threading.Lock()
        # matplotlib keeps its fonts per thread (font_manager's cache keys on the thread id, up to 64
        # entries): figures drawn on gradio's short-lived worker threads reopened every font in each
        # new thread and kept 64 threads' worth alive (+30 MB in eval/soak_app.py). Every download is
        # drawn on this one long-lived thread instead, which also keeps matplotlib single-threaded.
        self._drawing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glmix-figure")
        atexit.register(shutil.rmtree, self.figure_dir, True)
        self.time_budget = time_budget
        self._running: dict[str, TimeBudget] = {}
        self._running_lock = threading.Lock()

    # -------------------------------------------------------------- time budget and cancellation
    @contextmanager
    def budgeted(self, session: str | None = None) -> Iterator[TimeBudget]:
        """Run a request under the server's time budget; a new request of the same visitor
        (``session``) cancels the one still running, so no visitor holds two workers."""
        budget = TimeBudget(self.time_budget)
        if session is not None:
            with self._running_lock:
                previous, self._running[session] = self._running.get(session), budget
            if previous is not None:
                previous.cancel()
        try:
            with time_budget(budget):
                yield budget
        finally:
            if session is not None:
                with self._running_lock:
                    if self._running.get(session) is budget:
                        del self._running[session]

    def cancel(self, session: str | None) -> None:
        """Stop what ``session`` is computing at its next check (the visitor left or uploaded anew)."""
        with self._running_lock:
            budget = self._running.pop(session, None) if session is not None else None
        if budget is not None:
            budget.cancel()

    # -------------------------------------------------------------- plumbing
    def model(self, label: str) -> LoadedModel:
        """The cached model behind a dropdown label; any other value is refused."""
        path = self.checkpoints.get(label) if isinstance(label, str) else None
        if path is None:
            raise AppError(messages.unknown_model(label))
        try:
            return self.models.get(path)
        except (CheckpointError, OSError, ValueError, RuntimeError, KeyError) as exc:
            raise AppError(messages.load_error(label, path, exc)) from exc

    def read_image(self, image: Any) -> np.ndarray:
        """An upload (path, bytes, PIL image or array) as RGB uint8, downscaled to ``max_side``."""
        return self._read(image)[0]

    def _read(self, image: Any) -> tuple[np.ndarray, tuple[int, int]]:
        """:meth:`read_image` and the upload's own size, width x height (before the downscale)."""
        if image is None:
            raise AppError(messages.NO_IMAGE)
        try:
            if isinstance(image, np.ndarray):
                rgb = image if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
                    else load_image(Image.fromarray(image))
            else:
                # decoded reduced (a JPEG at 1/2..1/8 scale) to twice the display side, then shrunk below
                rgb = load_image(image, max_pixels=self.max_pixels, shrink_to=(2 * self.max_side) ** 2)
        except ImageLoadError as exc:
            raise AppError(messages.strip_dirs(str(exc))) from exc
        except (TypeError, ValueError, OSError) as exc:
            raise AppError(f"cannot read this image ({exc})") from exc
        uploaded = (int(rgb.shape[1]), int(rgb.shape[0]))
        rgb = downscale_to(rgb, self.max_side)
        return (rgb if rgb.flags.writeable else rgb.copy()), uploaded  # the CRF needs a writable buffer

    def forward(self, rgb: np.ndarray, label: str, input_size: int | None = None) -> views.Analysis:
        """The forward pass of an image as :meth:`read_image` returns it, through the chosen model
        (not cached: :meth:`analysis` is the cached path from an upload)."""
        loaded = self.model(label)
        predictor = SlotPredictor(loaded.model, loaded.info, device=self.models.device)
        start = time.perf_counter()
        predictor.set_image(rgb, input_size=_input_size(input_size, loaded.info))
        return views.Analysis(predictor, loaded, time.perf_counter() - start, min(MIN_DISPLAY_SIDE, self.max_side))

    def analysis(self, image: Any, label: str, input_size: int | None) -> views.Analysis:
        """The forward pass of ``image`` through the chosen model, from the cache when possible."""
        loaded = self.model(label)
        size = _input_size(input_size, loaded.info)
        key = (_image_key(image), str(self.checkpoints[label]), size)
        cached = self.results.get(key)
        if cached is not None:
            return cached
        if (known := self._unreadable.get(key[0])) is not None:
            raise AppError(known)
        try:
            rgb, uploaded = self._read(image)
        except AppError as exc:
            self._unreadable.put(key[0], str(exc))
            raise
        result = self.forward(rgb, label, input_size)
        result.uploaded_size = uploaded
        self.results.put(key, result)
        return result

    def unreadable(self, image: Any) -> bool:
        """Whether ``image`` is an upload that :meth:`analysis` could not read (the page then keeps
        the last good result instead of showing nothing)."""
        return image is not None and self._unreadable.get(_image_key(image)) is not None

    # -------------------------------------------------------------- model choice
    def model_settings(self, label: str) -> dict[str, Any]:
        """Input size, block choices, whether the class tab applies and what the model knows
        (``notice``, :meth:`model_notice`), for a model label."""
        loaded = self.model(label)
        choices = [(messages.block_choice(name, s), i)
                   for i, (name, s) in enumerate(zip(loaded.block_labels, loaded.num_slots))]
        methods = loaded.evidence_methods
        return dict(input_size=loaded.info.input_size, block_choices=choices,
                    blocks=resolve_blocks(len(loaded.block_names), None, default="spread"),
                    has_classifier=loaded.has_classifier, class_names=list(loaded.info.class_names),
                    evidence_methods=methods, method_choices=[(messages.method_choice(m, evidence_class(m).cost_note), m)
                                                      for m in methods],
                    method=DEFAULT_METHOD if DEFAULT_METHOD in methods else (methods or [None])[0],
                    blocks_info=messages.blocks_info(loaded.block_labels_with_path),
                    notice=self.model_notice(label))

    def is_demo(self, label: str) -> bool:
        """Whether ``label`` is the bundled demo model (trained on generated scenes only), by the
        one rule of :attr:`glmix_vis.loading.ModelInfo.is_demo` (however the file was named)."""
        return self.model(label).info.is_demo

    def model_notice(self, label: str) -> str:
        """What the model behind ``label`` knows, in plain words (Markdown): its classes, for the
        bundled demo model that it was trained on generated scenes, not photos, and the file (absolute)."""
        loaded = self.model(label)
        return messages.model_notice(label, loaded.info, loaded.has_classifier, self.checkpoints[label])

    # -------------------------------------------------------------- slot groups
    def slot_overlays(self, image: Any, label: str, input_size: int | None,
                      blocks: Sequence[int] | None, session: str | None = None) -> tuple[str, Gallery]:
        """Status line and one hard-slot overlay per selected block (colours tracked across blocks);
        a visitor's new analysis (``session``) cancels what their earlier request still computes."""
        if image is None:
            self.cancel(session)
            return "", []
        start = time.perf_counter()
        try:
            with self.budgeted(session):
                result = self.analysis(image, label, input_size)
                chosen = views.chosen_blocks(blocks, len(result.loaded.block_names))
                overlays = views.overlay_pictures(result, chosen)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc), []
        pred = result.predictor
        (h, w), (net_h, net_w) = pred.image_size, pred.batch.shape[-2:]
        status = messages.overlay_status((w, h), (int(net_w), int(net_h)), len(chosen), time.perf_counter() - start,
                                         uploaded=result.uploaded_size)
        return status, overlays

    def overlay_pictures(self, result: views.Analysis, blocks: list[int]) -> Gallery:
        """One hard-slot overlay per block with its caption (:func:`glmix_vis.app.views.overlay_pictures`)."""
        return views.overlay_pictures(result, blocks)

    def slot_colors(self, result: views.Analysis, blocks: list[int]) -> list[np.ndarray]:
        """``(S, 3)`` colours per block, slots tracked across the blocks shown (:func:`~glmix_vis.app.views.slot_colors`)."""
        return views.slot_colors(result, blocks)

    # -------------------------------------------------------------- soft maps
    def slot_order(self, result: views.Analysis, block: int) -> list[int]:
        """Slots of a block, the largest area first; those that own no pixel last (:func:`views.slot_order`)."""
        return views.slot_order(result, block)

    def slot_peaks(self, result: views.Analysis, block: int) -> np.ndarray:
        """``(S,)`` each slot's largest dispatch weight: the top of its soft map's colour scale."""
        return views.slot_peaks(result, block)

    def soft_maps(self, image: Any, label: str, input_size: int | None, block: int | None,
                  warn: bool = True, shown: str = SOFT_SHOWN[0]) -> tuple[str, Gallery]:
        """Status line and a gallery of one block's per-slot dispatch maps, the largest area first:
        the :data:`~glmix_vis.app.settings.MAX_SOFT_MAPS` largest, every slot that owns pixels or
        all (``shown``: ``"largest"``, ``"owning"``, ``"all"``)."""
        if image is None or block is None:
            return "", []
        try:
            result = self.analysis(image, label, input_size)
            block = views.chosen_blocks([block], len(result.loaded.block_names))[0]
            items = views.soft_pictures(result, block, shown)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc, warn), []
        num, owning = result.loaded.num_slots[block], int((views.slot_areas(result, block) > 0).sum())
        return messages.soft_status(result.loaded.block_labels[block], num, len(items), owning), items

    def slot_detail(self, image: Any, label: str, input_size: int | None, block: int | None,
                    index: int | None) -> str:
        """What the ``index``-th entry of the soft-map gallery is: its slot, area, mean and peak weight."""
        if image is None or block is None or index is None:
            return ""
        try:
            result = self.analysis(image, label, input_size)
            block = views.chosen_blocks([block], len(result.loaded.block_names))[0]
            slot, area, weight, peak = views.slot_numbers(result, block, index)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc)
        return messages.slot_detail(result.loaded.block_labels[block], slot, area, weight, peak,
                                    result.loaded.num_slots[block])

    # -------------------------------------------------------------- classes
    def class_view(self, image: Any, label: str, input_size: int | None, method: str, warn: bool = True,
                   session: str | None = None) -> tuple[str, dict[str, float], Gallery, tuple | None]:
        """Status, class scores, evidence maps of the likely classes and the pseudo-mask (no CRF),
        within the time budget (``session``: the visitor, whose earlier request this cancels)."""
        if image is None:
            return "", {}, [], None
        try:
            with self.budgeted(session):
                result = self.analysis(image, label, input_size)
                views.check_method(result.loaded, method)
                pred = result.predictor
                scores = pred.class_scores()
                views.evidence(result, method)
                mask = views.pseudo_mask(result, method)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return self.report(exc, warn), {}, [], None
        names = pred.info.foreground_names
        gallery = views.class_pictures(result, method, MAX_EVIDENCE_PANELS)
        seen = [names[k] for k in views.likely_classes(pred, MAX_EVIDENCE_PANELS)]
        head_top = pred.top_predictions(5, min_score=0.01) if pred.info.head_names else None
        status = messages.class_status(method, seen, head_top, names if pred.info.is_demo else None)
        return status, {n: float(s) for n, s in zip(names, scores)}, gallery, views.annotated(pred, mask)

    def crf_mask(self, image: Any, label: str, input_size: int | None, method: str,
                 session: str | None = None) -> tuple | None:
        """The pseudo-mask refined by a dense CRF (the slow part, asked for separately)."""
        if image is None:
            return None
        try:
            with self.budgeted(session):
                result = self.analysis(image, label, input_size)
                if method not in result.loaded.evidence_methods:
                    return None
                mask = views.pseudo_mask(result, method, crf=True)
        except (AppError, OutOfTime):
            return None  # class_view, which runs first, has said what is wrong
        except Exception as exc:
            self.report(exc)
            return None
        return views.annotated(result.predictor, mask)

    # -------------------------------------------------------------- API answers (JSON, files)
    def class_scores(self, image: Any, label: str, input_size: int | None,
                     session: str | None = None) -> dict[str, Any]:
        """The classes API (``/class_scores``) as JSON: every class's score, the classes the model
        sees (the pipeline's label rule) and, for an ImageNet head, its own top classes;
        ``{"error": ...}`` when there is nothing to score."""
        try:
            if image is None:
                raise AppError(messages.NO_IMAGE)
            with self.budgeted(session):
                result = self.analysis(image, label, input_size)
            if not result.loaded.has_classifier:
                raise AppError(messages.NO_HEAD)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return {"error": _plain(self, exc)}
        pred = result.predictor
        names = pred.info.foreground_names
        answer: dict[str, Any] = {
            "model": label, "scores": {n: round(float(v), 6) for n, v in zip(names, pred.class_scores())},
            "classes": [names[k] for k in views.likely_classes(pred, len(names))]}
        if pred.info.head_names:
            answer["head_top"] = [{"name": p.name, "score": round(p.score, 6), "feeds": p.feeds}
                                  for p in pred.top_predictions(5)]
        return answer

    def mask_file(self, image: Any, label: str, input_size: int | None, method: str, crf: bool = False,
                  session: str | None = None) -> tuple[str | None, dict[str, Any]]:
        """The mask API (``/mask``): the pseudo-mask of ``method`` (with or without the dense CRF) as
        an indexed PNG at the analysed image's size, pixel value = class index in the VOC palette,
        and its legend as JSON; ``(None, {"error": ...})`` when there is none."""
        from ..data.palette import save_palette_png

        try:
            if image is None:
                raise AppError(messages.NO_IMAGE)
            with self.budgeted(session):
                result = self.analysis(image, label, input_size)
                views.check_method(result.loaded, method)
                mask = views.pseudo_mask(result, method, crf=bool(crf))
            out = self._new_figure_path(f"mask_{method}{'_crf' if crf else ''}.png")
            save_palette_png(out, mask)
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return None, {"error": _plain(self, exc)}
        names = result.predictor.info.class_names
        present = [int(k) for k in np.unique(mask) if 0 <= k < len(names)]
        return str(out), {"method": method, "crf": bool(crf), "size": [int(mask.shape[1]), int(mask.shape[0])],
                          "classes": {str(k): names[k] for k in present}}

    # -------------------------------------------------------------- figure download
    def figure(self, image: Any, label: str, input_size: int | None, blocks: Sequence[int] | None,
               block: int | None = None, method: str = DEFAULT_METHOD, view: str = TAB_SLOTS,
               fmt: str = "png", session: str | None = None) -> tuple[str | None, str]:
        """The open view (``view``: a tab's id) as a figure file (made by glmix_vis.figures) and a
        status line; ``block`` is the soft-map tab's block, ``method`` the classes tab's."""
        from .. import figures

        fmt = str(fmt or "png").lower()
        if fmt not in ("png", "pdf"):
            return None, self.report(AppError(messages.unknown_figure_format(fmt)))
        if image is None:
            return None, self.report(AppError(messages.NO_IMAGE_YET))
        def draw(result: views.Analysis) -> Path:
            fig, name = views.view_figure(result, view, blocks, block, method, FIGURE_CLASSES)
            out = self._new_figure_path(f"glmix_{name}.{fmt}")
            figures.save_figure(fig, out)
            # a figure's artists sit in reference cycles, holding the panels' arrays (~4 MB a figure) until
            # the next full collection: emptied now, the arrays go at once (eval/RESULTS.md, memory soak)
            fig.clear()
            return out

        try:
            with self.budgeted(session):
                result = self.analysis(image, label, input_size)
                # the request's context (its time budget) travels with the drawing to its thread
                out = self._drawing.submit(contextvars.copy_context().run, draw, result).result()
        except Exception as exc:  # AppError: a message; anything else: logged, then a message
            return None, self.report(exc)
        return str(out), messages.figure_ready(out.name)

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
        elif isinstance(exc, OutOfTime):  # a cancelled request has nobody left to tell
            message = "cancelled" if exc.cancelled else messages.out_of_time(self.time_budget)
            warn = warn and not exc.cancelled
        elif isinstance(exc, KeyError | ValueError):  # e.g. an evidence method refusing a model
            message = messages.strip_dirs(str(exc).strip("'\""))
        else:
            log.error("unexpected error in the web app", exc_info=exc)
            message = messages.unexpected_error(exc)
        if warn and self.notify is not None:
            self.notify(message)
        return messages.error_markdown(message)


# ------------------------------------------------------------------------------ helpers
def _plain(app: SlotApp, exc: Exception) -> str:
    """The message :meth:`SlotApp.report` shows for ``exc``, without its Markdown (for JSON)."""
    return app.report(exc, warn=False).removeprefix(messages.error_markdown(""))


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
