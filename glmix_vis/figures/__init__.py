"""Publication figures of GLMix slot maps and class evidence, and the image rendering behind them.

* :mod:`.layouts`: :data:`LAYOUTS`, the figure layouts by name (what ``glmix-vis figure
  --layout`` offers): a new layout is one function plus one entry there;
* :mod:`.slot_layouts`: :func:`slot_grid`, :func:`soft_slot_maps`, :func:`representative_slots`;
* :mod:`.class_layouts`: :func:`method_comparison` (and its presets :func:`evidence_panel` and
  :func:`segmentation_panel`), :func:`class_view`;
* :mod:`.discovery`: :func:`atlas_concepts` (images explained by a slot atlas's concepts), the
  figures of ``glmix-vis slot-quality`` and ``glmix-vis atlas``;
* :mod:`.panels`: the panel engine the layouts share (rows of panels sized in inches, titles
  that fit, colourbars and legends); :mod:`.sources`: the predictor rows a layout draws from;
  :mod:`.recipes`: the one place a mask recipe becomes the predictor's masks and evidence;
* :mod:`.render`: pure-numpy overlays, also used by the web app;
* :mod:`.tracking`: slot colours that follow a group from block to block;
* :mod:`.palette`: the colour-blind-safe qualitative palette;
* :mod:`.medoids`: k-medoids choice of representative slots;
* :mod:`.style`: column widths, fonts, and saving to PDF / SVG / PNG.

The names below are imported on first use, so that reading :data:`LAYOUTS` (the command line
does, to build its options) imports neither matplotlib nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models.slots import resolve_blocks
    from .class_layouts import class_view, evidence_panel, method_comparison, segmentation_panel
    from .discovery import atlas_concepts, atlas_figure, slot_quality_figure
    from .layouts import LAYOUTS
    from .medoids import cosine_distances, k_medoids, representative_slot_ids
    from .palette import slot_palette
    from .render import apply_colormap, colorize_mask, heatmap_overlay, mask_overlay, overlay_slots
    from .slot_layouts import representative_slots, slot_grid, soft_slot_maps
    from .style import COLUMN_WIDTHS, PaperFigure, figure_style, save_figure
    from .tracking import track_slot_colors

#: Each public name -> the module that defines it.
_HOMES = {
    "LAYOUTS": ".layouts",
    "class_view": ".class_layouts", "evidence_panel": ".class_layouts", "method_comparison": ".class_layouts",
    "segmentation_panel": ".class_layouts",
    "representative_slots": ".slot_layouts", "slot_grid": ".slot_layouts", "soft_slot_maps": ".slot_layouts",
    "atlas_concepts": ".discovery", "atlas_figure": ".discovery", "slot_quality_figure": ".discovery",
    "cosine_distances": ".medoids", "k_medoids": ".medoids", "representative_slot_ids": ".medoids",
    "slot_palette": ".palette",
    "apply_colormap": ".render", "colorize_mask": ".render", "heatmap_overlay": ".render", "mask_overlay": ".render",
    "overlay_slots": ".render",
    "COLUMN_WIDTHS": ".style", "PaperFigure": ".style", "figure_style": ".style", "save_figure": ".style",
    "track_slot_colors": ".tracking",
    "resolve_blocks": "..models.slots",
}

__all__ = [
    "COLUMN_WIDTHS", "LAYOUTS", "PaperFigure", "apply_colormap", "atlas_concepts", "atlas_figure", "class_view", "colorize_mask", "cosine_distances",
    "evidence_panel", "figure_style", "heatmap_overlay", "k_medoids", "mask_overlay", "method_comparison",
    "overlay_slots", "representative_slot_ids", "representative_slots", "resolve_blocks", "save_figure", "segmentation_panel",
    "slot_grid", "slot_palette", "slot_quality_figure", "soft_slot_maps", "track_slot_colors",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # looked up on every use, not cached here: a name patched in its module (a test's spy) is what callers get
    return getattr(importlib.import_module(home, __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
