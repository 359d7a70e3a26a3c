"""Figure layouts of slot maps: the hard slot groups of several blocks (:func:`slot_grid`), the
soft dispatch maps of chosen slots (:func:`soft_slot_maps`), and every slot beside k-medoids
representatives (:func:`representative_slots`).

Each takes a :class:`~glmix_vis.predictor.SlotPredictor` with an image set (one row) or
``(predictor, images)`` (one row per image, or per image and block; see :mod:`.sources`) and
returns a :class:`~glmix_vis.figures.style.PaperFigure` exactly ``width`` wide (a single or
double column) whose height follows from the images' aspect ratios. Images are rendered at the
resolution they will be printed at (``dpi``) and embedded as rasters; titles, outlines and
colourbars stay vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from ..models.slots import SlotMap, block_label, resolve_blocks
from .medoids import representative_slot_ids
from .palette import OKABE_ITO, slot_palette
from .panels import (
    CMAP,
    SMALL,
    Colorbar,
    Frame,
    Panel,
    Row,
    aspect,
    assemble,
    colorbar_margin,
    fit,
    label_margin,
    nice_ceil,
    pixels,
)
from .render import (
    SOFT_SCALE_LABELS,
    apply_colormap,
    heatmap_overlay,
    overlay_slots,
    resize_image,
    soft_map_overlay,
)
from .sources import predictor_rows
from .style import PaperFigure, column_width, figure_style, share_percent, text_width
from .tracking import track_slot_colors

if TYPE_CHECKING:
    from .sources import Source

__all__ = ["representative_slots", "slot_grid", "soft_slot_maps"]

#: Frame colours of representative slots: Okabe-Ito vermillion, sky blue, orange, reddish purple, ...
HIGHLIGHTS = (OKABE_ITO[5], OKABE_ITO[1], OKABE_ITO[0], OKABE_ITO[6], OKABE_ITO[2], OKABE_ITO[3], OKABE_ITO[4])


def _block_title(block: int, m: SlotMap, grid: bool = True) -> tuple[str, ...]:
    """Title candidates, longest first: the block's one name (:func:`block_label`), then shorter forms."""
    s, (h, w), name = m.stage + 1, m.grid, block_label(block, m)
    if not grid:
        return (name, f"block {block}\nstage {s}", f"block {block}", f"b{block}")
    # at most two lines: in a single column a third would take more height than the images
    return (f"{name}, {h}×{w}", f"{name}\n{h}×{w} tokens",
            f"block {block}\nstage {s}, {h}×{w}", f"block {block}\n{h}×{w}", f"b{block}\n{h}×{w}", f"b{block}")


def _block_label(block: int, m: SlotMap, image_name: str | None) -> tuple[str, ...]:
    """Row label candidates; with an image name, on two lines (the margin leaves room for them)."""
    names = (block_label(block, m), f"block {block}", f"b{block}")
    if image_name:
        return tuple(f"{image_name}\n{n}" for n in names)
    return names


def _corner_note(candidates: tuple[str, ...]) -> Callable[[Axes, float], None]:
    def draw(ax: Axes, width: float) -> None:
        text = fit(candidates, width * 0.5, SMALL)
        ax.text(0.97, 0.03, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=SMALL,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.75))
    return draw


# ------------------------------------------------------------------------------ (1) slot grid
def slot_grid(source: Source, blocks: Sequence[int] | int | None = None, *, width: str | float = "double",
              alpha: float = 0.45, boundaries: bool = True, show_counts: bool = False,
              row_labels: Sequence[str] | None = None, input_size: int | None = None,
              dpi: float = 300) -> PaperFigure:
    """Input image, then each selected block's hard slot groups as a colour overlay.

    Colours follow the groups from block to block (:func:`track_slot_colors`), so a reader can
    see which groups persist, split or merge. ``show_counts`` writes in each panel's corner how
    many of the block's slots win at least one pixel. One row per image; columns titled with the block.
    """
    w_in = column_width(width)
    palette = slot_palette()
    rows: list[Row] = []
    grids: set[tuple] = set()
    block_titles: list[tuple[str, ...]] = []
    for r, predictor in enumerate(predictor_rows(source, input_size)):
        chosen = resolve_blocks(predictor.num_glmix_blocks, blocks, default="spread")
        frame = Frame(w_in, left=label_margin() if row_labels else 0.0)
        image = predictor.image
        widths, height = frame.panel_widths([aspect(image)] * (len(chosen) + 1))
        size = pixels(widths[0], aspect(image), dpi)
        shown = resize_image(image, size)
        maps = predictor.maps(chosen)
        hard = [m.hard_upsampled(size)[0].cpu().numpy() for m in maps]
        colors = track_slot_colors(hard, [m.num_slots for m in maps], num_colors=len(palette))
        palette = slot_palette(max(len(palette), max(int(c.max()) + 1 for c in colors)))
        panels = [Panel(shown, ("input",))]
        for m, h, c in zip(maps, hard, colors):
            used = int((m.share()[0] > 0).sum())
            draw = _corner_note((f"{used}/{m.num_slots} slots", f"{used}/{m.num_slots}")) if show_counts else None
            panels.append(Panel(overlay_slots(shown, h, palette[c], alpha, boundaries), (), draw))
        grids.add(tuple(m.grid for m in maps))
        if r == 0:
            block_titles = [_block_title(b, m) for b, m in zip(chosen, maps)]
        label = row_labels[r] if row_labels and r < len(row_labels) else None
        rows.append(Row(panels, widths, height, label))
    if len(grids) > 1:  # images of different shapes: token grids differ per row, leave them out
        block_titles = [_block_title(b, m, grid=False) for b, m in zip(chosen, maps)]
    for panel, titles in zip(rows[0].panels[1:], block_titles):
        panel.titles = titles
    with figure_style():
        return assemble(rows, frame, dpi, titles="first")


# ------------------------------------------------------------------------------ (2) soft maps
def soft_slot_maps(source: Source, blocks: Sequence[int] | int | None = None, slots: Sequence[int] | None = None,
                   *, num_maps: int | None = None, width: str | float = "double", cmap: str = CMAP,
                   alpha: float = 0.7, row_labels: Sequence[str] | None = None, input_size: int | None = None,
                   dpi: float = 300) -> PaperFigure:
    """Dispatch maps ``p(slot | pixel)`` of chosen slots over the image, with a shared colourbar.

    ``slots`` picks the slots (the same for every row); by default each row shows its
    ``num_maps`` slots with the largest share of pixels (5 for a double column, 3 for a single
    one). One row per image and block (default: the last GLMix block). Each map is coloured from the
    uniform weight 1/S to its own peak weight, given in its title
    (:func:`~glmix_vis.figures.render.soft_map_overlay`, the web app's rule too).
    """
    w_in = column_width(width)
    k = len(slots) if slots is not None else (num_maps or (5 if w_in > 5 else 3))
    colorbar = Colorbar(SOFT_SCALE_LABELS, cmap)  # 0: uniform 1/S, 1: each map's own peak
    rows: list[Row] = []
    with figure_style():
        frame = Frame(w_in, left=label_margin(2 if row_labels else 1), right=colorbar_margin(colorbar))
        for r, predictor in enumerate(predictor_rows(source, input_size)):
            chosen = resolve_blocks(predictor.num_glmix_blocks, blocks, default="last")
            image = predictor.image
            widths, height = frame.panel_widths([aspect(image)] * (k + 1))
            size = pixels(widths[0], aspect(image), dpi)
            shown = resize_image(image, size)
            for b, m in zip(chosen, predictor.maps(chosen)):
                share = m.share()[0].cpu().numpy()
                ids = [int(s) for s in slots] if slots is not None else list(np.argsort(-share, kind="stable")[:k])
                for s in ids:
                    if not 0 <= s < m.num_slots:
                        raise ValueError(f"slot {s} does not exist: block {b} has {m.num_slots} slots")
                soft = m.upsample(size)[0].cpu().numpy()[ids]
                peaks = m.dispatch[0].flatten(1).amax(1).cpu().numpy()
                panels = [Panel(shown, ("input",))]
                for s, heat in zip(ids, soft):
                    pct, top = share_percent(share[s]), f"peak {peaks[s]:.2f}"
                    titles = (f"slot {s} · {pct} of pixels · {top}", f"slot {s} · {pct} · {top}",
                              f"slot {s} · {pct}\n{top}", f"slot {s}\n{pct}\n{top}", f"s{s}")
                    panels.append(Panel(soft_map_overlay(shown, heat, peaks[s], cmap, alpha, m.num_slots), titles))
                name = _block_label(b, m, row_labels[r] if row_labels and r < len(row_labels) else None)
                rows.append(Row(panels, widths, height, name))
        return assemble(rows, frame, dpi, titles="all", colorbar=colorbar)


# ------------------------------------------------------------------------------ (3) representatives
def _grid_shape(n: int, ratio: float) -> tuple[int, int]:
    """Rows and columns for ``n`` tiles of aspect ``ratio`` (h / w), as square overall as possible."""
    best = None
    for cols in range(1, n + 1):
        rows_ = math.ceil(n / cols)
        score = abs(math.log(rows_ * ratio / cols)) + 0.3 * (rows_ * cols - n)  # gaps look like missing slots
        if best is None or score < best[0]:
            best = (score, rows_, cols)
    return best[1], best[2]


def _mosaic_corners(tile: tuple[int, int], shape: tuple[int, int], gap: int) -> list[tuple[int, int]]:
    """Top-left ``(y, x)`` of each tile of a row-major mosaic."""
    (th, tw), (_, cols) = tile, shape
    return [(i // cols * (th + gap), i % cols * (tw + gap)) for i in range(shape[0] * cols)]


def _mosaic(tiles: Sequence[np.ndarray], shape: tuple[int, int], gap: int) -> np.ndarray:
    """Same-size tiles on a white canvas, row-major, ``gap`` pixels apart."""
    rows_, cols = shape
    th, tw = tiles[0].shape[:2]
    canvas = np.full((rows_ * th + (rows_ - 1) * gap, cols * tw + (cols - 1) * gap, 3), 255, np.uint8)
    for tile, (y, x) in zip(tiles, _mosaic_corners((th, tw), shape, gap)):
        canvas[y:y + th, x:x + tw] = tile
    return canvas


def _frames(boxes: list[tuple[int, int, int, int]], colors: list[str], labels: list[str] | None = None
            ) -> Callable[[Axes, float], None]:
    def draw(ax: Axes, width: float) -> None:
        for i, ((y, x, h, w), color) in enumerate(zip(boxes, colors)):
            # not clipped: a frame on the panel's edge keeps its full width
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=color, linewidth=1.2,
                                   clip_on=False))
            if labels:
                ax.text(x + 0.5, y + 0.5, labels[i], ha="left", va="top", fontsize=SMALL, color="black",
                        bbox=dict(boxstyle="square,pad=0.15", facecolor=color, edgecolor="none"))
    return draw


def representative_slots(source: Source, blocks: Sequence[int] | int | None = None, k: int = 4, *,
                         by: str = "features", width: str | float = "double", cmap: str = CMAP,
                         alpha: float = 0.65, row_labels: Sequence[str] | None = None,
                         input_size: int | None = None, dpi: float = 300) -> PaperFigure:
    """The input, the dispatch maps of all slots, and ``k`` representatives shown large.

    Representatives are k-medoids over the block's slots (cosine distance between slot
    features, or ``by="dispatch"``: Euclidean distance between dispatch maps, the GLMix
    authors' choice), among the slots that win at least one pixel; each is framed in the same
    colour in the small grid and large. One row per image and block (default: the last).
    """
    if by not in ("features", "dispatch"):
        raise ValueError(f"by must be 'features' or 'dispatch', got {by!r}")
    w_in = column_width(width)
    colorbar = Colorbar(("dispatch weight", "dispatch", "p"), cmap)
    rows: list[Row] = []
    with figure_style():
        frame = Frame(w_in, left=label_margin(2 if row_labels else 1), right=colorbar_margin(colorbar))
        peak = 0.0
        for r, predictor in enumerate(predictor_rows(source, input_size)):
            chosen = resolve_blocks(predictor.num_glmix_blocks, blocks, default="last")
            image = predictor.image
            a = aspect(image)
            for b, m in zip(chosen, predictor.maps(chosen)):
                n = m.num_slots
                kk = min(k, n)
                all_shape, rep_shape = _grid_shape(n, a), _grid_shape(kk, a)
                aspects = [a, a * all_shape[0] / all_shape[1], a * rep_shape[0] / rep_shape[1]]
                widths, height = frame.panel_widths(aspects)
                share = m.share()[0].cpu().numpy()
                feats = m.slots[0].float().cpu().numpy()
                dispatch = m.dispatch[0].cpu().numpy() if by == "dispatch" else None
                ids = representative_slot_ids(feats, kk, share, dispatch)
                colors = [HIGHLIGHTS[i % len(HIGHLIGHTS)] for i in range(kk)]

                shown = resize_image(image, pixels(widths[0], a, dpi))
                tile = pixels(widths[1] / all_shape[1], a, dpi)
                soft_small = m.upsample(tile)[0].cpu().numpy()
                small_gap = max(1, tile[1] // 24)
                corners = _mosaic_corners(tile, all_shape, small_gap)
                boxes = [(*corners[s], *tile) for s in ids]
                big = pixels(widths[2] / rep_shape[1], a, dpi)
                base = resize_image(image, big)
                soft_big = m.upsample(big)[0].cpu().numpy()[ids]
                big_gap = max(2, big[1] // 40)
                rep_boxes = [(*c, *big) for c in _mosaic_corners(big, rep_shape, big_gap)]
                peak = max(peak, float(soft_small.max()), float(soft_big.max()))

                def small_mosaic(vmax: float, maps: np.ndarray = soft_small, shape: tuple = all_shape,
                                 gap: int = small_gap) -> np.ndarray:
                    return _mosaic([apply_colormap(t / vmax, cmap) for t in maps], shape, gap)

                def big_mosaic(vmax: float, maps: np.ndarray = soft_big, base: np.ndarray = base,
                               shape: tuple = rep_shape, gap: int = big_gap) -> np.ndarray:
                    return _mosaic([heatmap_overlay(base, t / vmax, cmap, alpha) for t in maps], shape, gap)

                labels = [f"slot {s} · {share_percent(share[s])}" for s in ids]
                if text_width(labels[0], SMALL) > widths[2] / rep_shape[1] * 0.9:
                    labels = [f"{s}" for s in ids]
                panels = [
                    Panel(shown, ("input",)),
                    Panel(small_mosaic, (f"all {n} slots", f"{n} slots"), _frames(boxes, colors)),
                    Panel(big_mosaic, (f"{kk} representatives (k-medoids)", f"{kk} representatives", f"k={kk}"),
                           _frames(rep_boxes, colors, labels)),
                ]
                name = _block_label(b, m, row_labels[r] if row_labels and r < len(row_labels) else None)
                rows.append(Row(panels, widths, height, name))
        colorbar.vmax = nice_ceil(peak)
        return assemble(rows, frame, dpi, titles="all", colorbar=colorbar)

