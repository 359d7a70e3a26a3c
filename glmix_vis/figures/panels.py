"""The panel engine behind every figure layout: rows of equally tall image panels, placed in
inches so that a figure is exactly a paper column wide and as tall as its images need.

A layout builds rows (:class:`Row`) of :class:`Panel` objects (a raster, title candidates, optional
vector marks) over a :class:`Frame` (the width, margins and gaps), then :func:`assemble`
places them top to bottom with an optional :class:`Colorbar` beside them or a :class:`Legend`
below. Titles and labels are given as candidates, longest first: the first that fits is used,
so one layout reads well in a single and in a double column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from .style import FONT_SIZE, PaperFigure, text_width

__all__ = [
    "BAR", "CMAP", "GAP", "LEGEND_BAR", "LINE", "MAX_PANEL_SIDE", "PATCH", "PITCH", "SMALL", "TITLE_PAD", "Colorbar", "Frame",
    "Legend", "Panel", "Row", "aspect", "assemble", "colorbar_margin", "fit", "label_margin", "nice_ceil", "pixels",
]

CMAP = "viridis"
GAP = 0.03  # inches between panels
TITLE_PAD = 0.025  # inches between a title and its panel
LINE = FONT_SIZE * 1.2 / 72  # one line of text, inches
SMALL = FONT_SIZE - 1
BAR = 0.07  # colourbar thickness, inches
LEGEND_BAR = 0.8  # length of the legend's horizontal colourbar
PATCH = 0.11  # legend colour swatch
PITCH = LINE * 1.15  # legend line spacing
#: The longest side, in pixels, a panel's raster is drawn at (13.6 inches at 300 dpi: beyond any column).
MAX_PANEL_SIDE = 4096


# ------------------------------------------------------------------------------ panel geometry
@dataclass
class Panel:
    """One image in a row: a raster (or a renderer of one), title candidates and optional vector marks."""

    image: np.ndarray | Callable[[float], np.ndarray]  # or a renderer taking the colour scale's maximum
    titles: tuple[str, ...] = ()  # candidates, most informative first; the first that fits is used
    draw: Callable[[Axes, float], None] | None = None  # extra vector marks (axes, panel width in inches)


@dataclass
class Row:
    """Panels of one height side by side, with an optional rotated label on the left."""

    panels: list[Panel]
    widths: list[float]  # inches
    height: float  # inches
    label: str | tuple[str, ...] | None = None  # rotated on the left; candidates, longest first
    space_before: float = 0.0  # extra inches above the row (separates images that wrap onto two rows)


@dataclass
class Frame:
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
class Colorbar:
    """A colour scale from 0 to ``vmax``: beside the rows, or horizontal in a legend."""

    label: str | tuple[str, ...]  # candidates, longest first: the first that fits along the bar
    cmap: str = CMAP
    vmax: float = 1.0
    horizontal: bool = False

    @property
    def ticks(self) -> tuple[float, ...]:
        return (0.0, self.vmax / 2, self.vmax)


def nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 4, 5, 6, 8 x 10^k at least ``x``: a colourbar end whose half reads well."""
    if not x > 0:
        return 1.0
    exp = math.floor(math.log10(x))
    for step in (1, 2, 4, 5, 6, 8, 10):
        if step * 10.0**exp >= x * (1 - 1e-9):
            return min(1.0, step * 10.0**exp)
    return 1.0


@dataclass
class Legend:
    """Below the rows: an optional colourbar, colour swatches with names, then grey notes."""

    items: list[tuple[np.ndarray, str]] = field(default_factory=list)  # (RGB uint8, name)
    colorbar: Colorbar | None = None
    notes: list[str] = field(default_factory=list)  # grey text entries after the classes


def fit(candidates: Sequence[str], width: float, size: float = FONT_SIZE) -> str:
    for text in candidates:
        if text_width(text, size) <= width:
            return text
    return candidates[-1] if candidates else ""


def colorbar_margin(cb: Colorbar) -> float:
    ticks = text_width("0.025", SMALL)  # the widest tick label nice_ceil can lead to
    return GAP * 2 + BAR + 0.03 + ticks + 0.04 + LINE


def label_margin(lines: int = 1) -> float:
    return lines * LINE + GAP


def _first(label: str | tuple[str, ...]) -> str:
    return label if isinstance(label, str) else label[0]


def fit_label(label: str | tuple[str, ...], length: float) -> str:
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


def _legend_layout(legend: Legend, width: float) -> _LegendPlan:
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


def assemble(rows: list[Row], frame: Frame, dpi: float, titles: str = "all",
              colorbar: Colorbar | None = None, legend: Legend | None = None) -> PaperFigure:
    """Place the rows top to bottom; ``titles``: "all" rows, the "first" row, or "none"."""
    vmax = colorbar.vmax if colorbar is not None else 1.0
    layout: list[tuple[float, list[str]]] = []  # (top of the panels, titles) per row, inches from the top
    y = 0.0
    for r, row in enumerate(rows):
        texts = []
        if titles == "all" or (titles == "first" and r == 0):
            texts = [fit(p.titles, w - 0.02) for p, w in zip(row.panels, row.widths)]
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
                     fit_label(row.label, row.height), rotation=90, ha="center", va="center", fontsize=FONT_SIZE)
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


def _draw_colorbar(fig: PaperFigure, cax: Axes, cb: Colorbar, with_label: bool = True) -> None:
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
        bar.set_label(fit_label(cb.label, length), fontsize=FONT_SIZE, labelpad=2)
    bar.solids.set_rasterized(True)


def _draw_legend(fig: PaperFigure, legend: Legend, plan: _LegendPlan, top: float, total: float,
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

# ------------------------------------------------------------------------------ rasters
def pixels(width_in: float, ratio: float, dpi: float) -> tuple[int, int]:
    """``(height, width)`` in pixels of a panel ``width_in`` inches wide with aspect ``ratio`` (h / w)
    printed at ``dpi``: images are rendered at the resolution they are printed at, up to
    :data:`MAX_PANEL_SIDE` pixels on the longer side (a tall image or a very high ``dpi`` is
    printed at a lower resolution rather than drawn in gigabytes)."""
    w = max(8, int(math.ceil(width_in * dpi)))
    h = max(8, int(round(w * ratio)))
    if max(h, w) > MAX_PANEL_SIDE:
        scale = MAX_PANEL_SIDE / max(h, w)
        h, w = max(8, min(MAX_PANEL_SIDE, round(h * scale))), max(8, min(MAX_PANEL_SIDE, round(w * scale)))
    return h, w


def aspect(image: np.ndarray) -> float:
    """``h / w`` of an image."""
    return image.shape[0] / image.shape[1]

