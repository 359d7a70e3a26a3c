"""The README's extension recipe for evidence methods, held to its word: one module + its
registration, and every place that lists or validates methods picks the new one up (eval's
``--method`` choices, the recipe's option check, the predictor, the app's usable methods)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glmix_vis.cli._dispatch import build_parser
from glmix_vis.cli.eval_cmd import recipe_from_args
from glmix_vis.wsss.evidence import available_evidence_methods
from glmix_vis.wsss.evidence.base import _REGISTRY, EvidenceMethod, register_evidence, resize_maps
from glmix_vis.wsss.evidence.usable import usable_methods
from glmix_vis.wsss.recipe import MaskRecipe

NAME = "test-uniform"


@pytest.fixture()
def uniform_method():
    """A new method written as the README says: a class and its registration, nothing else."""

    @register_evidence(NAME)
    class Uniform(EvidenceMethod):
        def __init__(self, class_map=None, class_reduce: str = "max", level: float = 0.5) -> None:
            super().__init__(class_map, class_reduce)
            self.level = level

        def raw(self, model, out, classes, size):
            k = out.logits.shape[1] if self.class_map is None else len(self.class_map)
            k = k if classes is None else len(classes)
            grid = torch.full((out.logits.shape[0], k, 2, 2), float(self.level))
            return resize_maps(grid, size)

    yield Uniform
    del _REGISTRY[NAME]


def test_a_registered_method_is_everywhere(uniform_method, tiny_predictor) -> None:
    assert NAME in available_evidence_methods()
    # the recipe validates its options from the constructor
    assert MaskRecipe(NAME, method_options={"level": 0.3}).method_options == {"level": 0.3}
    with pytest.raises(ValueError, match="takes no option"):
        MaskRecipe(NAME, method_options={"blocks": "0"})
    # eval's flags: a --method choice, and its options through --method-option
    parser = build_parser("glmix-wsss", "", {"eval": "glmix_vis.cli.eval_cmd"})
    args = parser.parse_args(["eval", "--method", NAME, "--method-option", "level=0.25", "--no-crf"])
    assert recipe_from_args(args) == MaskRecipe(NAME, method_options={"level": 0.25})
    # the predictor and the pipeline: a constant map normalises to 1, so every allowed pixel is foreground
    tiny_predictor.set_image(np.full((40, 48, 3), 128, np.uint8), input_size=64)
    labels = np.zeros(len(tiny_predictor.info.foreground_names), np.float32)
    labels[1] = 1
    mask = tiny_predictor.pseudo_mask(MaskRecipe(NAME, bg_threshold=0.5), labels)
    assert mask.shape == (40, 48) and (mask == 2).all()
    # the app's list of methods a model can serve
    assert NAME in usable_methods(tiny_predictor.model, available_evidence_methods(),
                                  class_map=tiny_predictor.info.class_map)
