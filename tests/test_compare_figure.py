"""The methods-side-by-side figure (``--layout compare``) and the recipe strings that name its columns."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from glmix_vis.figures import method_comparison
from glmix_vis.predictor import SlotPredictor
from glmix_vis.wsss.recipe import MaskRecipe, parse_recipes

DPI = 40


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((48, 72, 3), 30, np.uint8)
    image[8:40, 10:40] = (220, 60, 40)
    gt = np.zeros((48, 72), np.uint8)
    gt[8:40, 10:40] = 2
    gt[8, 10:40] = 255  # void on the boundary, as VOC
    return image, gt


def test_recipes_parse_round_trip_and_reject_what_is_out_of_place() -> None:
    r = MaskRecipe.parse("Slot_CAM+slot-walk+CRF")
    assert r == MaskRecipe("slot-cam", "slot-walk", True)
    assert MaskRecipe.parse(r.name) == r and r.title == "slot-CAM + slot walk + CRF"
    assert MaskRecipe.parse("cam") == MaskRecipe("cam") and MaskRecipe("cam").name == "cam"
    for bad, word in (("camm", "unknown method"), ("cam+crf+par", "at most one refinement"),
                      ("cam+par+slot-walk", "at most one refinement"), ("cam+blur", "at most one refinement")):
        with pytest.raises(ValueError, match=word):
            MaskRecipe.parse(bad)
    with pytest.raises(ValueError, match="more than once"):
        parse_recipes("cam,slot-cam,cam")
    assert [x.name for x in parse_recipes("cam, slot-cam+crf,")] == ["cam", "slot-cam+crf"]


def test_columns_are_the_masks_the_predictor_makes(tiny_predictor, scene, monkeypatch) -> None:
    image, gt = scene
    calls = []
    original = SlotPredictor.pseudo_mask

    def spy(self, recipe, labels=None, **kw):
        calls.append((recipe.method, None if labels is None else labels.tolist(), recipe.crf, recipe.refinement))
        return original(self, recipe, labels, **kw)

    monkeypatch.setattr(SlotPredictor, "pseudo_mask", spy)
    recipes = ["cam", "slot-cam+crf", "slot-cam+slot-walk+crf", "cam+par"]
    fig = method_comparison((tiny_predictor, [image, image]), recipes, ground_truth=[gt, None], dpi=DPI,
                            row_labels=["a", "b"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == (1 + 1 + 4) + (1 + 4)  # input, ground truth (row 1 only), one per recipe
    titles = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("slot-CAM + slot walk + CRF" in t or "slot walk" in t for t in titles)
    assert "ground truth" in titles
    # row 1 uses the ground truth's classes (square = foreground index 1), row 2 the head's
    assert [c[1] for c in calls[:4]] == [[0.0, 1.0, 0.0]] * 4
    assert all(c[1] is None for c in calls[4:])
    assert [(c[0], c[2], c[3]) for c in calls[:4]] == [("cam", False, "none"), ("slot-cam", True, "none"),
                                                        ("slot-cam", True, "slot-walk"), ("cam", False, "par")]


def test_ground_truth_must_match_the_image(tiny_predictor, scene) -> None:
    image, gt = scene
    with pytest.raises(ValueError, match="ground truth is"):
        method_comparison((tiny_predictor, [image]), ["cam"], ground_truth=[gt[:-1]], dpi=DPI)
    with pytest.raises(ValueError, match="foreground classes"):
        method_comparison((tiny_predictor, [image]), ["cam"], ground_truth=[np.full_like(gt, 9)], dpi=DPI)


def test_cli_compare_layout(tiny_checkpoint, scene, tmp_path, capsys) -> None:
    from glmix_vis.cli.vis import main
    image, gt = scene
    images, truth = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    truth.mkdir()
    Image.fromarray(image).save(images / "s1.jpg")
    Image.fromarray(gt, mode="L").save(truth / "s1.png")
    out = tmp_path / "cmp.png"
    base = [str(images / "s1.jpg"), "--checkpoint", tiny_checkpoint, "--layout", "compare", "--dpi", str(DPI),
            "--device", "cpu", "--out", str(out)]
    assert main(["figure", *base, "--methods", "cam,slot-cam+slot-walk+crf", "--gt", str(truth)]) == 0
    assert out.stat().st_size > 0
    capsys.readouterr()
    assert main(["figure", *base, "--methods", "cam,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--methods" in err and "nope" in err and len(err.splitlines()) == 1
    (truth / "s1.png").unlink()
    assert main(["figure", *base, "--gt", str(truth)]) == 2
    assert "no ground truth for s1.jpg" in capsys.readouterr().err
    assert main(["figure", *base[:-2], "--layout", "grid", "--gt", str(truth)]) == 2


def test_evidence_columns_show_what_the_masks_threshold(tiny_predictor, scene) -> None:
    """An evidence column of ``method[+refinement]`` is the evidence that recipe's mask thresholds
    (here: the slot walk's refined evidence), of the row's most probable allowed class."""
    from glmix_vis.figures.recipes import recipe_evidence, recipe_mask
    from glmix_vis.wsss.masks import scores_to_mask

    image, gt = scene
    tiny_predictor.set_image(image)
    walk = MaskRecipe("slot-cam", "slot-walk")
    labels = np.array([0.0, 1.0, 1.0], np.float32)
    refined = recipe_evidence(tiny_predictor, walk, labels)
    assert np.array_equal(scores_to_mask(refined, 0.3, labels), recipe_mask(tiny_predictor, walk, labels, 0.3))
    assert not np.allclose(refined, recipe_evidence(tiny_predictor, MaskRecipe("slot-cam"), labels))

    fig = method_comparison(tiny_predictor, ["slot-cam+slot-walk+crf"], evidence=["slot-cam", "slot-cam+slot-walk"],
                            ground_truth=[gt], bg_threshold=0.3, contours=True, dpi=DPI)
    assert len([ax for ax in fig.axes if ax.images]) == 1 + 1 + 2 + 1  # input, ground truth, 2 heatmaps, 1 mask
    titles = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("input · square") for t in titles)  # the ground truth's only class
    with pytest.raises(ValueError, match="the CRF makes a mask"):
        method_comparison(tiny_predictor, ["cam"], evidence=["cam+crf"], dpi=DPI)
