"""Publication figures of GLMix slot maps and class evidence, and the image rendering behind them.

* :mod:`.layouts`: matplotlib figures (:func:`slot_grid`, :func:`soft_slot_maps`,
  :func:`representative_slots`, :func:`evidence_panel`, :func:`class_view`,
  :func:`method_comparison`) sized for a single or double column;
* :mod:`.render`: pure-numpy overlays, also used by the web app;
* :mod:`.tracking`: slot colours that follow a group from block to block;
* :mod:`.palette`: the colour-blind-safe qualitative palette;
* :mod:`.medoids`: k-medoids choice of representative slots;
* :mod:`.style`: column widths, fonts, and saving to PDF / SVG / PNG.
"""

from ..models.slots import resolve_blocks
from .layouts import (
    class_view,
    evidence_panel,
    method_comparison,
    representative_slots,
    slot_grid,
    soft_slot_maps,
)
from .medoids import cosine_distances, k_medoids, representative_slot_ids
from .palette import slot_palette
from .render import apply_colormap, colorize_mask, heatmap_overlay, mask_overlay, overlay_slots
from .style import COLUMN_WIDTHS, PaperFigure, figure_style, save_figure
from .tracking import track_slot_colors

__all__ = [
    "COLUMN_WIDTHS", "PaperFigure", "apply_colormap", "class_view", "colorize_mask", "cosine_distances", "evidence_panel",
    "figure_style", "heatmap_overlay", "k_medoids", "mask_overlay", "method_comparison", "overlay_slots", "representative_slot_ids",
    "representative_slots", "resolve_blocks", "save_figure", "slot_grid", "slot_palette", "soft_slot_maps",
    "track_slot_colors",
]
