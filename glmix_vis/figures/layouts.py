"""Publication figures of slot maps and class evidence, as matplotlib Figures.

Each layout takes either a :class:`~glmix_vis.predictor.SlotPredictor` with an image set (one
row) or ``(predictor, images)`` (one row per image, or per image and block), and returns a
:class:`~glmix_vis.figures.style.PaperFigure` exactly ``width`` wide (a single or double
column) whose height follows from the images' aspect ratios. Images are rendered at the
resolution they will be printed at (``dpi``) and embedded as rasters; titles, outlines and
colourbars stay vector.

Note that ``(predictor, images)`` runs ``set_image`` on each image: afterwards the predictor
holds the last one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from ..data.palette import voc_palette
from ..models.slots import SlotMap, block_label, resolve_blocks
from ..wsss.recipe import MaskRecipe
from .medoids import representative_slot_ids
from .palette import OKABE_ITO, slot_palette
from .render import (
    SOFT_SCALE_LABELS,
    apply_colormap,
    heatmap_overlay,
    mask_overlay,
    overlay_slots,
    resize_image,
    resize_labels,
    soft_map_overlay,
)
from .style import FONT_SIZE, PaperFigure, column_width, figure_style, text_width
from .tracking import track_slot_colors

if TYPE_CHECKING:
    from PIL import Image

    from ..predictor import SlotPredictor

    ImageLike = str | Path | np.ndarray | Image.Image
    #: A predictor with an image set, or a predictor and the images to run it on (one row each).
    Source = SlotPredictor | tuple[SlotPredictor, Iterable[ImageLike]]

__all__ = ["class_view", "evidence_panel", "method_comparison", "representative_slots", "slot_grid", "soft_slot_maps"]

CMAP = "viridis"
GAP = 0.03  # inches between panels
TITLE_PAD = 0.025  # inches between a title and its panel
LINE = FONT_SIZE * 1.2 / 72  # one line of text, inches
SMALL = FONT_SIZE - 1
BAR = 0.07  # colourbar thickness, inches
LEGEND_BAR = 0.8  # length of the legend's horizontal colourbar
PATCH = 0.11  # legend colour swatch
PITCH = LINE * 1.15  # legend line spacing
#: Frame colours of representative slots: Okabe-Ito vermillion, sky blue, orange, reddish purple, ...
HIGHLIGHTS = (OKABE_ITO[5], OKABE_ITO[1], OKABE_ITO[0], OKABE_ITO[6], OKABE_ITO[2], OKABE_ITO[3], OKABE_ITO[4])


# ------------------------------------------------------------------------------ panel geometry
@dataclass
class _Panel:
    image: np.ndarray | Callable[[float], np.ndarray]  # or a renderer taking the colour scale's maximum
    titles: tuple[str, ...] = ()  # candidates, most informative first; the first that fits is used
    draw: Callable[[Axes, float], None] | None = None  # extra vector marks (axes, panel width in inches)


@dataclass
class _Row:
    panels: list[_Panel]
    widths: list[float]  # inches
    height: float  # inches
    label: str | tuple[str, ...] | None = None  # rotated on the left; candidates, longest first
    space_before: float = 0.0  # extra inches above the row (separates images that wrap onto two rows)


@dataclass
class _Frame:
    """Horizontal geometry shared by all rows: figure width, margins and gaps, in inches."""

    width: float
    left: float = 0.0
    right: float = 0.0

    def panel_widths(self, aspects: Sequence[float]) -> tuple[list[float], float]:
        """Widths of panels with aspect ratios ``h / w`` sharing one height that fills the row."""
        avail = self.width - self.left - self.right - GAP * (len(aspects) - 1)
        height = avail / sum(1.0 / a for a in aspects)
        return [height / a for a in aspects], height


@dataclass
class _Colorbar:
    label: str | tuple[str, ...]  # candidates, longest first: the first that fits along the bar
    cmap: str = CMAP
    vmax: float = 1.0
    horizontal: bool = False

    @property
    def ticks(self) -> tuple[float, ...]:
        return (0.0, self.vmax / 2, self.vmax)


def _nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 4, 5, 6, 8 x 10^k at least ``x``: a colourbar end whose half reads well."""
    if not x > 0:
        return 1.0
    exp = math.floor(math.log10(x))
    for step in (1, 2, 4, 5, 6, 8, 10):
        if step * 10.0**exp >= x * (1 - 1e-9):
            return min(1.0, step * 10.0**exp)
    return 1.0


@dataclass
class _Legend:
    items: list[tuple[np.ndarray, str]] = field(default_factory=list)  # (RGB uint8, name)
    colorbar: _Colorbar | None = None
    notes: list[str] = field(default_factory=list)  # grey text entries after the classes


def _fit(candidates: Sequence[str], width: float, size: float = FONT_SIZE) -> str:
    for text in candidates:
        if text_width(text, size) <= width:
            return text
    return candidates[-1] if candidates else ""


def _colorbar_margin(cb: _Colorbar) -> float:
    ticks = text_width("0.025", SMALL)  # the widest tick label _nice_ceil can lead to
    return GAP * 2 + BAR + 0.03 + ticks + 0.04 + LINE


def _label_margin(lines: int = 1) -> float:
    return lines * LINE + GAP


def _first(label: str | tuple[str, ...]) -> str:
    return label if isinstance(label, str) else label[0]


def _fit_label(label: str | tuple[str, ...], length: float) -> str:
    candidates = (label,) if isinstance(label, str) else label
    for text in candidates:
        if text_width(text) <= length:
            return text
    return _shorten(candidates[-1], length)


def _shorten(text: str, length: float, size: float = FONT_SIZE) -> str:
    """Cut every line of ``text`` that is longer than ``length`` inches, with an ellipsis."""
    lines = []
    for line in text.split("\n"):
        if text_width(line, size) > length:
            while len(line) > 4 and text_width(line + "…", size) > length:
                line = line[:-1]
            line += "…"
        lines.append(line)
    return "\n".join(lines)


@dataclass
class _LegendPlan:
    bar_x: float  # where the colourbar starts (after its label)
    places: list[tuple[float, int]]  # (x, line) of each entry
    height: float


def _legend_layout(legend: _Legend, width: float) -> _LegendPlan:
    """Where the colourbar (with its label on the left) and the class entries go."""
    bar_x = x0 = GAP
    if legend.colorbar is not None:
        bar_x = GAP + text_width(_first(legend.colorbar.label)) + 0.05
        x0 = bar_x + LEGEND_BAR + 0.2
    x, line, places = x0, 0, []
    entries = [name for _, name in legend.items] + legend.notes
    for name in entries:
        w = PATCH + 0.04 + text_width(name)
        if x + w > width and x > x0:
            x, line = x0, line + 1
        places.append((x, line))
        x += w + 0.15
    height = (line + 1) * PITCH
    if legend.colorbar is not None:
        height = max(height, PITCH / 2 + BAR / 2 + 0.02 + SMALL * 1.25 / 72)
    return _LegendPlan(bar_x, places, height + GAP * 3)


def _assemble(rows: list[_Row], frame: _Frame, dpi: float, titles: str = "all",
              colorbar: _Colorbar | None = None, legend: _Legend | None = None) -> PaperFigure:
    """Place the rows top to bottom; ``titles``: "all" rows, the "first" row, or "none"."""
    vmax = colorbar.vmax if colorbar is not None else 1.0
    layout: list[tuple[float, list[str]]] = []  # (top of the panels, titles) per row, inches from the top
    y = 0.0
    for r, row in enumerate(rows):
        texts = []
        if titles == "all" or (titles == "first" and r == 0):
            texts = [_fit(p.titles, w - 0.02) for p, w in zip(row.panels, row.widths)]
        lines = max((t.count("\n") + 1 for t in texts if t), default=0)
        y += row.space_before + lines * LINE + (TITLE_PAD if lines else 0.0) + (GAP if r and not lines else 0.0)
        layout.append((y, texts))
        y += row.height
    plan = _legend_layout(legend, frame.width) if legend is not None else None
    bottom = plan.height if plan else (SMALL / 72 / 2 + 0.01 if colorbar else 0.0)
    total = y + bottom
    fig = PaperFigure(figsize=(frame.width, total), export_dpi=dpi)

    def rect(x: float, top: float, w: float, h: float) -> list[float]:
        return [x / frame.width, 1.0 - (top + h) / total, w / frame.width, h / total]

    for row, (top, texts) in zip(rows, layout):
        x = frame.left
        for i, (panel, w) in enumerate(zip(row.panels, row.widths)):
            ax = fig.add_axes(rect(x, top, w, row.height))
            image = panel.image(vmax) if callable(panel.image) else panel.image
            ax.imshow(image, interpolation="antialiased", aspect="auto")
            ax.set_axis_off()
            if i < len(texts) and texts[i]:
                ax.text(0.5, 1.0 + TITLE_PAD / row.height, texts[i], transform=ax.transAxes, ha="center",
                        va="bottom", fontsize=FONT_SIZE, linespacing=1.0)
            if panel.draw is not None:
                panel.draw(ax, w)
            x += w + GAP
        if row.label:
            fig.text((frame.left - GAP) / 2 / frame.width, 1.0 - (top + row.height / 2) / total,
                     _fit_label(row.label, row.height), rotation=90, ha="center", va="center", fontsize=FONT_SIZE)
    if colorbar is not None:
        first_top = layout[0][0]
        span = layout[-1][0] + rows[-1].height - first_top
        if span > 3.0:  # a tall stack of rows: a bar beside the first row is enough
            span = rows[0].height
        cax = fig.add_axes(rect(frame.width - frame.right + GAP * 2, first_top, BAR, span))
        _draw_colorbar(fig, cax, colorbar)
    if legend is not None and plan is not None:
        _draw_legend(fig, legend, plan, y + GAP * 3, total, frame.width)
    return fig


def _draw_colorbar(fig: PaperFigure, cax: Axes, cb: _Colorbar, with_label: bool = True) -> None:
    mappable = ScalarMappable(norm=Normalize(0.0, cb.vmax), cmap=cb.cmap)
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal" if cb.horizontal else "vertical",
                       ticks=list(cb.ticks))
    bar.outline.set_linewidth(0.5)
    bar.ax.tick_params(labelsize=SMALL, length=2, width=0.5, pad=1.5)
    axis = bar.ax.xaxis if cb.horizontal else bar.ax.yaxis
    axis.set_ticklabels([f"{t:g}" for t in cb.ticks])
    if with_label:
        length = cax.get_position().width * fig.get_figwidth() if cb.horizontal else \
            cax.get_position().height * fig.get_figheight()
        bar.set_label(_fit_label(cb.label, length), fontsize=FONT_SIZE, labelpad=2)
    bar.solids.set_rasterized(True)


def _draw_legend(fig: PaperFigure, legend: _Legend, plan: _LegendPlan, top: float, total: float,
                 width: float) -> None:
    def fy(y: float) -> float:
        return 1.0 - y / total

    if legend.colorbar is not None:
        yc = top + PITCH / 2
        fig.text(GAP / width, fy(yc), _first(legend.colorbar.label), ha="left", va="center", fontsize=FONT_SIZE)
        cax = fig.add_axes([plan.bar_x / width, fy(yc + BAR / 2), LEGEND_BAR / width, BAR / total])
        _draw_colorbar(fig, cax, legend.colorbar, with_label=False)
    names = [name for _, name in legend.items] + legend.notes
    colors = [rgb for rgb, _ in legend.items] + [None] * len(legend.notes)
    for (x, line), name, rgb in zip(plan.places, names, colors):
        yc = top + (line + 0.5) * PITCH
        if rgb is None:  # a note: grey text, no patch
            fig.text(x / width, fy(yc), name, ha="left", va="center", fontsize=FONT_SIZE, color="0.35")
            continue
        ax = fig.add_axes([x / width, fy(yc + PATCH / 2), PATCH / width, PATCH / total])
        ax.add_patch(Rectangle((0, 0), 1, 1, facecolor=np.asarray(rgb) / 255.0, edgecolor="0.3", linewidth=0.4))
        ax.set_axis_off()
        fig.text((x + PATCH + 0.04) / width, fy(yc), name, ha="left", va="center", fontsize=FONT_SIZE)


# ------------------------------------------------------------------------------ inputs
def _rows_of(source: Source, input_size: int | None) -> Iterator[SlotPredictor]:
    """The predictor, once per image (running ``set_image`` when images are given)."""
    if isinstance(source, tuple | list) and len(source) == 2 and hasattr(source[0], "set_image"):
        predictor, images = source
        if isinstance(images, str | Path | np.ndarray) or not isinstance(images, Iterable):
            images = [images]  # one image, not a list of them
        count = 0
        for image in images:  # any iterable: a list, or a tqdm progress bar over one
            predictor.set_image(image, input_size=input_size)
            count += 1
            yield predictor
        if count == 0:
            raise ValueError("no images given")
        return
    if not hasattr(source, "set_image"):
        raise TypeError("expected a SlotPredictor or (predictor, images)")
    if source.output is None:
        raise ValueError("the predictor has no image: call set_image() first, or pass (predictor, images)")
    if input_size is not None:
        source.set_image(source.image, input_size=input_size)
    yield source


def _pixels(width_in: float, aspect: float, dpi: float) -> tuple[int, int]:
    w = max(8, int(math.ceil(width_in * dpi)))
    return max(8, int(round(w * aspect))), w


def _aspect(image: np.ndarray) -> float:
    return image.shape[0] / image.shape[1]


def _block_title(block: int, m: SlotMap, grid: bool = True) -> tuple[str, ...]:
    """Title candidates, longest first: the block's one name (:func:`block_label`), then shorter forms."""
    s, (h, w), name = m.stage + 1, m.grid, block_label(block, m)
    if not grid:
        return (name, f"block {block}\nstage {s}", f"block {block}", f"b{block}")
    # at most two lines: in a single column a third would take more height than the images
    return (f"{name}, {h}×{w}", f"{name}\n{h}×{w} tokens",
            f"block {block}\nstage {s}, {h}×{w}", f"block {block}\n{h}×{w}", f"b{block}\n{h}×{w}", f"b{block}")


def _percent(x: float) -> str:
    """A share as a percentage that never rounds a visible slot down to "0%"."""
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"


def _block_label(block: int, m: SlotMap, image_name: str | None) -> tuple[str, ...]:
    """Row label candidates; with an image name, on two lines (the margin leaves room for them)."""
    names = (block_label(block, m), f"block {block}", f"b{block}")
    if image_name:
        return tuple(f"{image_name}\n{n}" for n in names)
    return names


def _corner_note(candidates: tuple[str, ...]) -> Callable[[Axes, float], None]:
    def draw(ax: Axes, width: float) -> None:
        text = _fit(candidates, width * 0.5, SMALL)
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
    rows: list[_Row] = []
    grids: set[tuple] = set()
    block_titles: list[tuple[str, ...]] = []
    for r, predictor in enumerate(_rows_of(source, input_size)):
        chosen = resolve_blocks(predictor.num_glmix_blocks, blocks, default="spread")
        frame = _Frame(w_in, left=_label_margin() if row_labels else 0.0)
        image = predictor.image
        widths, height = frame.panel_widths([_aspect(image)] * (len(chosen) + 1))
        size = _pixels(widths[0], _aspect(image), dpi)
        shown = resize_image(image, size)
        maps = predictor.maps(chosen)
        hard = [m.hard_upsampled(size)[0].cpu().numpy() for m in maps]
        colors = track_slot_colors(hard, [m.num_slots for m in maps], num_colors=len(palette))
        palette = slot_palette(max(len(palette), max(int(c.max()) + 1 for c in colors)))
        panels = [_Panel(shown, ("input",))]
        for m, h, c in zip(maps, hard, colors):
            used = int((m.share()[0] > 0).sum())
            draw = _corner_note((f"{used}/{m.num_slots} slots", f"{used}/{m.num_slots}")) if show_counts else None
            panels.append(_Panel(overlay_slots(shown, h, palette[c], alpha, boundaries), (), draw))
        grids.add(tuple(m.grid for m in maps))
        if r == 0:
            block_titles = [_block_title(b, m) for b, m in zip(chosen, maps)]
        label = row_labels[r] if row_labels and r < len(row_labels) else None
        rows.append(_Row(panels, widths, height, label))
    if len(grids) > 1:  # images of different shapes: token grids differ per row, leave them out
        block_titles = [_block_title(b, m, grid=False) for b, m in zip(chosen, maps)]
    for panel, titles in zip(rows[0].panels[1:], block_titles):
        panel.titles = titles
    with figure_style():
        return _assemble(rows, frame, dpi, titles="first")


# ------------------------------------------------------------------------------ (2) soft maps
def soft_slot_maps(source: Source, blocks: Sequence[int] | int | None = None, slots: Sequence[int] | None = None,
                   *, num_maps: int | None = None, width: str | float = "double", cmap: str = CMAP,
                   alpha: float = 0.7, row_labels: Sequence[str] | None = None, input_size: int | None = None,
                   dpi: float = 300) -> PaperFigure:
    """Dispatch maps ``p(slot | pixel)`` of chosen slots over the image, with a shared colourbar.

    ``slots`` picks the slots (the same for every row); by default each row shows its
    ``num_maps`` slots with the largest share of pixels (5 for a double column, 3 for a single
    one). One row per image and block (default: the last GLMix block). Each map is coloured from 0
    to its own peak weight, given in its title (:func:`~glmix_vis.figures.render.soft_map_overlay`,
    the web app's rule too).
    """
    w_in = column_width(width)
    k = len(slots) if slots is not None else (num_maps or (5 if w_in > 5 else 3))
    colorbar = _Colorbar(SOFT_SCALE_LABELS, cmap)  # 0 to 1 of each map's own peak
    rows: list[_Row] = []
    with figure_style():
        frame = _Frame(w_in, left=_label_margin(2 if row_labels else 1), right=_colorbar_margin(colorbar))
        for r, predictor in enumerate(_rows_of(source, input_size)):
            chosen = resolve_blocks(predictor.num_glmix_blocks, blocks, default="last")
            image = predictor.image
            widths, height = frame.panel_widths([_aspect(image)] * (k + 1))
            size = _pixels(widths[0], _aspect(image), dpi)
            shown = resize_image(image, size)
            for b, m in zip(chosen, predictor.maps(chosen)):
                share = m.share()[0].cpu().numpy()
                ids = [int(s) for s in slots] if slots is not None else list(np.argsort(-share, kind="stable")[:k])
                for s in ids:
                    if not 0 <= s < m.num_slots:
                        raise ValueError(f"slot {s} does not exist: block {b} has {m.num_slots} slots")
                soft = m.upsample(size)[0].cpu().numpy()[ids]
                peaks = m.dispatch[0].flatten(1).amax(1).cpu().numpy()
                panels = [_Panel(shown, ("input",))]
                for s, heat in zip(ids, soft):
                    pct, top = _percent(share[s]), f"peak {peaks[s]:.2f}"
                    titles = (f"slot {s} · {pct} of pixels · {top}", f"slot {s} · {pct} · {top}",
                              f"slot {s} · {pct}\n{top}", f"slot {s}\n{pct}\n{top}", f"s{s}")
                    panels.append(_Panel(soft_map_overlay(shown, heat, peaks[s], cmap, alpha), titles))
                name = _block_label(b, m, row_labels[r] if row_labels and r < len(row_labels) else None)
                rows.append(_Row(panels, widths, height, name))
        return _assemble(rows, frame, dpi, titles="all", colorbar=colorbar)


# ------------------------------------------------------------------------------ (3) representatives
def _grid_shape(n: int, aspect: float) -> tuple[int, int]:
    """Rows and columns for ``n`` tiles of aspect ``h / w``, as square overall as possible."""
    best = None
    for cols in range(1, n + 1):
        rows_ = math.ceil(n / cols)
        score = abs(math.log(rows_ * aspect / cols)) + 0.3 * (rows_ * cols - n)  # gaps look like missing slots
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
    colorbar = _Colorbar(("dispatch weight", "dispatch", "p"), cmap)
    rows: list[_Row] = []
    with figure_style():
        frame = _Frame(w_in, left=_label_margin(2 if row_labels else 1), right=_colorbar_margin(colorbar))
        peak = 0.0
        for r, predictor in enumerate(_rows_of(source, input_size)):
            chosen = resolve_blocks(predictor.num_glmix_blocks, blocks, default="last")
            image = predictor.image
            a = _aspect(image)
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

                shown = resize_image(image, _pixels(widths[0], a, dpi))
                tile = _pixels(widths[1] / all_shape[1], a, dpi)
                soft_small = m.upsample(tile)[0].cpu().numpy()
                small_gap = max(1, tile[1] // 24)
                corners = _mosaic_corners(tile, all_shape, small_gap)
                boxes = [(*corners[s], *tile) for s in ids]
                big = _pixels(widths[2] / rep_shape[1], a, dpi)
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

                labels = [f"slot {s} · {_percent(share[s])}" for s in ids]
                if text_width(labels[0], SMALL) > widths[2] / rep_shape[1] * 0.9:
                    labels = [f"{s}" for s in ids]
                panels = [
                    _Panel(shown, ("input",)),
                    _Panel(small_mosaic, (f"all {n} slots", f"{n} slots"), _frames(boxes, colors)),
                    _Panel(big_mosaic, (f"{kk} representatives (k-medoids)", f"{kk} representatives", f"k={kk}"),
                           _frames(rep_boxes, colors, labels)),
                ]
                name = _block_label(b, m, row_labels[r] if row_labels and r < len(row_labels) else None)
                rows.append(_Row(panels, widths, height, name))
        colorbar.vmax = _nice_ceil(peak)
        return _assemble(rows, frame, dpi, titles="all", colorbar=colorbar)


# ------------------------------------------------------------------------------ (4) evidence
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


def evidence_panel(source: Source, *, target: str | int | None = None, crf: bool = True,
                   bg_threshold: float | None = None, width: str | float = "double", cmap: str = CMAP,
                   alpha: float = 0.6, row_labels: Sequence[str] | None = None, input_size: int | None = None,
                   dpi: float = 300) -> PaperFigure:
    """Class evidence and the pseudo-masks made from it.

    Panels: input, CAM and slot-CAM heatmaps of one class (``target``: a class name or
    foreground index; default: each image's top predicted class), then pseudo-masks (predicted
    classes; ``bg_threshold``, default: the model's tuned threshold per method, else IRN's 0.15)
    from CAM, slot-CAM and slot-CAM refined by a dense CRF (``crf``). Masks use the VOC palette
    with background left unpainted; a legend names the classes. A double column puts one image
    per row; a single column wraps to two rows.
    """
    w_in = column_width(width)
    per_row = 6 if crf else 5
    wrap = w_in < 5
    cols = math.ceil(per_row / 2) if wrap else per_row
    voc = voc_palette()
    present: set[int] = set()
    thresholds: dict[str, float] = {}
    class_names: list[str] = []
    head_notes: list[str] = []
    rows: list[_Row] = []
    with figure_style():
        frame = _Frame(w_in, left=_label_margin() if row_labels else 0.0)
        for r, predictor in enumerate(_rows_of(source, input_size)):
            _needs_head(predictor)
            class_names = predictor.info.class_names
            image = predictor.image
            widths, height = frame.panel_widths([_aspect(image)] * cols)
            size = _pixels(widths[0], _aspect(image), dpi)
            shown = resize_image(image, size)
            scores = predictor.class_scores()
            top = _target_index(target, predictor.info.foreground_names) if target is not None else \
                int(np.argmax(scores))
            name = class_names[top + 1]
            maps = {m: predictor.evidence(m)[top] for m in ("cam", "slot-cam")}
            # a chosen class: its masks too, so that heatmaps and masks show the same class
            labels = None
            if target is not None:
                labels = np.zeros(len(scores), np.float32)
                labels[top] = 1.0
            masks = [predictor.pseudo_mask(m, labels, bg_threshold=bg_threshold) for m in ("cam", "slot-cam")]
            thresholds.update((m, MaskRecipe(m, bg_threshold=bg_threshold).resolved(predictor.info).threshold)
                              for m in ("cam", "slot-cam"))
            if crf:
                masks.append(predictor.pseudo_mask("slot-cam", labels, bg_threshold=bg_threshold, crf=True))
            for mask in masks:
                present.update(int(v) for v in np.unique(mask) if 0 < v < 255)
            if predictor.info.head_names:  # an ImageNet head: what it sees, and the VOC class each feeds
                row = row_labels[r] if row_labels and r < len(row_labels) else f"image {r + 1}"
                head_notes.append(f"{row}: " + ", ".join(str(p) for p in predictor.top_predictions(3, min_score=0.01)))
            shown_masks = [mask_overlay(shown, resize_labels(mk, size), voc) for mk in masks]
            panels = [
                _Panel(shown, (f"input · {'predicted ' if target is None else ''}{name} ({scores[top]:.2f})", f"input · {name} ({scores[top]:.2f})",
                               f"{name} ({scores[top]:.2f})", name)),
                _Panel(heatmap_overlay(shown, maps["cam"], cmap, alpha), (f"CAM · {name}", "CAM")),
                _Panel(heatmap_overlay(shown, maps["slot-cam"], cmap, alpha), (f"slot-CAM · {name}", "slot-CAM")),
                _Panel(shown_masks[0], ("mask · CAM", "CAM mask")),
                _Panel(shown_masks[1], ("mask · slot-CAM", "slot-CAM\nmask")),
            ]
            if crf:
                panels.append(_Panel(shown_masks[2], ("mask · slot-CAM + CRF", "slot-CAM\n+ CRF")))
            label = row_labels[r] if row_labels and r < len(row_labels) else None
            for start in range(0, len(panels), cols):
                chunk = panels[start:start + cols]
                first = start == 0
                rows.append(_Row(chunk, widths[:len(chunk)], height, label if first else None,
                                 space_before=GAP * 3 if first and r else 0.0))
        items = [(voc[c], class_names[c]) for c in sorted(present)]
        note = "background: evidence < " + _threshold_note(thresholds) + ("" if items else "; no foreground in the masks")
        legend = _Legend(items, _Colorbar("class evidence", cmap, horizontal=True), notes=[note, *head_notes])
        return _assemble(rows, frame, dpi, titles="all" if (wrap or len(rows) > 1) else "first", legend=legend)


# ------------------------------------------------------------------------------ (5) one method's class view
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
    frame = _Frame(column_width(width))
    widths, height = frame.panel_widths([_aspect(image)] * (1 + len(classes) + len(masks)))
    size = _pixels(widths[0], _aspect(image), dpi)
    shown = resize_image(image, size)
    panels = [_Panel(shown, (f"input\n{predictor.info.name}", "input"))]
    panels += [_Panel(heatmap_overlay(shown, evidence[k], cmap, alpha),
                      (f"{method} evidence\n{names[k + 1]} (p={scores[k]:.2f})", f"{names[k + 1]}\np={scores[k]:.2f}"))
               for k in classes]
    panels += [_Panel(mask_overlay(shown, resize_labels(mask, size), voc), (f"{title}\n({method})", title))
               for mask, title in zip(masks, mask_titles)]
    present = sorted({int(v) for m in masks for v in np.unique(m) if 0 < v < len(names)})
    note = f"background: evidence < {MaskRecipe(method).resolved(predictor.info).threshold:g}"
    legend = _Legend([(voc[c], names[c]) for c in present], _Colorbar(f"{method} evidence", cmap, horizontal=True),
                     notes=[note])
    with figure_style():
        return _assemble([_Row(panels, widths, height)], frame, dpi, titles="first", legend=legend)


# ------------------------------------------------------------------------------ (6) methods side by side
def method_comparison(source: Source, recipes: Sequence[MaskRecipe | str], *, target: str | int | None = None,
                      ground_truth: Sequence[np.ndarray | None] | None = None, bg_threshold: float | None = None,
                      width: str | float = "double", row_labels: Sequence[str] | None = None,
                      input_size: int | None = None, dpi: float = 300) -> PaperFigure:
    """Pseudo-masks of several methods (and refinements) side by side: one image per row, one
    column per recipe (:class:`~glmix_vis.wsss.recipe.MaskRecipe`, e.g. ``"slot-cam+slot-walk+crf"``).

    The classes a mask may use are, per row: the ground truth's classes when ``ground_truth`` gives
    that row's ``(H, W)`` label mask (shown as a column after the input; 255 is void), as the WSSS
    protocol does; else only ``target`` (a class name or foreground index) when given; else the
    classes the head sees. Each method uses its background threshold (``bg_threshold``, default
    the model's tuned value per method, else IRN's 0.15).
    """

    recipes = [r if isinstance(r, MaskRecipe) else MaskRecipe.parse(r) for r in recipes]
    if not recipes:
        raise ValueError("give at least one method, e.g. ['cam', 'slot-cam+crf']")
    voc = voc_palette()
    present: set[int] = set()
    thresholds: dict[str, float] = {}
    class_names: list[str] = []
    rows: list[_Row] = []
    with figure_style():
        frame = _Frame(column_width(width), left=_label_margin() if row_labels else 0.0)
        for r, predictor in enumerate(_rows_of(source, input_size)):
            _needs_head(predictor)
            class_names = predictor.info.class_names
            image = predictor.image
            gt = ground_truth[r] if ground_truth is not None and r < len(ground_truth) else None
            labels = _comparison_labels(predictor, gt, target)
            cols = 1 + (gt is not None) + len(recipes)
            widths, height = frame.panel_widths([_aspect(image)] * cols)
            size = _pixels(widths[0], _aspect(image), dpi)
            shown = resize_image(image, size)
            panels = [_Panel(shown, ("input",))]
            if gt is not None:
                gt_mask = np.where(gt == 255, 0, gt).astype(np.uint8)
                present.update(int(v) for v in np.unique(gt_mask) if v > 0)
                panels.append(_Panel(mask_overlay(shown, resize_labels(gt_mask, size), voc),
                                     ("ground truth", "GT")))
            for recipe in recipes:
                chosen = (recipe if bg_threshold is None else MaskRecipe.of(recipe, bg_threshold=bg_threshold)
                          ).resolved(predictor.info)
                thresholds[recipe.method] = chosen.threshold
                mask = predictor.pseudo_mask(chosen, labels)
                present.update(int(v) for v in np.unique(mask) if 0 < v < 255)
                panels.append(_Panel(mask_overlay(shown, resize_labels(mask, size), voc),
                                     (recipe.title, recipe.title.replace(" + ", "\n+ "), recipe.name)))
            label = row_labels[r] if row_labels and r < len(row_labels) else None
            rows.append(_Row(panels, widths, height, label))
        items = [(voc[c], class_names[c]) for c in sorted(present) if c < len(class_names)]
        note = "background: evidence < " + _threshold_note(thresholds) + ("" if items else "; no foreground in the masks")
        legend = _Legend(items, notes=[note])
        return _assemble(rows, frame, dpi, titles="first" if len({len(r.panels) for r in rows}) == 1 else "all",
                         legend=legend)


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
