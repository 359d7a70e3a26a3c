"""The figure of the app's *Classes and pseudo-mask* tab: what the tab shows, with the evidence
method the visitor chose (the paper layout :func:`glmix_vis.figures.evidence_panel` compares CAM
and slot-CAM instead).

Panels, left to right: the input, the chosen method's evidence of each class the model sees (as
in the tab's gallery), the pseudo-mask and the pseudo-mask refined by the dense CRF; a legend
row names the colours. Pictures are drawn by :mod:`glmix_vis.figures.render` (the tab's own
rules: evidence on a 0-1 scale, masks with :func:`~glmix_vis.figures.render.mask_overlay`).
No gradio here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..figures.style import PaperFigure
    from ..predictor import SlotPredictor

__all__ = ["class_view_figure"]

GAP = 0.04  # inches between panels
PATCH = 0.11  # legend swatch, inches
BAR = 0.8  # legend colour bar length, inches


def class_view_figure(predictor: SlotPredictor, method: str, evidence: np.ndarray, masks: Sequence[np.ndarray],
                      classes: Sequence[int], *, mask_titles: Sequence[str] = ("pseudo-mask", "+ dense CRF"),
                      width: str | float = "double", dpi: float = 300, alpha: float = 0.6) -> PaperFigure:
    """The class view as a figure.

    Args:
        predictor: holds the image (``predictor.image``) and the model's class names and scores.
        method: the evidence method the maps and masks come from (written in the titles).
        evidence: ``(K, H, W)`` evidence in [0, 1] of every foreground class.
        masks: ``(H, W)`` class masks (0 = background), one panel each, titled by ``mask_titles``.
        classes: foreground indices whose evidence is shown, in order.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    from ..data.palette import voc_palette
    from ..figures.render import SOFT_CMAP, heatmap_overlay, mask_overlay, resize_image
    from ..figures.style import FONT_SIZE, PaperFigure, column_width, figure_style, text_width

    names = predictor.info.class_names
    scores = predictor.class_scores()
    image = predictor.image
    palette = voc_palette()
    w_in = column_width(width)
    n = 1 + len(classes) + len(masks)
    aspect = image.shape[0] / image.shape[1]
    panel_w = (w_in - GAP * (n - 1)) / n
    panel_h = panel_w * aspect
    line = FONT_SIZE * 1.25 / 72
    title_h = 2 * line + 0.03
    px = (max(8, round(panel_h * dpi)), max(8, round(panel_w * dpi)))
    shown = resize_image(image, px)
    pictures = [(shown, f"input\n{predictor.info.name}")]
    for k in classes:
        pictures.append((heatmap_overlay(shown, evidence[k], SOFT_CMAP, alpha),
                         f"{method} evidence\n{names[k + 1]} (p={scores[k]:.2f})"))
    for mask, title in zip(masks, mask_titles):
        pictures.append((mask_overlay(shown, mask, palette), f"{title}\n({method})"))
    present = sorted({int(v) for m in masks for v in np.unique(m) if 0 < v < len(names)})
    entries = [(palette[c], names[c]) for c in present]
    entries.append((None, f"background: evidence < {predictor.info.bg_threshold(method):g}"))
    bar_label = f"{method} evidence"

    with figure_style():
        # legend: the evidence colour bar, then the mask classes, wrapping onto more lines if needed
        bar_x = text_width(bar_label) + 0.06
        start = x = bar_x + BAR + 0.25
        places, row = [], 0
        for rgb, name in entries:
            w = (PATCH + 0.04 if rgb is not None else 0.0) + text_width(name)
            if x + w > w_in - 0.05 and x > start:
                x, row = start, row + 1
            places.append((x, row))
            x += w + 0.15
        legend_h = (row + 1) * line + 1.5 * line
        total_h = title_h + panel_h + legend_h

        fig = PaperFigure(figsize=(w_in, total_h), export_dpi=dpi)
        for i, (picture, title) in enumerate(pictures):
            ax = fig.add_axes((i * (panel_w + GAP) / w_in, legend_h / total_h, panel_w / w_in, panel_h / total_h))
            ax.imshow(picture, interpolation="antialiased", aspect="auto")
            ax.set_axis_off()
            ax.set_title(title, fontsize=FONT_SIZE, pad=2, linespacing=1.0)

        def centre(r: int) -> float:  # figure y of the middle of legend line r
            return (legend_h - 0.5 * line - (r + 0.5) * line) / total_h

        fig.text(0.0, centre(0), bar_label, ha="left", va="center", fontsize=FONT_SIZE)
        cax = fig.add_axes((bar_x / w_in, centre(0) - 0.2 * line / total_h, BAR / w_in, 0.4 * line / total_h))
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), SOFT_CMAP), cax=cax, orientation="horizontal",
                           ticks=[0.0, 0.5, 1.0])
        bar.ax.tick_params(labelsize=FONT_SIZE - 1, length=2, width=0.5, pad=1)
        bar.outline.set_linewidth(0.5)
        for (rgb, name), (x, r) in zip(entries, places):
            if rgb is not None:
                sw = fig.add_axes((x / w_in, centre(r) - PATCH / 2 / total_h, PATCH / w_in, PATCH / total_h))
                sw.add_patch(Rectangle((0, 0), 1, 1, facecolor=np.asarray(rgb) / 255.0, edgecolor="0.3",
                                       linewidth=0.4))
                sw.set_axis_off()
                x += PATCH + 0.04
            fig.text(x / w_in, centre(r), name, ha="left", va="center", fontsize=FONT_SIZE,
                     color="black" if rgb is not None else "0.35")
    return fig
