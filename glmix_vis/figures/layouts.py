"""The figure layouts by name: the one table ``glmix-vis figure --layout`` reads for its choices,
its options and its dispatch.

A new layout is one function (in :mod:`.slot_layouts`, :mod:`.class_layouts` or a module of its
own) plus one :data:`LAYOUTS` entry; a new option of it is one :class:`LayoutOption` in that
entry, and the command line grows the flag by itself. This module imports neither numpy,
matplotlib nor torch: the command line reads the table before it imports the library, and a
layout's function is imported when it is drawn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..predictor import SlotPredictor
    from .style import PaperFigure

__all__ = ["DEFAULT_COMPARISON", "LAYOUTS", "Layout", "LayoutOption", "layout_options"]

#: The columns of the compare layout unless chosen: each method alone, then slot-CAM refined.
DEFAULT_COMPARISON = ("cam", "slot-cam", "slot-cam+crf", "slot-cam+slot-walk+crf")


@dataclass(frozen=True)
class LayoutOption:
    """One keyword argument of a layout function, as a command-line option.

    ``parse`` turns the option's text into the value (a ``ValueError`` says what is wrong); a
    ``switch`` takes no text and gives the keyword that value. ``check`` tests the value against
    the loaded model before any image is read (a ``ValueError`` says what is wrong). Left out on
    the command line, the keyword is not passed: the function's own default holds.
    """

    flag: str
    keyword: str
    help: str
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    switch: bool | None = None
    check: Callable[[Any, SlotPredictor], None] | None = None

    def value(self, given: Any) -> Any:
        """The keyword's value from what the command line holds (text, or the switch's value)."""
        if self.switch is not None or self.parse is None:
            return given
        return self.parse(given)


@dataclass(frozen=True)
class Layout:
    """One figure layout: its function (``"module:name"`` in this package, imported when drawn),
    what it shows, and what it takes.

    ``needs_head``: it draws class evidence, so the model needs a classification head;
    ``ground_truth``: it takes per-image label masks (``ground_truth=``, the CLI's ``--gt``);
    ``needs_segmenter``: it draws a segmenter's own prediction (a ``glmix-wsss train-seg`` checkpoint).
    """

    path: str
    shows: str
    options: tuple[LayoutOption, ...] = ()
    needs_head: bool = False
    ground_truth: bool = False
    needs_segmenter: bool = False

    @property
    def function(self) -> Callable[..., PaperFigure]:
        """The layout function: ``function(source, **options, width=..., dpi=..., row_labels=...,
        input_size=...)`` -> :class:`~glmix_vis.figures.style.PaperFigure`."""
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)


# ------------------------------------------------------------------------------ option values
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 3,7, got {text!r}") from None
    if not values:
        raise ValueError("no values given")
    return values


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a whole number >= 1, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a number from 0 to 1, got {text}")
    return value


def _blocks(text: str) -> list[int] | None:
    from ..models.slots import parse_blocks

    blocks = parse_blocks(text)
    return None if blocks is None else list(blocks)


def _recipes(text: str) -> list[Any]:
    from ..wsss.recipe import parse_recipes

    return parse_recipes(text)


def _check_blocks(blocks: Sequence[int] | None, predictor: SlotPredictor) -> None:
    from ..models.slots import resolve_blocks

    resolve_blocks(int(getattr(predictor.model, "num_glmix_blocks", 0)), blocks)


def _check_class(name: str, predictor: SlotPredictor) -> None:
    names = predictor.info.foreground_names
    if name not in names:
        raise ValueError(f"{name!r} is not one of the model's classes: {', '.join(names)}")


BLOCKS = LayoutOption("--blocks", "blocks", "GLMix block indices, e.g. 0,3,6 (write --blocks=-1,-2 for negative "
                      "lists; default: up to 4 spread blocks for grid, the last block otherwise)",
                      _blocks, "LIST", check=_check_blocks)
COUNTS = LayoutOption("--counts", "show_counts", "write how many slots each block uses", switch=True)
SLOTS = LayoutOption("--slots", "slots", "slot indices to show, e.g. 3,7 (default: the largest)", _int_list, "LIST")
K = LayoutOption("-k", "k", "how many slots to pick (default: 4)", _at_least_one, "K")
TARGET = LayoutOption("--class", "target", "class name to show (default: the top one)", metavar="NAME",
                      check=_check_class)
BG_THRESHOLD = LayoutOption("--bg-threshold", "bg_threshold", "background threshold of the pseudo-masks "
                            "(default: the model's tuned value per method, else IRN's 0.15)", _probability, "T")
NO_CRF = LayoutOption("--no-crf", "crf", "leave out the CRF-refined mask", switch=False)
METHODS = LayoutOption("--methods", "recipes", "one column per method[+refinement][+crf], e.g. "
                       f"'cam,gradcam,slot-cam+par,slot-cam+slot-walk+crf' (default: {','.join(DEFAULT_COMPARISON)})",
                       _recipes, "LIST")

def _check_atlas(folder: str, predictor: SlotPredictor) -> None:
    from ..discovery.lookup import load_atlas

    atlas = load_atlas(folder)
    _check_blocks([atlas.block], predictor)


ATLAS = LayoutOption("--atlas", "atlas", "folder written by glmix-vis atlas (its atlas.json and crops/)",
                     metavar="DIR", check=_check_atlas)
CONCEPTS = LayoutOption("--concepts", "concepts", "how many of the image's concepts to show (default: 3)",
                        _at_least_one, "K")

#: Name -> layout, in the order ``--help`` lists them.
LAYOUTS: dict[str, Layout] = {
    "grid": Layout("slot_layouts:slot_grid", "the hard slot groups of several GLMix blocks, with colours that "
                   "follow a group from block to block", (BLOCKS, COUNTS)),
    "soft": Layout("slot_layouts:soft_slot_maps", "the dispatch maps of the largest slots", (BLOCKS, SLOTS)),
    "representative": Layout("slot_layouts:representative_slots", "all slots and k-medoids representatives",
                             (BLOCKS, K)),
    "evidence": Layout("class_layouts:evidence_panel", "CAM and slot-CAM with their pseudo-masks",
                       (TARGET, BG_THRESHOLD, NO_CRF), needs_head=True),
    "segmentation": Layout("class_layouts:segmentation_panel", "a segmenter's own prediction (train-seg), "
                           "without and with the CRF", needs_head=True, needs_segmenter=True),
    "compare": Layout("class_layouts:method_comparison", "the pseudo-masks of several methods and refinements "
                      "side by side (--methods)", (METHODS, TARGET, BG_THRESHOLD), needs_head=True, ground_truth=True),
    "atlas": Layout("discovery:atlas_concepts", "the image's slots coloured by the concepts of a slot atlas (--atlas), "
                    "with typical slots of its largest concepts", (ATLAS, CONCEPTS)),
}


def layout_options(layouts: dict[str, Layout] | None = None) -> dict[LayoutOption, list[str]]:
    """Every option of the layouts, once, with the names of the layouts that take it (in table
    order); a ``ValueError`` when two layouts declare one flag or one keyword differently."""
    found: dict[LayoutOption, list[str]] = {}
    for name, layout in (LAYOUTS if layouts is None else layouts).items():
        for option in layout.options:
            clash = next((o for o in found if o != option and (o.flag == option.flag or o.keyword == option.keyword)),
                         None)
            if clash is not None:
                raise ValueError(f"layout {name!r} declares {option.flag} ({option.keyword}) unlike "
                                 f"{clash.flag} ({clash.keyword}) of {', '.join(found[clash])}")
            found.setdefault(option, []).append(name)
    return found
