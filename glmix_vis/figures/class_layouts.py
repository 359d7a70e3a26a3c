"""Figure layouts of class evidence and pseudo-masks.

* :func:`method_comparison`: one row per image, one column per mask recipe (``"cam"``,
  ``"slot-cam+slot-walk+crf"``), optionally after the ground truth and the class evidence of
  chosen methods: the one drawing path of evidence and masks side by side;
* :func:`evidence_panel`: its preset of CAM and slot-CAM evidence with their pseudo-masks;
* :func:`class_view`: one method's view of classes the caller computed (the web app's class tab).

Every mask, evidence map and threshold these layouts draw comes from the predictor through
:mod:`.recipes`. Sources and sizes as in :mod:`.slot_layouts`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes

from ..data.palette import voc_palette
from .layouts import DEFAULT_COMPARISON
from .panels import CMAP, GAP, Colorbar, Frame, Legend, Panel, Row, aspect, assemble, label_margin, pixels
from .recipes import recipe_evidence, recipe_mask, recipe_threshold
from .render import heatmap_overlay, mask_overlay, resize_image, resize_labels
from .sources import predictor_rows
from .style import PaperFigure, column_width, figure_style

if TYPE_CHECKING:
    from ..predictor import SlotPredictor
    from ..wsss.recipe import MaskRecipe
    from .sources import Source

__all__ = ["class_view", "evidence_panel", "method_comparison", "segmentation_panel"]


# ------------------------------------------------------------------------------ checks and labels
def _needs_head(predictor: SlotPredictor) -> None:
    if not predictor.info.foreground_names:
        raise ValueError(f"{predictor.info.name} has no classification head: class evidence and "
                         f"pseudo-masks need one (use slot_grid or soft_slot_maps)")


def _target_index(target: str | int, names: Sequence[str]) -> int:
    if isinstance(target, str):
        if target not in names:
            raise ValueError(f"unknown class {target!r}: the model's classes are {', '.join(names)}")
        return list(names).index(target)
    if not 0 <= target < len(names):
        raise ValueError(f"class index {target} out of range: the model has {len(names)} foreground classes")
    return int(target)


def _threshold_note(thresholds: dict[str, float]) -> str:
    """``0.4``, or ``0.5 (CAM), 0.6 (slot-CAM)`` when the methods' thresholds differ."""
    values = set(thresholds.values())
    if len(values) == 1:
        return f"{values.pop():g}"
    from ..wsss.recipe import METHOD_TITLES

    return ", ".join(f"{t:g} ({METHOD_TITLES.get(m, m)})" for m, t in thresholds.items())


def _comparison_labels(predictor: SlotPredictor, gt: np.ndarray | None, target: str | int | None) -> np.ndarray | None:
    """Multi-hot foreground labels for one row of :func:`method_comparison` (``None``: the head's)."""
    k = len(predictor.info.foreground_names)
    if gt is not None:
        if gt.shape[:2] != predictor.image.shape[:2]:
            raise ValueError(f"the ground truth is {gt.shape[1]}x{gt.shape[0]} but the image is "
                             f"{predictor.image.shape[1]}x{predictor.image.shape[0]}")
        values = [int(v) for v in np.unique(gt) if 0 < v < 255]
        if any(v > k for v in values):
            raise ValueError(f"the ground truth has class {max(values)} but the model has {k} foreground classes")
        labels = np.zeros(k, np.float32)
        labels[[v - 1 for v in values]] = 1.0
        return labels
    if target is not None:
        labels = np.zeros(k, np.float32)
        labels[_target_index(target, predictor.info.foreground_names)] = 1.0
        return labels
    return None


def _shown_class(scores: np.ndarray, labels: np.ndarray) -> int | None:
    """The class whose evidence a row shows: the most probable of the allowed classes; ``None`` when
    none is allowed (a photo with no object of the model's classes: nothing is named or drawn)."""
    if not labels.any():
        return None
    return int(np.argmax(np.where(labels > 0, scores, -np.inf)))


# ------------------------------------------------------------------------------ methods side by side
def _parse(recipes: Sequence[MaskRecipe | str]) -> tuple[MaskRecipe, ...]:
    from ..wsss.recipe import MaskRecipe

    return tuple(r if isinstance(r, MaskRecipe) else MaskRecipe.parse(r) for r in recipes)


@dataclass(frozen=True)
class _Columns:
    """What each image of :func:`method_comparison` shows, and how."""

    recipes: tuple[MaskRecipe, ...]  # one mask each
    evidence: tuple[MaskRecipe, ...]  # one heatmap each, of the row's shown class
    target: str | int | None
    bg_threshold: float | None
    contours: bool
    cmap: str
    alpha: float

    def count(self, with_truth: bool) -> int:
        return 1 + int(with_truth) + len(self.evidence) + len(self.recipes)


@dataclass
class _Tally:
    """What the rows leave for the legend: the classes painted, the thresholds used, head notes."""

    class_names: list[str] = field(default_factory=list)
    present: set[int] = field(default_factory=set)
    thresholds: dict[str, float] = field(default_factory=dict)
    head_notes: list[str] = field(default_factory=list)


def method_comparison(source: Source, recipes: Sequence[MaskRecipe | str] = DEFAULT_COMPARISON, *,
                      evidence: Sequence[MaskRecipe | str] = (), target: str | int | None = None,
                      ground_truth: Sequence[np.ndarray | None] | None = None, bg_threshold: float | None = None,
                      contours: bool = False,
                      width: str | float = "double", cmap: str = CMAP, alpha: float = 0.6, rows_per_image: int = 1,
                      row_labels: Sequence[str] | None = None, input_size: int | None = None,
                      dpi: float = 300) -> PaperFigure:
    """Pseudo-masks of several methods (and refinements) side by side: one image per row, one
    column per recipe (:class:`~glmix_vis.wsss.recipe.MaskRecipe`, e.g. ``"slot-cam+slot-walk+crf"``).

    The classes a mask may use are, per row: the ground truth's classes when ``ground_truth`` gives
    that row's ``(H, W)`` label mask (shown as a column after the input; 255 is void), as the WSSS
    protocol does; else only ``target`` (a class name or foreground index) when given; else the
    classes the head sees. Each method uses its background threshold (``bg_threshold``, default
    the model's tuned value per method, else IRN's 0.15).

    ``evidence`` adds, before the masks, a heatmap per recipe (``method[+refinement]``: the
    evidence its mask thresholds) of the row's most probable allowed class, named in the input's
    title; ``contours`` outlines where it crosses the threshold. A recipe's test-time augmentation
    (``MaskRecipe.parse("slot-cam+crf", scales=(1.0, 0.5, 1.5), flip=True)``) is its column's.
    ``rows_per_image`` wraps each image's panels onto that many rows.
    """
    cols = _Columns(_parse(recipes), _parse(evidence), target, bg_threshold, contours, cmap, alpha)
    if not cols.recipes:
        raise ValueError("give at least one method, e.g. ['cam', 'slot-cam+crf']")
    if any(e.crf for e in cols.evidence):
        raise ValueError("an evidence column is method[+refinement]: the CRF makes a mask, not evidence")
    tally = _Tally()
    rows: list[Row] = []
    firsts: list[int] = []  # each image's first row
    with figure_style():
        frame = Frame(column_width(width), left=label_margin() if row_labels else 0.0)
        for r, predictor in enumerate(predictor_rows(source, input_size)):
            gt = ground_truth[r] if ground_truth is not None and r < len(ground_truth) else None
            label = row_labels[r] if row_labels and r < len(row_labels) else None
            n = cols.count(gt is not None)
            per_row = math.ceil(n / max(1, rows_per_image))
            ratio = aspect(predictor.image)
            widths, height = frame.panel_widths([ratio] * per_row)
            panels = _comparison_panels(predictor, cols, gt, pixels(widths[0], ratio, dpi), tally,
                                        label or f"image {r + 1}")
            firsts.append(len(rows))
            rows += [Row(panels[s:s + per_row], widths[:len(panels[s:s + per_row])], height, None if s else label)
                     for s in range(0, n, per_row)]
        # titles on every row when they differ from row to row (the class shown, wrapped panels,
        # a ground truth on some rows only); then a gap keeps each image's titles with it
        every_row = bool(cols.evidence) or len({tuple(p.titles for p in row.panels) for row in rows}) > 1
        for i in firsts[1:] if every_row else ():
            rows[i].space_before = GAP * 3
        return assemble(rows, frame, dpi, titles="all" if every_row else "first", legend=_comparison_legend(cols, tally))


def _comparison_panels(predictor: SlotPredictor, cols: _Columns, gt: np.ndarray | None, size: tuple[int, int],
                       tally: _Tally, row_name: str) -> list[Panel]:
    """One image's panels: input, ground truth, evidence heatmaps, masks."""
    _needs_head(predictor)
    names = tally.class_names = predictor.info.class_names
    voc = voc_palette()
    shown = resize_image(predictor.image, size)
    labels = _comparison_labels(predictor, gt, cols.target)
    panels = [Panel(shown, ("input",))]
    if cols.evidence:
        scores = predictor.class_scores()
        top = _shown_class(scores, predictor.predicted_labels() if labels is None else labels)
        name, score = ("no class", "") if top is None else (names[top + 1], f" ({scores[top]:.2f})")
        how = "predicted " if labels is None else ""
        panels = [Panel(shown, (f"input · {how}{name}{score}", f"input · {name}{score}", f"{name}{score}", name))]
    if gt is not None:
        gt_mask = np.where(gt == 255, 0, gt).astype(np.uint8)
        tally.present.update(int(v) for v in np.unique(gt_mask) if v > 0)
        panels.append(Panel(mask_overlay(shown, resize_labels(gt_mask, size), voc), ("ground truth", "GT")))
    for recipe in cols.evidence:
        heat = np.zeros(predictor.image_size, np.float32) if top is None else recipe_evidence(predictor, recipe, labels)[top]
        draw = None
        if cols.contours:
            draw = _threshold_contour(heat, recipe_threshold(predictor, recipe, cols.bg_threshold), size)
        panels.append(Panel(heatmap_overlay(shown, heat, cols.cmap, cols.alpha),
                            (f"{recipe.title} · {name}", recipe.title), draw))
    for recipe in cols.recipes:
        if recipe.is_segmenter:  # a segmenter's argmax: no threshold, no labels
            mask = recipe_mask(predictor, recipe, labels, None)
        else:
            threshold = tally.thresholds[recipe.method] = recipe_threshold(predictor, recipe, cols.bg_threshold)
            mask = recipe_mask(predictor, recipe, labels, threshold)
        tally.present.update(int(v) for v in np.unique(mask) if 0 < v < 255)
        panels.append(Panel(mask_overlay(shown, resize_labels(mask, size), voc), _mask_titles(recipe, cols.evidence)))
    if cols.evidence and predictor.info.head_names:  # an ImageNet head: what it sees, and the class each feeds
        top3 = predictor.top_predictions(3, min_score=0.01)
        tally.head_notes.append(f"{row_name}: " + ", ".join(str(p) for p in top3))
    return panels


def _mask_titles(recipe: MaskRecipe, beside_evidence: Sequence[MaskRecipe]) -> tuple[str, ...]:
    """Title candidates of a mask column; beside evidence heatmaps it says that it is a mask."""
    title = recipe.title
    stacked = title.replace(" + ", "\n+ ")
    if not beside_evidence:
        return title, stacked, recipe.name
    return f"mask · {title}", stacked if stacked != title else f"{title}\nmask", recipe.name


def _threshold_contour(heat: np.ndarray, threshold: float, size: tuple[int, int]) -> Callable[[Axes, float], None]:
    """Vector marks: where ``heat`` (at the image's size) crosses ``threshold``, over a panel of ``size``."""
    def draw(ax: Axes, width: float) -> None:
        if not heat.min() < threshold < heat.max():
            return
        h, w = heat.shape
        ys = (np.arange(h) + 0.5) * size[0] / h - 0.5  # pixel centres in the panel's raster
        xs = (np.arange(w) + 0.5) * size[1] / w - 0.5
        limits = ax.get_xlim(), ax.get_ylim()
        ax.contour(xs, ys, heat, levels=[threshold], colors="white", linewidths=0.6)
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
    return draw


def _comparison_legend(cols: _Columns, tally: _Tally) -> Legend:
    voc = voc_palette()
    items = [(voc[c], tally.class_names[c]) for c in sorted(tally.present) if c < len(tally.class_names)]
    note = ("background: evidence < " + _threshold_note(tally.thresholds) if tally.thresholds
            else "background: the segmenter's own class") + ("" if items else "; no foreground in the masks")
    colorbar = Colorbar("class evidence", cols.cmap, horizontal=True) if cols.evidence else None
    return Legend(items, colorbar, notes=[note, *tally.head_notes])


# ------------------------------------------------------------------------------ CAM and slot-CAM
def segmentation_panel(source: Source, **layout: Any) -> PaperFigure:
    """A segmenter's own prediction (``glmix-wsss train-seg``: the argmax over every class, no image
    labels), without and with the dense CRF: a preset of :func:`method_comparison` (its layout
    keywords pass through). Slot maps of the same model: ``slot_grid``."""
    return method_comparison(source, ("seg", "seg+crf"), **layout)


def evidence_panel(source: Source, *, target: str | int | None = None, crf: bool = True,
                   bg_threshold: float | None = None, width: str | float = "double", cmap: str = CMAP,
                   alpha: float = 0.6, row_labels: Sequence[str] | None = None, input_size: int | None = None,
                   dpi: float = 300) -> PaperFigure:
    """Class evidence and the pseudo-masks made from it: a preset of :func:`method_comparison`.

    Panels: input, CAM and slot-CAM heatmaps of one class (``target``: a class name or
    foreground index; default: each image's top predicted class), then pseudo-masks (predicted
    classes; ``bg_threshold``, default: the model's tuned threshold per method, else IRN's 0.15)
    from CAM, slot-CAM and slot-CAM refined by a dense CRF (``crf``). Masks use the VOC palette
    with background left unpainted; a legend names the classes. A double column puts one image
    per row; a single column wraps to two rows.
    """
    masks = ["cam", "slot-cam"] + (["slot-cam+crf"] if crf else [])
    return method_comparison(source, masks, evidence=("cam", "slot-cam"), target=target, bg_threshold=bg_threshold,
                             width=width, cmap=cmap, alpha=alpha, rows_per_image=1 if column_width(width) >= 5 else 2,
                             row_labels=row_labels, input_size=input_size, dpi=dpi)


# ------------------------------------------------------------------------------ one method's class view
def class_view(predictor: SlotPredictor, method: str, evidence: np.ndarray, masks: Sequence[np.ndarray],
               classes: Sequence[int], *, mask_titles: Sequence[str] = ("pseudo-mask", "+ dense CRF"),
               width: str | float = "double", cmap: str = CMAP, alpha: float = 0.6, dpi: float = 300) -> PaperFigure:
    """One evidence method's view of the predictor's image (the web app's classes tab as a figure;
    :func:`evidence_panel` compares CAM and slot-CAM instead).

    Panels: the input, ``method``'s evidence (``(K, H, W)`` in [0, 1]) of each foreground class in
    ``classes``, then each mask in ``masks`` (0 = background) titled by ``mask_titles``; a legend
    names the mask classes and the background threshold.
    """
    names = predictor.info.class_names
    scores = predictor.class_scores()
    image = predictor.image
    voc = voc_palette()
    frame = Frame(column_width(width))
    widths, height = frame.panel_widths([aspect(image)] * (1 + len(classes) + len(masks)))
    size = pixels(widths[0], aspect(image), dpi)
    shown = resize_image(image, size)
    seen = "" if classes else " · no class seen"  # nothing above the head's threshold: no evidence column
    panels = [Panel(shown, (f"input{seen}\n{predictor.info.name}", f"input{seen}", "input"))]
    panels += [Panel(heatmap_overlay(shown, evidence[k], cmap, alpha),
                     (f"{method} evidence\n{names[k + 1]} (p={scores[k]:.2f})", f"{names[k + 1]}\np={scores[k]:.2f}"))
               for k in classes]
    panels += [Panel(mask_overlay(shown, resize_labels(mask, size), voc), (f"{title}\n({method})", title))
               for mask, title in zip(masks, mask_titles)]
    present = sorted({int(v) for m in masks for v in np.unique(m) if 0 < v < len(names)})
    note = f"background: evidence < {recipe_threshold(predictor, _parse([method])[0], None):g}"
    legend = Legend([(voc[c], names[c]) for c in present], Colorbar(f"{method} evidence", cmap, horizontal=True),
                    notes=[note])
    with figure_style():
        return assemble([Row(panels, widths, height)], frame, dpi, titles="first", legend=legend)
