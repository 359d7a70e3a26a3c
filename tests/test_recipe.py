"""MaskRecipe: every setting of one mask, validated when built, one record, one threshold rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.models.meta import CheckpointMeta
from glmix_vis.wsss.crf import CRFParams
from glmix_vis.wsss.recipe import ORACLE_METHOD, MaskRecipe, parse_assignments, parse_recipes


@pytest.mark.parametrize("settings, message", [
    (dict(method="grad-cam"), "unknown method"),
    (dict(method="cam", method_options={"blocks": "0"}), "cam takes no option blocks"),
    (dict(method="slot-cam", method_options={"combine": "median"}), "combine must be one of"),
    (dict(method="slot-cam", method_options={"cam_weight": 2.0}), "cam_weight must be in"),
    (dict(method="scorecam", method_options={"batch_size": 0}), "batch_size must be at least 1"),
    (dict(refinement="walk"), "unknown refinement"),
    (dict(refinement="par", refinement_options={"steps": 3}), "unknown par options"),
    (dict(refinement="slot-walk", refinement_options={"power": -1.0}), "power"),
    (dict(refinement="none", refinement_options={"steps": 3}), "takes no options"),
    (dict(method=ORACLE_METHOD, crf=True), "no CRF"),
    (dict(method=ORACLE_METHOD, refinement="par"), "no refinement"),
    (dict(method=ORACLE_METHOD, method_options={"block": "last"}), "whole number"),
    (dict(bg_threshold=5.0), r"in \[0, 1\]"),
    (dict(bg_threshold=math.nan), r"in \[0, 1\]"),
    (dict(bg_threshold="high"), r"in \[0, 1\]"),
    (dict(scales=(1.0, 0.0)), "> 0"),
    (dict(scales=()), "> 0"),
    (dict(scales=(1.0, math.inf)), "> 0"),
    (dict(crf="yes"), "True or False"),
])
def test_bad_settings_are_refused_when_the_recipe_is_built(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaskRecipe(**settings)


@pytest.mark.parametrize("params", [dict(iterations=0), dict(bilateral_sxy=0.0), dict(gaussian_compat=-1.0),
                                    dict(bilateral_srgb=math.nan), dict(clip=1.5)])
def test_crf_params_validate_themselves(params: dict) -> None:
    with pytest.raises(ValueError, match="CRF"):
        CRFParams(**params)


def test_a_recipe_is_a_frozen_hashable_value() -> None:
    a = MaskRecipe("slot-cam", method_options={"blocks": [0, 1]}, scales=[1.0, 0.5])
    b = MaskRecipe("slot_cam", method_options={"blocks": (0, 1)}, scales=(1.0, 0.5))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1  # normalised: a cache key
    assert a.method_options == {"blocks": (0, 1)} and a.scales == (1.0, 0.5)
    with pytest.raises(AttributeError):
        a.method = "cam"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.method_options["blocks"] = "first"  # type: ignore[index]


def test_short_names_round_trip() -> None:
    for text in ("cam", "slot-cam+crf", "gradcam++", "gradcam+++par+crf", "slot-cam+slot-walk+crf", ORACLE_METHOD):
        assert MaskRecipe.parse(text).name == text
    assert MaskRecipe.parse("slot-cam+slot-walk+crf") == MaskRecipe("slot-cam", "slot-walk", True)
    assert MaskRecipe.parse("cam+crf").title == "CAM + CRF"
    assert [r.name for r in parse_recipes("cam, slot-cam+crf")] == ["cam", "slot-cam+crf"]
    for bad in ("cam+crf+par", "cam+par+slot-walk", "cam+foo"):
        with pytest.raises(ValueError, match="at most one refinement"):
            MaskRecipe.parse(bad)
    with pytest.raises(ValueError, match="more than once"):
        parse_recipes("cam,cam")


def test_of_applies_changes_and_names_unknown_settings() -> None:
    assert MaskRecipe.of("cam", crf=True) == MaskRecipe("cam", crf=True)
    assert MaskRecipe.of(None) == MaskRecipe()
    base = MaskRecipe("cam", bg_threshold=0.3)
    assert MaskRecipe.of(base) is base
    with pytest.raises(ValueError, match="no setting blocks"):
        MaskRecipe.of("slot-cam", blocks="0")


def test_the_threshold_rule_is_applied_once_by_resolved() -> None:
    meta = CheckpointMeta(model="glnet_nano", bg_thresholds={"slot-cam": 0.6})
    assert MaskRecipe("slot-cam").resolved(meta).bg_threshold == 0.6
    assert MaskRecipe("cam").resolved(meta).bg_threshold == 0.15  # IRN's, when the checkpoint has none
    assert MaskRecipe("slot-cam", bg_threshold=0.2).resolved(meta).bg_threshold == 0.2  # given wins
    with pytest.raises(ValueError, match="not resolved"):
        _ = MaskRecipe("cam").threshold


def test_the_record_keeps_the_keys_earlier_folders_have() -> None:
    """settings.json of folders written before the recipe existed must still compare equal."""
    plain = MaskRecipe("slot-cam", crf=True, method_options={"blocks": "0,1"}, bg_threshold=0.6).record()
    assert plain == {"method": "slot-cam", "scales": [1.0], "flip": False, "method_options": {"blocks": "0,1"},
                     "bg_threshold": 0.6, "crf": True, "crf_params": {
                         "iterations": 10, "gaussian_sxy": 3.0, "gaussian_compat": 3.0, "bilateral_sxy": 80.0,
                         "bilateral_srgb": 13.0, "bilateral_compat": 10.0, "scale_factor": 1.0, "clip": 1e-05}}
    nocrf = MaskRecipe("cam", bg_threshold=0.5).record()
    assert nocrf["crf"] is False and nocrf["crf_params"] is None and "refinement" not in nocrf
    walked = MaskRecipe("cam", "slot-walk", bg_threshold=0.5, refinement_options={"steps": 4}).record()
    assert walked["refinement"] == "slot-walk" and walked["refinement_options"]["steps"] == 4
    assert walked["refinement_options"]["power"] == 4.0  # every option recorded, defaults too
    oracle = MaskRecipe(ORACLE_METHOD, method_options={"block": 2}).record()
    assert oracle == {"method": ORACLE_METHOD, "scales": [1.0], "flip": False, "oracle_block": 2}


def test_assignments_are_read_as_the_option_types() -> None:
    defaults = {"cam_weight": 0.5, "bias": True, "steps": 16, "blocks": (0, 1), "combine": "mean", "layers": None}
    got = parse_assignments(["cam_weight=0.3", "bias=false", "steps=4", "blocks=0,2", "combine=product",
                             "layers=stages.2,norm"], defaults, "x")
    assert got == {"cam_weight": 0.3, "bias": False, "steps": 4, "blocks": (0, 2), "combine": "product",
                   "layers": "stages.2,norm"}
    assert parse_assignments(["blocks=all"], defaults, "x") == {"blocks": "all"}  # a named choice stays text
    for bad, message in (("steps=many", "not a int"), ("bias=maybe", "not a bool"), ("nope=1", "no option 'nope'"),
                         ("steps", "NAME=VALUE")):
        with pytest.raises(ValueError, match=message):
            parse_assignments([bad], defaults, "x")


@pytest.mark.parametrize("argv, message", [
    (["--method", ORACLE_METHOD], "takes no CRF"),
    (["--method-option", "nonsense=1"], "slot-cam takes no option 'nonsense'"),
    (["--method-option", "cam_weight=heavy"], "'heavy' is not a float"),
    (["--method", "cam", "--slot-blocks", "0"], "--slot-blocks applies to --method slot-cam only"),
    (["--refine", "par", "--walk-steps", "3"], "--walk-steps applies to --refine slot-walk only"),
    (["--refine", "slot-walk", "--refine-option", "radius=-2"], "radius"),
    (["--method", ORACLE_METHOD, "--no-crf", "--sweep"], "no class scores to sweep"),
    (["--crf-iterations", "0"], "--crf-iterations"),
])
def test_eval_refuses_a_bad_recipe_before_touching_data_or_model(argv: list[str], message: str, tmp_path: Path,
                                                                  capsys) -> None:
    """The dataset root does not exist and the checkpoint is not a file: the recipe's error comes first."""
    out = tmp_path / "out"
    try:
        code = wsss_main(["eval", "--root", str(tmp_path / "no_such_dataset"), "--checkpoint",
                          str(tmp_path / "none.pth"), "--out", str(out), *argv])
    except SystemExit as exc:  # an argument error: argparse's own exit
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_generic_options_and_named_aliases_make_one_recipe() -> None:
    from glmix_vis.cli._dispatch import build_parser
    from glmix_vis.cli.eval_cmd import recipe_from_args

    parser = build_parser("glmix-wsss", "", {"eval": "glmix_vis.cli.eval_cmd"}, only="eval")

    def recipe(*argv: str) -> MaskRecipe:
        return recipe_from_args(parser.parse_args(["eval", *argv]))

    assert recipe("--slot-combine", "product") == recipe("--method-option", "combine=product")
    assert recipe("--refine", "slot-walk", "--walk-steps", "4") == recipe("--refine", "slot-walk", "--refine-option",
                                                                           "steps=4")
    assert recipe("--method", ORACLE_METHOD, "--no-crf", "--oracle-block", "1").oracle_block == 1
    full = recipe("--method", "cam", "--bg-threshold", "0.3", "--scales", "1,0.5", "--flip", "--crf-iterations", "3")
    assert full == MaskRecipe("cam", crf=True, bg_threshold=0.3, scales=(1.0, 0.5), flip=True,
                              crf_params=CRFParams(iterations=3))


def test_a_pseudo_mask_reads_its_threshold_and_refinement_from_its_recipe() -> None:
    """The recipe is the one owner of how a mask was made: a PseudoMask takes no threshold or refinement
    of its own that could disagree with it, and refuses a recipe it cannot have been made by."""
    import numpy as np

    from glmix_vis.wsss.masks import unary_probabilities
    from glmix_vis.wsss.pipeline import PseudoMask

    labels, scores = np.ones(1, np.float32), np.array([[[0.1, 0.5, 0.9]]], np.float32)
    mask = (scores[0] > 0.4).astype(np.uint8)
    recipe = MaskRecipe("slot-cam", "par", bg_threshold=0.4)
    with pytest.raises(TypeError, match="bg_threshold"):
        PseudoMask(labels=labels, scores=scores, bg_threshold=0.9, mask=mask, recipe=recipe, refined_scores=scores)
    with pytest.raises(TypeError, match="refinement"):
        PseudoMask(labels=labels, scores=scores, mask=mask, recipe=recipe, refined_scores=scores, refinement="none")
    made = PseudoMask(labels=labels, scores=scores, mask=mask, recipe=recipe, refined_scores=scores)
    assert (made.bg_threshold, made.refinement, made.bg_mode) == (0.4, "par", "threshold")
    np.testing.assert_array_equal(made.unary(), unary_probabilities(scores, labels, bg_threshold=0.4))
    with pytest.raises(ValueError, match="refined scores go with a refinement"):
        PseudoMask(labels=labels, scores=scores, mask=mask, recipe=recipe)
    with pytest.raises(ValueError, match="refined scores go with a refinement"):
        PseudoMask(labels=labels, scores=scores, mask=mask, recipe=MaskRecipe("cam", bg_threshold=0.4),
                   refined_scores=scores)
    with pytest.raises(ValueError, match="no background threshold yet"):
        PseudoMask(labels=labels, scores=scores, mask=mask, recipe=MaskRecipe("cam"))
    # a segmenter's mask: no threshold, the background is a class of its own ("rest")
    seg = PseudoMask(labels=labels, scores=scores, mask=mask, recipe=MaskRecipe("seg"))
    assert (seg.bg_threshold, seg.refinement, seg.bg_mode) == (None, "none", "rest")
    np.testing.assert_array_equal(seg.unary(), unary_probabilities(scores, labels, bg_mode="rest"))
