"""The per-image views of the web app: one image through one model (:class:`Analysis`) and the
pictures each tab shows of it, drawn by :mod:`glmix_vis.figures` (the pure-numpy
:mod:`~glmix_vis.figures.render` for the galleries, the paper layouts for downloads), so the app
shows exactly what the figures show and draws nothing of its own.

Plain values in, plain values out, no gradio; a view computed once is kept in the analysis'
memo for the next callback. Bad choices (a block or method the model lacks) raise
:class:`~glmix_vis.app.messages.AppError`; the sentences are :mod:`~glmix_vis.app.messages`'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io import downscale_to
from ..models.slots import BlockIndexError, resolve_blocks
from ..predictor import SlotPredictor
from ..wsss.recipe import MaskRecipe
from . import messages
from .messages import AppError
from .model_cache import LoadedModel
from .settings import MAX_SOFT_MAPS, SOFT_SHOWN, SOFT_SIDE, TAB_CLASSES, TAB_SOFT

__all__ = ["Analysis", "Picture", "annotated", "check_method", "chosen_blocks", "class_figure", "class_pictures",
           "evidence", "likely_classes", "overlay_pictures", "pseudo_mask", "shown_slots", "slot_areas", "slot_colors",
           "slot_numbers", "slot_order", "slot_peaks", "soft_pictures", "view_figure"]

#: A gallery entry: the picture and its caption.
Picture = tuple[np.ndarray, str]


@dataclass
class Analysis:
    """One image through one model: the predictor holding the forward pass, plus views of it
    computed on demand (hard maps, evidence, masks) and kept for the next callback."""

    predictor: SlotPredictor
    loaded: LoadedModel
    forward_seconds: float
    min_display_side: int = 0
    memo: dict[tuple, Any] = field(default_factory=dict)
    #: The upload's own size, width x height, before the app downscaled it (None: not known).
    uploaded_size: tuple[int, int] | None = None

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


# ------------------------------------------------------------------------------ choices
def chosen_blocks(blocks: Sequence[int] | None, num_blocks: int) -> list[int]:
    """The chosen GLMix blocks, sorted and once each, by the one block rule
    (:func:`glmix_vis.models.slots.resolve_blocks`); an :class:`AppError` for none or one the model lacks."""
    if not blocks:
        raise AppError(messages.NO_BLOCK)
    try:
        return sorted(set(resolve_blocks(num_blocks, [int(b) for b in blocks])))
    except BlockIndexError as exc:
        raise AppError(str(exc)) from None


def check_method(loaded: LoadedModel, method: str) -> None:
    """An :class:`AppError` unless the loaded model has a head and ``method`` serves it."""
    if not loaded.has_classifier:
        raise AppError(messages.NO_HEAD)
    if method not in loaded.evidence_methods:
        raise AppError(messages.method_refused(method, loaded.evidence_methods))


# ------------------------------------------------------------------------------ slot groups
def slot_colors(result: Analysis, blocks: list[int]) -> list[np.ndarray]:
    """``(S, 3)`` colours per block: the figures' palette, slots tracked across the blocks shown."""
    from ..figures import render

    return result.cached(("colors", tuple(blocks)), lambda: render.tracked_slot_colors(
        [result.hard(b) for b in blocks], [result.loaded.num_slots[b] for b in blocks]))


def overlay_pictures(result: Analysis, blocks: list[int]) -> list[Picture]:
    """One hard-slot overlay per block (drawn by :class:`glmix_vis.figures.render.SlotOverlay`)
    with its caption: block, stage and how many slots win pixels."""
    from ..figures import render

    hard = [result.hard(b) for b in blocks]
    colors = slot_colors(result, blocks)
    overlay = render.SlotOverlay(result.shown)  # the photo's share of the blend, once for all blocks
    items = []
    for b, h, c in zip(blocks, hard, colors):
        used = int((slot_areas(result, b) > 0).sum())  # the slots this picture shows
        items.append((overlay.draw(h, c),
                      messages.overlay_caption(result.loaded.block_labels[b], used, result.loaded.num_slots[b])))
    return items


# ------------------------------------------------------------------------------ soft maps
def slot_areas(result: Analysis, block: int) -> np.ndarray:
    """``(S,)`` the fraction of the displayed pixels each slot owns in the block's hard map (what
    the slot groups tab colours); 0 for a slot that owns no pixel."""
    def compute() -> np.ndarray:
        hard = result.hard(block)
        return np.bincount(hard.ravel(), minlength=result.loaded.num_slots[block]) / hard.size
    return result.cached(("areas", block), compute)


def slot_order(result: Analysis, block: int) -> list[int]:
    """Slots of a block, the largest area in the hard map first; the slots that own no pixel last,
    the highest peak first (a 64-slot block shows what matters on its first screen)."""
    areas, peaks = slot_areas(result, block), slot_peaks(result, block)
    return [int(s) for s in np.lexsort((-peaks, -areas))]


def slot_peaks(result: Analysis, block: int) -> np.ndarray:
    """``(S,)`` each slot's largest dispatch weight on the block's token grid: the top of its
    soft map's colour scale (:func:`glmix_vis.figures.render.soft_map_overlay`)."""
    return result.cached(("peaks", block), lambda: result.predictor.maps([block])[0].dispatch[0]
                         .flatten(1).amax(1).cpu().numpy())


def shown_slots(result: Analysis, block: int, which: str = SOFT_SHOWN[0], limit: int = MAX_SOFT_MAPS) -> list[int]:
    """The slots the soft-map gallery shows, in :func:`slot_order`: the ``limit`` largest
    (``"largest"``), every slot that owns pixels (``"owning"``) or all (``"all"``)."""
    order = slot_order(result, block)
    if which == "all":
        return order
    if which == "owning":
        areas = slot_areas(result, block)
        return [s for s in order if areas[s] > 0]
    if which == "largest":
        return order[:limit]
    raise AppError(messages.unknown_soft_choice(which, SOFT_SHOWN))


def soft_pictures(result: Analysis, block: int, which: str = SOFT_SHOWN[0]) -> list[Picture]:
    """One block's per-slot dispatch maps (:func:`shown_slots`), each coloured from 1/S to its own peak and
    captioned with its area and its peak as a multiple of the uniform weight 1/S."""
    from ..figures import render

    shown = downscale_to(result.shown, SOFT_SIDE)
    chosen = shown_slots(result, block, which)
    soft = result.predictor.maps([block])[0].upsample(shown.shape[:2])[0, chosen].cpu().numpy()
    peaks, areas = slot_peaks(result, block), slot_areas(result, block)
    num = result.loaded.num_slots[block]
    return [(render.soft_map_overlay(shown, heat, peaks[s], num_slots=num), messages.soft_caption(s, areas[s], peaks[s], num))
            for s, heat in zip(chosen, soft)]


def slot_numbers(result: Analysis, block: int, index: int) -> tuple[int, float, float, float]:
    """The ``index``-th slot of :func:`soft_pictures`: its number, area, mean and peak weight."""
    order = slot_order(result, block)
    if not 0 <= int(index) < len(order):
        raise AppError(messages.no_slot(index))
    slot = order[int(index)]
    weight = float(result.predictor.maps([block])[0].dispatch[0, slot].mean())
    return slot, float(slot_areas(result, block)[slot]), weight, float(slot_peaks(result, block)[slot])


# ------------------------------------------------------------------------------ classes
def likely_classes(pred: SlotPredictor, limit: int) -> list[int]:
    """Foreground indices of the classes the model sees (the pipeline's label rule), most likely
    first, at most ``limit``."""
    scores = pred.class_scores()
    labels = pred.predicted_labels()
    return [int(k) for k in np.argsort(-scores, kind="stable") if labels[k] > 0][:limit]


def evidence(result: Analysis, method: str) -> np.ndarray:
    """The class evidence of ``method`` (:meth:`SlotPredictor.evidence`), computed once."""
    recipe = MaskRecipe(method)
    return result.cached(("evidence", recipe), lambda: result.predictor.evidence(recipe))


def pseudo_mask(result: Analysis, method: str, crf: bool = False) -> np.ndarray:
    """The pseudo-mask of ``method`` (its recipe with the checkpoint's threshold), with or without the
    dense CRF, computed once."""
    recipe = MaskRecipe(method, crf=crf)
    return result.cached(("mask", recipe), lambda: result.predictor.pseudo_mask(recipe))


def class_pictures(result: Analysis, method: str, limit: int) -> list[Picture]:
    """The evidence of the ``limit`` likeliest classes the model sees, each captioned with its score."""
    from ..figures import render

    pred = result.predictor
    names, scores, maps = pred.info.foreground_names, pred.class_scores(), evidence(result, method)
    shown = downscale_to(result.shown, SOFT_SIDE)
    return [(render.heatmap_overlay(shown, maps[k]), f"{names[k]} · p={scores[k]:.2f}")
            for k in likely_classes(pred, limit)]


def annotated(pred: SlotPredictor, mask: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
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


# ------------------------------------------------------------------------------ figures
def class_figure(result: Analysis, method: str, classes: int) -> Any:
    """The class tab as a figure with the chosen evidence method (:func:`glmix_vis.figures.class_view`)."""
    from ..figures import class_view as class_view_figure

    check_method(result.loaded, method)
    pred = result.predictor
    masks = [pseudo_mask(result, method, crf) for crf in (False, True)]
    return class_view_figure(pred, method, evidence(result, method), masks, likely_classes(pred, classes))


def view_figure(result: Analysis, view: str, blocks: Sequence[int] | None, block: int | None, method: str,
                classes: int) -> tuple[Any, str]:
    """The figure of the open tab ``view`` and its file name stem."""
    from .. import figures

    n = len(result.loaded.block_names)
    chosen = chosen_blocks(blocks, n)
    if view == TAB_SOFT:
        one = chosen_blocks([block if block is not None else chosen[-1]], n)
        return figures.soft_slot_maps(result.predictor, blocks=one), f"soft_maps_block{one[0]}"
    if view == TAB_CLASSES:
        return class_figure(result, method, classes), f"classes_{method}"
    return figures.slot_grid(result.predictor, blocks=chosen), "slot_groups"
