"""Slot quality: OCLF's object-discovery metrics on hand-computed cases and against scikit-learn,
the slot merge, the per-block driver and ``glmix-vis slot-quality``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from glmix_vis.cli.vis import main as vis_main
from glmix_vis.data.scenes import SceneConfig, generate_scenes
from glmix_vis.discovery.merge import merge_slots
from glmix_vis.discovery.metrics import (
    best_overlaps,
    corloc,
    fg_ari,
    hungarian_miou,
    mean_best_overlap,
    partition_consistency,
)
from glmix_vis.discovery.quality import (
    GroundTruthImage,
    dataset_images,
    image_slot_quality,
    partition_scores,
    slot_quality,
    write_slot_quality,
)

# Two instances and a background; the partition has two segments.
INSTANCES = np.array([[1, 1, 0, 0],
                      [1, 1, 0, 2],
                      [0, 0, 2, 2]])
PARTITION = np.array([[0, 0, 1, 1],
                      [0, 1, 1, 1],
                      [1, 1, 1, 1]])


def test_best_overlap_by_hand():
    # instance 1 (4 px): segment 0 covers 3 of them and nothing else -> 3/4; segment 1: 1/12
    # instance 2 (3 px): inside segment 1 (9 px, background included) -> 3/9
    np.testing.assert_allclose(best_overlaps(PARTITION, INSTANCES), [0.75, 1 / 3])
    assert mean_best_overlap(PARTITION, INSTANCES) == pytest.approx((0.75 + 1 / 3) / 2)
    assert corloc(PARTITION, INSTANCES) == 1.0
    assert hungarian_miou(PARTITION, INSTANCES) == pytest.approx((0.75 + 1 / 3) / 2)
    assert corloc(np.zeros_like(PARTITION), INSTANCES) == 0.0  # one segment: 4/12 and 3/12


def test_void_pixels_leave_segments_and_regions():
    inst = INSTANCES.copy()
    inst[1, 1] = 255  # the one pixel of instance 1 segment 0 missed
    np.testing.assert_allclose(best_overlaps(PARTITION, inst), [1.0, 3 / 8])
    ignore = np.zeros(inst.shape, bool)
    ignore[0, 3] = True  # void in the other mask (a class mask's band): the segment shrinks too
    np.testing.assert_allclose(best_overlaps(PARTITION, inst, ignore), [1.0, 3 / 7])


def test_hungarian_is_one_to_one_where_best_overlap_is_not():
    inst = np.array([[1, 1, 2, 2]])
    one = np.zeros((1, 4), int)  # one segment serves both instances in mBO, only one in Hungarian
    assert mean_best_overlap(one, inst) == pytest.approx(0.5)
    assert hungarian_miou(one, inst) == pytest.approx(0.25)


def test_images_without_regions_are_undefined():
    empty = np.array([[0, 0], [255, 0]])
    for metric in (mean_best_overlap, corloc, hungarian_miou, fg_ari):
        assert metric(np.zeros((2, 2), int), empty) is None


@pytest.mark.parametrize("seed", range(6))
def test_fg_ari_matches_sklearn_on_the_foreground(seed):
    rng = np.random.default_rng(seed)
    inst = rng.integers(0, 4, (20, 24))
    inst[rng.random(inst.shape) < 0.1] = 255
    pred = rng.integers(0, 1 + seed, (20, 24))
    pred[:10] = inst[:10] % 7  # half of it agrees, so the score is not near 0
    ignore = rng.random(inst.shape) < 0.05
    keep = (inst != 0) & (inst != 255) & ~ignore
    assert fg_ari(pred, inst, ignore) == pytest.approx(adjusted_rand_score(inst[keep], pred[keep]))


def test_fg_ari_edge_cases_as_oclf():
    inst = np.array([[1, 1, 2, 2]])
    assert fg_ari(np.array([[5, 5, 3, 3]]), inst) == pytest.approx(1.0)  # same partition, other ids
    assert fg_ari(np.array([[0, 0, 0, 0]]), np.array([[1, 1, 1, 0]])) == 1.0  # one cluster each: 1
    assert fg_ari(np.array([[0, 1, 2, 0]]), np.array([[1, 1, 1, 0]])) == pytest.approx(0.0)
    assert adjusted_rand_score([1, 1, 1], [0, 1, 2]) == pytest.approx(0.0)


def test_partition_consistency():
    a = np.array([[0, 0, 1, 1], [2, 2, 1, 1]])
    assert partition_consistency(a, (a + 3) % 5) == pytest.approx(1.0)  # relabelled: the same partition
    b = np.zeros_like(a)  # one segment: matches a's largest (4 px of 8: IoU 0.5), two unmatched
    assert partition_consistency(a, b) == pytest.approx(0.5 / 3)
    assert partition_consistency(b, a) == pytest.approx(0.5 / 3)


def test_merge_slots_groups_alike_features():
    hard = np.array([[0, 1, 2, 3], [4, 4, 5, 9]])
    feats = np.zeros((10, 3))
    feats[[0, 1, 2]] = [1, 0, 0]
    feats[[3, 4]] = [0, 1, 0.1]
    feats[[5, 9]] = [0, 0.1, 1]
    groups = merge_slots(hard, feats, 3)
    assert len(np.unique(groups)) == 3
    assert groups[0, 0] == groups[0, 1] == groups[0, 2] and groups[0, 3] == groups[1, 0]
    assert groups[1, 2] == groups[1, 3] != groups[0, 0]
    np.testing.assert_array_equal(merge_slots(hard, feats, 8), np.unique(hard, return_inverse=True)[1].reshape(2, 4))
    with pytest.raises(ValueError, match="at least 1"):
        merge_slots(hard, feats, 0)


def test_partition_scores_take_void_from_both_masks():
    mask = np.where(INSTANCES > 0, 3, 0)
    mask[0, 3] = 255
    scores = partition_scores(PARTITION, GroundTruthImage("x", np.zeros((3, 4, 3), np.uint8), mask, INSTANCES))
    assert scores["mbo_i"] == pytest.approx((0.75 + 3 / 8) / 2)
    # class 3 = both instances (7 px): segment 1 holds 4 of them among its 8 valid pixels -> 4/11; segment 0 3/7
    assert scores["mbo_c"] == pytest.approx(3 / 7)
    bare = partition_scores(PARTITION, GroundTruthImage("x", np.zeros((3, 4, 3), np.uint8)))
    assert set(bare.values()) == {None}


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    return generate_scenes(tmp_path_factory.mktemp("scenes"), 4, 3, SceneConfig(size=64), workers=1,
                           progress=False)


def test_slot_quality_averages_per_image_then_over_images(tiny_predictor, scenes_root):
    from glmix_vis.data import open_dataset

    ds = open_dataset("scenes", scenes_root, "val")
    report = slot_quality(tiny_predictor, dataset_images(ds), merge=2, num_classes=ds.num_classes, progress=False)
    blocks = list(range(tiny_predictor.num_glmix_blocks))
    per_image = []
    for truth in dataset_images(ds):
        tiny_predictor.set_image(truth.rgb, input_size=min(truth.rgb.shape[:2]))
        per_image.append(image_slot_quality(tiny_predictor, truth, blocks, merge=2))
    assert report.images == 3 and [b["block"] for b in report.blocks] == blocks
    for k, row in enumerate(report.blocks):
        for metric in ("fg_ari", "mbo_i", "mbo_c", "corloc", "miou"):
            assert row[metric] == pytest.approx(np.mean([p[k]["raw"][metric] for p in per_image]))
            assert row["merged"][metric] == pytest.approx(np.mean([p[k]["merged"][metric] for p in per_image]))
        assert 0 <= row["oracle_miou"] <= 1 and row["used_slots"] <= row["slots"]
        if k + 1 < len(blocks):
            want = np.mean([p[k]["consistency"]["raw"] for p in per_image])
            assert row["consistency_next"]["raw"] == pytest.approx(want)
    assert report.blocks[-1]["consistency_next"] is None
    assert all(len(np.unique(p[0]["groups"])) <= 2 for p in per_image)


def test_write_slot_quality_outputs(tiny_predictor, tmp_path):
    photo = GroundTruthImage("photo", np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    report = slot_quality(tiny_predictor, [photo], merge=3, progress=False, meta={"model": "tiny"})
    from glmix_vis.figures.discovery import save_slot_quality_figure

    written = write_slot_quality(report, tmp_path) + save_slot_quality_figure(report.to_dict(), tmp_path)
    assert {p.name for p in written} == {"slot_quality.json", "slot_quality.md", "slot_quality.png",
                                         "slot_quality.pdf"}
    data = json.loads((tmp_path / "slot_quality.json").read_text())
    assert data["model"] == "tiny" and data["blocks"][0]["fg_ari"] is None  # no ground truth
    assert 0 <= data["blocks"][0]["consistency_next"]["merged"] <= 1
    assert "Consistency" in (tmp_path / "slot_quality.md").read_text()


def test_slot_quality_cli(tiny_checkpoint, scenes_root, tmp_path, capsys):
    out = tmp_path / "sq"
    assert vis_main(["slot-quality", "--root", str(scenes_root), "--split", "val", "--out", str(out),
                     "--checkpoint", tiny_checkpoint, "--device", "cpu", "--limit", "2", "--blocks", "0,1",
                     "--quiet", "--no-figure"]) == 0
    data = json.loads((out / "slot_quality.json").read_text())
    assert data["images"] == 2 and data["merge"] == 6 and [b["block"] for b in data["blocks"]] == [0, 1]
    assert all(0 <= b[m] <= 1 for b in data["blocks"] for m in ("fg_ari", "mbo_i", "mbo_c", "corloc"))
    md = (out / "slot_quality.md").read_text()
    assert md.splitlines()[0].endswith("on generated scenes val (2 images)")  # not "voc val"
    assert "| block 0 (stage 1) = stages." in md  # both names of a block, once
    assert vis_main(["slot-quality", "--root", str(scenes_root), "--out", str(out), "--merge", "-1"]) == 2
    assert "--merge must be >= 0" in capsys.readouterr().err
    assert vis_main(["slot-quality", "--images", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_slot_quality_cli_on_bare_photos(tiny_checkpoint, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "sq"
    assert vis_main(["slot-quality", "--images", str(folder), "--out", str(out), "--checkpoint", tiny_checkpoint,
                     "--device", "cpu", "--quiet", "--no-figure"]) == 0
    data = json.loads((out / "slot_quality.json").read_text())
    assert data["images"] == 2 and data["dataset"] == "images" and data["blocks"][0]["mbo_i"] is None
    assert "No ground truth" in (out / "slot_quality.md").read_text()
