"""The slot atlas: purity, streamed grouping, CRAFT baseline, concept fidelity, gallery and CLI."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from glmix_vis.cli.vis import main as vis_main
from glmix_vis.data import open_dataset
from glmix_vis.data.scenes import SceneConfig, generate_scenes
from glmix_vis.discovery.atlas import AtlasConfig, build_atlas, purity, slot_class_counts
from glmix_vis.discovery.fidelity import ImportanceSum, concept_curves, single_concept_drops
from glmix_vis.discovery.gallery import gallery_html
from glmix_vis.discovery.quality import dataset_images
from glmix_vis.predictor import SlotPredictor


def test_purity_by_hand():
    hist = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    overall, per_group = purity(hist)
    assert overall == pytest.approx((8 + 2) / 14)
    np.testing.assert_allclose(per_group, [0.8, np.nan, 0.5])


def test_slot_class_counts_skip_void():
    hard = np.array([[0, 0, 3], [3, 3, 5]])
    mask = np.array([[1, 255, 2], [2, 0, 2]])
    counts = slot_class_counts(hard, np.array([0, 3, 5]), mask, 3)
    np.testing.assert_array_equal(counts, [[0, 1, 0], [1, 0, 2], [0, 0, 1]])
    assert not slot_class_counts(hard, np.array([0, 3, 5]), None, 3).any()


class _LeftHalf(nn.Module):
    """Class 0's score: the mean of channel 0 over the left half (deleted pixels are 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :, : x.shape[-1] // 2].mean((1, 2))[:, None]


def test_concept_deletion_and_insertion_by_hand():
    x = torch.ones(1, 3, 4, 8)
    cmap = np.zeros((4, 8), np.int64)
    cmap[:, 4:] = 1  # concept 0 = the left half, concept 1 = the right half
    present, drops = single_concept_drops(_LeftHalf(), x, cmap, lambda s: s)
    np.testing.assert_array_equal(present, [0, 1])
    np.testing.assert_allclose(drops[:, 0], [1.0, 0.0])
    table = ImportanceSum(2, 1)
    table.add(present, drops, np.array([True]))
    (row,) = concept_curves(_LeftHalf(), x, cmap, table.mean(), [0], lambda s: s)
    # deletion: scores 1, 0, 0 at removed fractions 0, 0.5, 1; insertion: 0, 1, 1
    assert row["deletion_auc"] == pytest.approx(0.25) and row["insertion_auc"] == pytest.approx(0.75)
    (worst,) = concept_curves(_LeftHalf(), x, cmap, -table.mean(), [0], lambda s: s)  # the wrong order
    assert worst["deletion_auc"] == pytest.approx(0.75) and worst["insertion_auc"] == pytest.approx(0.25)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return generate_scenes(tmp_path_factory.mktemp("scenes"), 8, 2, SceneConfig(size=64), workers=1,
                           progress=False)


def test_build_atlas_streams_and_accounts_for_every_slot(tiny_predictor, scenes, tmp_path):
    # the scenes' classes are not the tiny model's, so concept importance reads the classes the head
    # sees: a head biased to see every class, so that every image has classes to delete and insert
    model = copy.deepcopy(tiny_predictor.model)
    torch.nn.init.constant_(model.head.bias, 10.0)
    tiny_predictor = SlotPredictor(model, tiny_predictor.info, device="cpu")
    ds = open_dataset("scenes", scenes, "train")
    config = AtlasConfig(block=0, concepts=3, examples=2, fidelity_images=2, chunk_rows=16, craft_pixels=8)
    atlas = build_atlas(tiny_predictor, lambda: dataset_images(ds, 6), tmp_path, config,
                        class_names=ds.class_names, total=6, progress=False, meta={"model": "tiny"})
    members = [tuple(m) for c in atlas["concepts"] for m in c["members"]]
    expected = []
    for truth in dataset_images(ds, 6):
        tiny_predictor.set_image(truth.rgb, input_size=min(truth.rgb.shape[:2]))
        expected += [(truth.image_id, int(s)) for s in np.unique(tiny_predictor.hard_slots(0))]
    assert sorted(members) == sorted(expected) and atlas["slots"] == len(expected)  # each slot once
    assert sum(c["share"] for c in atlas["concepts"]) == pytest.approx(1.0)
    pur = atlas["purity"]
    assert pur["by_index"] <= pur["per_slot"] + 1e-9 and pur["atlas"] <= pur["per_slot"] + 1e-9
    assert 0 <= atlas["craft"]["purity"] <= 1
    for bank in ("slot_atlas", "craft"):
        assert atlas["fidelity"][bank]["images"] == 2 and 0 <= atlas["fidelity"][bank]["deletion_auc"] <= 1
    assert not list(tmp_path.glob(".atlas-*"))  # the spilled chunks are gone
    crops = [e["crop"] for c in atlas["concepts"] for e in c["examples"]]
    assert crops and all((tmp_path / p).is_file() for p in crops)
    page = gallery_html(atlas)
    links = re.findall(r"src='([^']+)'", page)
    assert sorted(links) == sorted(crops) and all(not p.startswith(("/", "http")) for p in links)
    assert "<script" not in page and "http" not in page


def test_contrast_rows_stand_out_from_their_image(tiny_predictor):
    from glmix_vis.discovery.atlas import slot_rows

    tiny_predictor.set_image(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    used, rows, hard, feats = slot_rows(tiny_predictor, 0, "contrast")
    assert rows.shape[0] == len(used) == len(np.unique(hard))
    np.testing.assert_allclose(rows.mean(0), 0, atol=1e-4)  # standardised over the image's slots
    assert np.allclose(rows.std(0)[rows.std(0) > 0], 1, atol=1e-3)
    _, region, _, _ = slot_rows(tiny_predictor, 0, "region")
    np.testing.assert_allclose(np.linalg.norm(region, axis=1), 1, atol=1e-5)  # the other kinds: unit rows


def test_atlas_config_is_checked():
    with pytest.raises(ValueError, match="features must be one of"):
        AtlasConfig(features="pixels")
    with pytest.raises(ValueError, match="at least 2 concepts"):
        AtlasConfig(concepts=1)


def test_atlas_cli(tiny_checkpoint, scenes, tmp_path, capsys):
    out = tmp_path / "atlas"
    assert vis_main(["atlas", "--root", str(scenes), "--split", "train", "--block", "-1", "--out", str(out),
                     "--checkpoint", tiny_checkpoint, "--device", "cpu", "--limit", "5", "--concepts", "3",
                     "--fidelity-images", "1", "--examples", "2", "--quiet"]) == 0
    atlas = json.loads((out / "atlas.json").read_text())
    assert atlas["block"] > 0 and atlas["images"] == 5 and len(atlas["concepts"]) == 3
    assert (out / "index.html").is_file() and (out / "atlas.png").is_file() and (out / "atlas.pdf").is_file()
    assert "purity: atlas" in capsys.readouterr().out
    assert vis_main(["atlas", "--root", str(scenes), "--out", str(out), "--block", "99",
                     "--checkpoint", tiny_checkpoint, "--device", "cpu", "--quiet"]) == 2
    assert "GLMix block 99 does not exist" in capsys.readouterr().err
