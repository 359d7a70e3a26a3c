"""The figures' one door to the predictor's masks and evidence: a
:class:`~glmix_vis.wsss.recipe.MaskRecipe` (``"slot-cam+slot-walk+crf"``, with its options and
test-time augmentation) meets the predictor here and nowhere else, so that a change of how the
predictor takes a recipe is a change to this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..wsss.recipe import MaskRecipe

if TYPE_CHECKING:
    from ..predictor import SlotPredictor

__all__ = ["recipe_evidence", "recipe_mask", "recipe_threshold"]


def recipe_threshold(predictor: SlotPredictor, recipe: MaskRecipe, bg_threshold: float | None) -> float:
    """The background threshold of ``recipe``'s mask: ``bg_threshold`` (a figure-wide choice), else
    the recipe's own, else the checkpoint's tuned value for its method (else IRN's 0.15)."""
    chosen = recipe if bg_threshold is None else MaskRecipe.of(recipe, bg_threshold=bg_threshold)
    return chosen.resolved(predictor.info).threshold


def recipe_mask(predictor: SlotPredictor, recipe: MaskRecipe, labels: np.ndarray | None,
                threshold: float | None) -> np.ndarray:
    """``(H, W)`` uint8 mask of ``recipe`` at ``threshold`` on the predictor's image (``labels``: the
    classes it may use, ``None``: the head's), the mask ``glmix-wsss eval`` writes with the same recipe.
    ``threshold`` ``None``: the recipe's own (a segmenter's ``seg`` has none and uses no labels)."""
    chosen = recipe if threshold is None else MaskRecipe.of(recipe, bg_threshold=threshold)
    return predictor.pseudo_mask(chosen, labels)


def recipe_evidence(predictor: SlotPredictor, recipe: MaskRecipe, labels: np.ndarray | None) -> np.ndarray:
    """``(K, H, W)`` evidence of ``recipe``'s method, refined by its refinement: what its mask
    thresholds (the CRF, if the recipe has it, makes a mask and is left out here)."""
    scores = predictor.evidence(recipe)
    if recipe.refinement == "none":
        return scores
    chosen = predictor.predicted_labels() if labels is None else labels
    return recipe.refiner()(scores, chosen, image=predictor.image, slots=predictor.output)
