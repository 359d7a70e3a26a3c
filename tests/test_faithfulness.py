"""Faithfulness metrics: deletion/insertion AUC and ROAD against cases computed by hand, the score
function against ModelInfo.class_scores, the row store, and eval's --faithfulness block."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import random_checkpoint
from scipy.ndimage import gaussian_filter

from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data.labels import LabelSpace
from glmix_vis.loading import ModelInfo
from glmix_vis.wsss.faithfulness import (
    METRICS,
    FaithfulnessConfig,
    RowStore,
    deletion_insertion,
    head_score_fn,
    image_faithfulness,
    road,
    saliency_order,
    summarize,
    trapezoid_auc,
)

# pytorch-grad-cam's ROAD converts a torch bool tensor with np.float32 (numpy 2 warns about it)
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")

H = W = 16


class LeftHalfMean(nn.Module):
    """The score is the mean of channel 0 over the image's left half (region R)."""

    def forward(self, x):
        return x[:, 0, :, : x.shape[-1] // 2].mean((1, 2))[:, None]


def identity(logits):
    return logits


@pytest.fixture()
def case():
    image = torch.zeros(1, 3, H, W)
    image[..., : W // 2] = 1.0  # R is bright, the rest black
    inside = np.zeros((H, W), np.float32)
    inside[:, : W // 2] = 1.0  # the saliency ranks R first (ties inside R and outside it)
    return LeftHalfMean(), image, inside


def test_deletion_auc_in_closed_form(case):
    model, image, inside = case
    cfg = FaithfulnessConfig(steps=4, batch_size=3)
    # R first: R is half the pixels, so the score is 1, 1/2, 0, 0, 0 at 0, 1/4, ... 1 of the pixels removed
    deletion, _ = deletion_insertion(model, image, inside, identity, 0, cfg)
    assert deletion == pytest.approx((1 + 0.5) / 2 / 4 + (0.5 + 0) / 2 / 4)
    # R last: the black half goes first and changes nothing: 1, 1, 1, 1/2, 0
    deletion_rev, _ = deletion_insertion(model, image, 1 - inside, identity, 0, cfg)
    assert deletion_rev == pytest.approx(0.75)


def test_insertion_auc_in_closed_form(case):
    model, image, inside = case
    cfg = FaithfulnessConfig(steps=2)
    # start: R's mean in the blurred image (RISE's blur: sigma 5, kernel 11 = radius 5, mirrored borders)
    blurred = gaussian_filter(image[0, 0].numpy().astype(np.float64), sigma=5, mode="mirror", truncate=1.0)
    b = blurred[:, : W // 2].mean()
    _, insertion = deletion_insertion(model, image, inside, identity, 0, cfg)
    assert 0.2 < b < 0.95
    assert insertion == pytest.approx(((b + 1) / 2 + 1) / 2, abs=1e-6)  # curve b, 1, 1 at 0, 1/2, 1


def test_road_in_closed_form_and_reproducible(case):
    model, image, inside = case
    cfg = FaithfulnessConfig(percentiles=(50,))
    state = torch.get_rng_state()
    r = road(model, image, inside[None], identity, [0], cfg)
    assert torch.equal(torch.get_rng_state(), state)  # the imputation noise has its own seed
    # MoRF at 50 imputes exactly R, from black neighbours: R becomes ~0; LeRF keeps R as it is
    assert r["road_morf"][0] == pytest.approx(-1.0, abs=0.02)
    assert r["road_lerf"][0] == pytest.approx(0.0, abs=1e-6)
    assert r["road_combined"][0] == pytest.approx(0.5, abs=0.01)
    again = road(model, image, inside[None], identity, [0], cfg)
    assert all(np.array_equal(r[k], again[k]) for k in r)


def test_image_faithfulness_rows_and_summary(case):
    model, image, inside = case
    rows = image_faithfulness(model, image, np.stack([inside, 1 - inside]), [0, 0], identity,
                              FaithfulnessConfig(percentiles=(50,), steps=4))
    assert [r["class"] for r in rows] == [0, 0] and set(METRICS) <= set(rows[0])
    assert rows[0]["road_combined"] > rows[1]["road_combined"] and rows[0]["deletion_auc"] < rows[1]["deletion_auc"]
    summary = summarize([{"image_id": "a", "classes": rows}])
    assert summary["images"] == 1 and summary["pairs"] == 2
    assert summary["deletion_auc"] == pytest.approx((rows[0]["deletion_auc"] + rows[1]["deletion_auc"]) / 2)


def test_saliency_order_breaks_ties_and_auc():
    place = saliency_order(np.array([[0.0, 2.0], [0.0, 1.0]]), seed=0)
    assert place[0, 1] == 0 and place[1, 1] == 1 and sorted(place.ravel()) == [0, 1, 2, 3]
    assert trapezoid_auc([1, 0]) == 0.5 and trapezoid_auc([0, 1, 1]) == 0.75
    with pytest.raises(ValueError):
        trapezoid_auc([1])


def test_the_score_is_what_model_info_reads():
    logits = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    sigmoid = ModelInfo(name="x", labels=LabelSpace(("background", *"abcdef")))
    softmax = ModelInfo(name="x", labels=LabelSpace(("background", "p", "q"), class_map=[[0, 3], [1, 2, 5]],
                                                      multilabel=False))
    for info in (sigmoid, softmax):
        batched = head_score_fn(info)(logits).numpy()
        assert np.allclose(batched, np.stack([info.class_scores(row) for row in logits]), atol=1e-6)


def test_row_store_resumes_and_drops_rows_of_other_settings(tmp_path):
    path = tmp_path / "rows.jsonl"
    store = RowStore(path, FaithfulnessConfig())
    store.add("a", [{"class": 1, **dict.fromkeys(METRICS, 0.5)}])
    with open(path, "a") as f:
        f.write('{"image_id": "torn", "conf')  # a torn line is ignored
    assert "a" in RowStore(path, FaithfulnessConfig()) and "torn" not in RowStore(path, FaithfulnessConfig())
    assert "a" not in RowStore(path, FaithfulnessConfig(steps=7))
    with pytest.raises(ValueError, match="percentiles"):
        FaithfulnessConfig(percentiles=(0, 50))


@pytest.fixture(scope="module")
def scenes(make_scenes):
    root = make_scenes(4, 4, size=64)
    return root, random_checkpoint(root, input_size=64, name="faithfulness_nano.safetensors")


def _eval(root, ckpt, out, *extra):
    return wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt), "--out", str(out),
                      "--workers", "1", "--no-crf", "--limit", "4", *extra])


def test_eval_faithfulness_block_and_resume(scenes, tmp_path):
    root, ckpt = scenes
    out = tmp_path / "run"
    assert _eval(root, ckpt, out, "--method", "gradcam", "--faithfulness", "--faithfulness-images", "2") == 0
    block = json.loads((out / "metrics.json").read_text())["faithfulness"]
    assert set(METRICS) <= set(block) and block["images"] == 2 and block["pairs"] >= 2
    assert block["percentiles"] == [20, 40, 60, 80] and block["steps"] == 20
    assert 0 <= block["deletion_auc"] <= 1 and 0 <= block["insertion_auc"] <= 1
    assert "Faithfulness" in (out / "metrics.md").read_text()
    rows = [json.loads(line) for line in (out / "faithfulness.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:  # a resumed run reads the rows back instead of recomputing them
        for c in row["classes"]:
            c["deletion_auc"] = 0.125
    (out / "faithfulness.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _eval(root, ckpt, out, "--method", "gradcam", "--faithfulness", "--faithfulness-images", "2") == 0
    assert json.loads((out / "metrics.json").read_text())["faithfulness"]["deletion_auc"] == 0.125


def test_eval_rejects_faithfulness_of_the_oracle_and_target_layers_of_cam(scenes, tmp_path, capsys):
    root, ckpt = scenes
    assert _eval(root, ckpt, tmp_path / "o", "--method", "slot-oracle", "--faithfulness") == 2
    assert "faithfulness" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert _eval(root, ckpt, tmp_path / "c", "--method", "cam", "--target-layers", "norm") == 2
    assert "--target-layers applies to" in capsys.readouterr().err
    assert _eval(root, ckpt, tmp_path / "g", "--method", "gradcam", "--target-layers", "stages.7") == 2
    err = capsys.readouterr().err
    assert "stages.7" in err and "norm" in err and not (tmp_path / "g").exists()
