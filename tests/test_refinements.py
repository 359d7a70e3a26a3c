"""Training-free refinements before the mask (and the CRF): PAR and the slot random walk.

Both must keep a mask inside the image's labels, sharpen a deliberately blurred boundary, keep
their shape contracts at odd sizes, refuse bad options clearly, and run through ``glmix-wsss eval``
(its sweep measuring the masks it writes) and ``SlotPredictor.pseudo_mask`` alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glmix_vis.assets import default_checkpoint
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import open_dataset
from glmix_vis.io import load_image
from glmix_vis.models.slots import BlockIndexError, SlotMap, SlotOutput
from glmix_vis.predictor import SlotPredictor
from glmix_vis.wsss.masks import scores_to_mask, unary_probabilities
from glmix_vis.wsss.par import PARParams, par_weights
from glmix_vis.wsss.pipeline import ImageInput, pseudo_mask
from glmix_vis.wsss.recipe import MaskRecipe
from glmix_vis.wsss.refinement import REFINEMENTS, get_refinement
from glmix_vis.wsss.slot_walk import SlotWalkConfig, walk_grid, walk_offsets

SIZE = 96


# ------------------------------------------------------------------ synthetic scenes
def _two_regions(h: int, w: int, edge: int) -> np.ndarray:
    """RGB image: red left of column ``edge``, blue from it on."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :edge] = (200, 30, 30)
    img[:, edge:] = (30, 30, 200)
    return img


def _blurred_evidence(h: int, w: int, centre: float, width: float, k: int = 3) -> np.ndarray:
    """``(K, H, W)``: class 0 a soft ramp falling through 0.5 at column ``centre``, the others 0."""
    x = np.arange(w, dtype=np.float32)
    ev = np.zeros((k, h, w), np.float32)
    ev[0] = 1.0 / (1.0 + np.exp((x - centre) / width))[None]
    return ev


def _mask(evidence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return scores_to_mask(evidence, 0.5, labels)


def _slots(h: int, w: int, grid: tuple[int, int], edge: int, num_slots: int = 3) -> SlotOutput:
    """A two-block SlotOutput (block 1 on a 2x coarser grid) whose dispatch sends the cells left of
    the image column ``edge`` to slot 0 and the others to slot 1 (slot 2 stays empty), as GLMix
    blocks that grouped the two regions."""

    def block(index: int, gh: int, gw: int) -> SlotMap:
        centres = (np.arange(gw) + 0.5) * w / gw
        left = np.broadcast_to(centres < edge, (gh, gw))
        logits = np.full((num_slots, gh, gw), -8.0, np.float32)
        logits[0][left] = 8.0
        logits[1][~left] = 8.0
        return SlotMap(stage=index, block=0, grid=(gh, gw), logits=torch.from_numpy(logits.reshape(1, num_slots, -1)),
                       slots=torch.zeros(1, num_slots, 4), input_size=(h, w))

    gh, gw = grid
    maps = [block(0, gh, gw), block(1, max(1, gh // 2), max(1, gw // 2))]
    return SlotOutput(logits=torch.zeros(1, 3), features=torch.zeros(1, 4, gh, gw), maps=maps)


def _accuracy(mask: np.ndarray, edge: int) -> float:
    truth = np.zeros(mask.shape, np.int64)
    truth[:, :edge] = 1
    return float((mask == truth).mean())


# ------------------------------------------------------------------ the refinements themselves
def test_par_sharpens_a_blurred_boundary() -> None:
    h, w, edge = 41, 67, 30
    image = _two_regions(h, w, edge)
    blurred = _blurred_evidence(h, w, centre=edge + 5.0, width=6.0)  # spills 5 px into the blue region
    labels = np.array([1, 0, 0], np.float32)
    before = _mask(blurred, labels)
    after = _mask(get_refinement("par")(blurred, labels, image=image), labels)
    assert _accuracy(before, edge) < 0.93
    assert _accuracy(after, edge) > 0.98  # the colour edge decides now (AFA's half size: within a pixel)
    full = get_refinement("par", {"downscale": 1})(blurred, labels, image=image)
    assert _accuracy(_mask(full, labels), edge) == 1.0
    # the colour weights: a neighbour across the edge counts for (next to) nothing
    weights = par_weights(torch.tensor(image, dtype=torch.float32).permute(2, 0, 1))
    assert weights.shape == (48, h, w)
    torch.testing.assert_close(weights.sum(0), torch.full((h, w), 1.01), rtol=0, atol=1e-5)
    assert float(weights[4, 5, edge - 1]) < 1e-3  # (0, +1) from the last red column is blue


def test_slot_walk_sharpens_a_blurred_boundary_along_the_slots() -> None:
    h, w, edge = 40, 64, 32
    blurred = _blurred_evidence(h, w, centre=edge - 6.0, width=5.0)  # stops 6 px short of the edge
    labels = np.array([1, 0, 0], np.float32)
    slots = _slots(h, w, (10, 16), edge)
    refined = get_refinement("slot-walk", {"steps": 20, "radius": 3})(blurred, labels, slots=slots)
    before, after = _mask(blurred, labels), _mask(refined, labels)
    assert _accuracy(before, edge) < 0.92
    assert _accuracy(after, edge) > 0.97
    # a grid over max_cells is shrunk, the radius with it: the same reach, the same contract
    (grid, scale) = walk_grid(slots.maps, max_cells=40)
    assert grid == (5, 8) and scale == pytest.approx(0.5)
    coarse = get_refinement("slot-walk", {"steps": 20, "radius": 3, "max_cells": 40})(blurred, labels, slots=slots)
    assert coarse.shape == blurred.shape and _accuracy(_mask(coarse, labels), edge) > 0.95
    # with a dispatch that groups nothing (one slot for all), the walk is only a blur: no better
    flat = _slots(h, w, (10, 16), edge=w + 1)
    blurred_more = _mask(get_refinement("slot-walk", {"steps": 20, "radius": 3})(blurred, labels, slots=flat), labels)
    assert _accuracy(blurred_more, edge) <= _accuracy(before, edge) + 0.02


@pytest.mark.parametrize("name", ["par", "slot-walk"])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 18), (17, 61)])
def test_refinements_keep_the_labels_and_their_shape_contract(name: str, size: tuple[int, int]) -> None:
    h, w = size
    rng = np.random.default_rng(h * 100 + w)
    k = 4
    evidence = rng.random((k, h, w)).astype(np.float32)  # every plane non-zero, the absent classes too
    labels = np.array([0, 1, 0, 1], np.float32)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    slots = _slots(h, w, (max(1, h // 4), max(1, w // 4)), edge=w // 2)
    refinement = get_refinement(name)
    out = refinement(evidence, labels, image=image, slots=slots)
    assert out.shape == (k, h, w) and out.dtype == np.float32
    assert not out[[0, 2]].any()  # classes outside the labels stay at 0
    assert (out >= 0).all() and (out <= 1).all()
    assert set(np.unique(_mask(out, labels))) <= {0, 2, 4}
    prepared = refinement.prepare(size=(h, w), image=image, slots=slots)
    # plane by plane: a class's refined evidence does not depend on the other classes
    alone = prepared(np.where(np.arange(k)[:, None, None] == 1, evidence, 0), np.array([0, 1, 0, 0], np.float32))
    np.testing.assert_allclose(alone[1], out[1], atol=1e-6)
    # a constant plane stays as it is: refining the evidence and then thresholding it is refining
    # the stack [threshold, evidence] (AFA's PAR on its CAMs beside a constant background)
    flat = prepared(np.full((k, h, w), 0.37, np.float32), np.ones(k, np.float32))
    np.testing.assert_allclose(flat, 0.37, atol=1e-5)


def test_refinement_options_are_validated() -> None:
    assert REFINEMENTS == ("none", "par", "slot-walk")
    for options, message in [({"steps": -1}, "steps"), ({"steps": 1.5}, "steps"), ({"power": 0}, "power"),
                             ({"radius": 0}, "radius"), ({"top_k": -2}, "top_k"), ({"combine": "max"}, "combine"),
                             ({"residual": "yes"}, "residual"), ({"max_cells": -1}, "max_cells"),
                             ({"blocks": "a,b"}, "blocks"), ({"blocks": ()}, "blocks"), ({"bogus": 1}, "bogus")]:
        with pytest.raises(ValueError, match=message):
            get_refinement("slot-walk", options)
    with pytest.raises(ValueError, match="refinement must be one of"):
        get_refinement("crf")
    with pytest.raises(ValueError, match="takes no options"):
        get_refinement("none", {"steps": 2})
    with pytest.raises(ValueError, match="iterations"):
        get_refinement("par", {"iterations": -1})
    with pytest.raises(ValueError, match="downscale"):
        PARParams(downscale=0)
    walk = get_refinement("slot-walk", {"blocks": "0,-1", "steps": 3})
    assert walk.settings()["blocks"] == [0, -1] and walk.settings()["steps"] == 3
    walk.check(4)
    with pytest.raises(BlockIndexError, match="does not exist"):
        get_refinement("slot-walk", {"blocks": "7"}).check(4)
    with pytest.raises(ValueError, match="pass its forward pass"):
        get_refinement("slot-walk")(np.ones((2, 3, 3), np.float32), [1])
    with pytest.raises(ValueError, match="RGB image"):
        get_refinement("par")(np.ones((2, 3, 3), np.float32), [1])
    assert walk_offsets(1) == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]
    assert SlotWalkConfig(blocks="all").block_indices(3) == [0, 1, 2]


# ------------------------------------------------------------------ eval and the predictor
@pytest.fixture(scope="module")
def scenes(make_scenes) -> Path:
    return make_scenes(2, 4, size=SIZE, seed=5)


@pytest.fixture(scope="module")
def predictor() -> SlotPredictor:
    return SlotPredictor.from_checkpoint(default_checkpoint(), device="cpu")


def _eval(scenes: Path, out: Path, *extra: str) -> int:
    return wsss_main(["eval", "--root", str(scenes), "--split", "val", "--out", str(out), "--workers", "1",
                      "--limit", "4", *extra])


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("refine,extra,again", [
    ("par", [], ["--refine", "slot-walk"]),
    ("slot-walk", ["--no-crf", "--walk-steps", "4", "--walk-blocks", "0", "--walk-radius", "3"],
     ["--refine", "none", "--no-crf"]),
    ("slot-walk", [], ["--refine", "slot-walk", "--walk-power", "2"]),
    ("par", ["--no-crf", "--par-iterations", "5"], ["--refine", "par", "--no-crf", "--par-iterations", "3"]),
], ids=["par+crf", "walk-options", "walk+crf", "par-options"])
def test_eval_refines_and_the_predictor_returns_the_same_masks(scenes: Path, predictor: SlotPredictor, tmp_path: Path,
                                                                refine: str, extra: list[str], again: list[str],
                                                                capsys) -> None:
    out = tmp_path / "eval"
    assert _eval(scenes, out, "--refine", refine, "--sweep", "--bg-threshold", "0.5", *extra) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    settings = json.loads((out / "settings.json").read_text())
    assert metrics["settings"]["refinement"] == settings["refinement"] == refine
    assert settings["refinement_options"] == metrics["settings"]["refinement_options"]
    assert refine in (out / "metrics.md").read_text().splitlines()[0]
    options = get_refinement(refine, settings["refinement_options"]).settings()
    assert options == settings["refinement_options"]  # every option recorded, defaults too
    crf = "--no-crf" not in extra
    # the sweep measures the masks eval writes: at the run's own threshold, the same mIoU
    sweep = metrics["threshold_sweep"]
    at = sweep["thresholds"].index(0.5)
    assert sweep["miou"][at] == pytest.approx(metrics["nocrf"]["miou"] if crf else metrics["miou"], abs=6e-5)

    # resuming with another refinement (or none, or another option) is refused, and nothing is overwritten
    masks = {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")}
    assert _eval(scenes, out, "--bg-threshold", "0.5", "--sweep", *again) == 2
    assert "other settings" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")} == masks

    dataset = open_dataset("voc", scenes, "val")
    for i, image_id in enumerate(dataset.image_ids[:4]):
        image = load_image(dataset.image_path(i), exif_transpose=False)
        predictor.set_image(image, input_size=min(image.shape[:2]))
        labels = dataset.image_labels(i)
        kw = dict(labels=labels, bg_threshold=0.5, refinement=refine, refinement_options=settings["refinement_options"])
        before = predictor.pseudo_mask("slot-cam", crf=False, **kw)
        assert set(np.unique(before)) <= {0, *(np.flatnonzero(labels) + 1)}
        np.testing.assert_array_equal(_png(out / ("masks_nocrf" if crf else "masks") / f"{image_id}.png"), before)
        if crf:
            np.testing.assert_array_equal(_png(out / "masks" / f"{image_id}.png"),
                                          predictor.pseudo_mask("slot-cam", crf=True, **kw))


@pytest.mark.parametrize("argv, expected", [
    (["--refine", "crf"], "invalid choice: 'crf'"),
    (["--walk-steps", "-1"], "--walk-steps: expected a whole number >= 0, got -1"),
    (["--walk-power", "0"], "--walk-power: expected a number > 0, got 0"),
    (["--walk-radius", "nan"], "--walk-radius: expected a number > 0, got nan"),
    (["--par-downscale", "0"], "--par-downscale: expected a whole number >= 1, got 0"),
])
def test_bad_refinement_values_are_one_line(argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        wsss_main(["eval", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_eval_refuses_bad_refinement_options_before_writing(scenes: Path, tmp_path: Path, capsys) -> None:
    for extra, message in [(["--walk-steps", "3"], "--walk-steps applies to --refine slot-walk only"),
                           (["--refine", "slot-walk", "--par-iterations", "3"], "--par-iterations applies to"),
                           (["--refine", "slot-walk", "--walk-blocks", "9"], "GLMix block 9 does not exist"),
                           (["--refine", "slot-walk", "--walk-blocks", "x"], "slot-walk blocks"),
                           (["--refine", "par", "--method", "slot-oracle", "--no-crf"], "takes no refinement")]:
        out = tmp_path / "never"
        assert _eval(scenes, out, *extra) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_the_refined_unary_is_what_the_crf_starts_from(scenes: Path, predictor: SlotPredictor) -> None:
    dataset = open_dataset("voc", scenes, "val")
    image = dataset.load_image(0)
    predictor.set_image(image)
    labels = dataset.image_labels(0)
    view = ImageInput(image, predictor.batch, predictor.output)
    plain = pseudo_mask(predictor.model, predictor.info, view, MaskRecipe("slot-cam", bg_threshold=0.5), labels)
    par = pseudo_mask(predictor.model, predictor.info, view, MaskRecipe("slot-cam", "par", bg_threshold=0.5), labels)
    np.testing.assert_array_equal(plain.scores, par.scores)
    np.testing.assert_array_equal(plain.unary(), unary_probabilities(plain.scores, labels, bg_threshold=0.5))
    assert par.refinement == "par" and plain.refined_scores is None
    np.testing.assert_array_equal(par.unary(), unary_probabilities(par.refined_scores, labels, bg_threshold=0.5))
    np.testing.assert_array_equal(par.mask, scores_to_mask(par.refined_scores, 0.5, labels))
    np.testing.assert_array_equal(par.masks_at([0.5])[0], par.mask)
    assert not np.array_equal(par.mask, plain.mask)
    # without a refinement the threshold sweep is the fast one on the scores, with the same masks
    np.testing.assert_array_equal(plain.masks_at([0.3, 0.5])[1], plain.mask)
