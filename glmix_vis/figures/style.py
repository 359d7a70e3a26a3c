"""Publication style: column widths, fonts, and a Figure that saves with embedded fonts.

All settings live in :func:`figure_style`, a context manager, so importing this package never
changes matplotlib's global state. Figures are built with :class:`PaperFigure` directly (no
pyplot, no GUI backend); its ``savefig`` re-enters the style, so a notebook user who calls
``fig.savefig("x.pdf")`` still gets TrueType fonts embedded in the PDF.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from ..io import atomic_write_bytes

__all__ = ["COLUMN_WIDTHS", "FONT_SIZE", "SAVE_FORMATS", "PaperFigure", "column_width", "figure_style",
           "save_figure", "text_width"]

#: Text widths of common two-column venues (IEEE, CVPR, NeurIPS-like), in inches.
COLUMN_WIDTHS = {"single": 3.3, "double": 6.9}
#: Base font size in points: small but legible once printed at 100 %.
FONT_SIZE = 7.0
#: Output formats by file extension.
SAVE_FORMATS = {".pdf": "pdf", ".svg": "svg", ".png": "png"}

_TEXT_TO_PATH = TextToPath()

_STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    # Arial/Helvetica where installed; Liberation Sans has Arial's metrics; DejaVu Sans always exists.
    "font.sans-serif": ["Arial", "Helvetica", "Liberation Sans", "DejaVu Sans"],
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": FONT_SIZE - 1,
    "ytick.labelsize": FONT_SIZE - 1,
    "legend.fontsize": FONT_SIZE,
    "axes.linewidth": 0.5,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.0,
    "ytick.major.size": 2.0,
    "xtick.major.pad": 1.5,
    "ytick.major.pad": 1.5,
    "pdf.fonttype": 42,  # TrueType (Type 42), not Type 3: required by most publishers
    "ps.fonttype": 42,
    "svg.fonttype": "path",  # glyphs as outlines: the SVG looks the same without the font installed
    "image.interpolation": "antialiased",
    "savefig.pad_inches": 0.0,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "figure.dpi": 100,
}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Apply the publication rcParams (and the Agg backend's defaults) inside the block only."""
    import logging

    font_logger = logging.getLogger("matplotlib.font_manager")
    level = font_logger.level
    font_logger.setLevel(logging.ERROR)  # "Arial not found, falling back" is expected, not news
    try:
        with matplotlib.rc_context(_STYLE):
            yield
    finally:
        font_logger.setLevel(level)


def column_width(width: str | float) -> float:
    """Figure width in inches: ``"single"`` (3.3), ``"double"`` (6.9) or a number of inches."""
    if isinstance(width, str):
        try:
            return COLUMN_WIDTHS[width]
        except KeyError:
            raise ValueError(f"width must be one of {sorted(COLUMN_WIDTHS)} or inches, got {width!r}") from None
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    return float(width)


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """Width in inches of ``text`` (the widest line) in the figure font; call inside :func:`figure_style`."""
    prop = FontProperties(size=size)
    widths = [_TEXT_TO_PATH.get_text_width_height_descent(line, prop, ismath=False)[0]
              for line in text.split("\n")]
    return max(widths, default=0.0) / 72.0


class PaperFigure(Figure):
    """A matplotlib Figure whose ``savefig`` applies :func:`figure_style` and a default dpi."""

    def __init__(self, *args: Any, export_dpi: float = 300, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.export_dpi = export_dpi

    def savefig(self, fname: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("dpi", self.export_dpi)
        with figure_style():
            super().savefig(fname, *args, **kwargs)


def save_figure(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Save ``fig`` as PDF, SVG or PNG by the extension of ``path`` (parent folders created)."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported extension {path.suffix or '(none)'!r}; "
                         f"use one of {', '.join(SAVE_FORMATS)}")
    kwargs: dict[str, Any] = {"format": fmt}
    if dpi is not None:
        kwargs["dpi"] = dpi
    buf = io.BytesIO()
    if isinstance(fig, PaperFigure):
        fig.savefig(buf, **kwargs)
    else:
        with figure_style():
            fig.savefig(buf, **kwargs)
    atomic_write_bytes(path, buf.getvalue())  # a reader never sees half a figure
    return path


def share_percent(x: float) -> str:
    """A share as a whole percentage that never rounds a slot that wins pixels down to "0%" (the one
    rule of the figures' and the app's captions)."""
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"
