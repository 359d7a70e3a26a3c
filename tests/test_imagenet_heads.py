"""An official 1000-class checkpoint through every entry point: one class-name rule (background
first, the VOC classes through the ImageNet-to-VOC map) and the ImageNet names shown beside them.

The checkpoint is written as the authors' training script writes it (weights under ``model``,
a hydra ``DictConfig`` in ``args``), with a head that puts its mass on one ImageNet class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from glmix_vis import SlotPredictor, load_model
from glmix_vis.cli.vis import main as vis_main
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import VOC_CLASSES, save_palette_png
from glmix_vis.data.imagenet_voc import VOC_TO_IMAGENET, imagenet_class_names

AIRLINER = 404  # ImageNet-1k index; feeds VOC "aeroplane" (label 1)
H, W = 64, 80


def _official_checkpoint(path: Path, imagenet_class: int) -> Path:
    omegaconf = pytest.importorskip("omegaconf")
    torch.manual_seed(0)
    model = timm.create_model("glnet_nano", num_classes=1000)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[imagenet_class] = 20.0
    args = omegaconf.OmegaConf.create({"model": "glnet_nano", "input_size": 224, "output_dir": "./out",
                                       "log_dir": "${output_dir}/log"})
    torch.save({"model": model.state_dict(), "epoch": 299, "args": args}, path)
    return path


@pytest.fixture(scope="module")
def airliner_checkpoint(tmp_path_factory) -> Path:
    return _official_checkpoint(tmp_path_factory.mktemp("ckpt") / "glnet_nano_in1k.pth", AIRLINER)


@pytest.fixture()
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def test_load_model_reads_an_imagenet_head_as_voc(airliner_checkpoint):
    model, info = load_model(airliner_checkpoint, device="cpu")
    assert model.num_classes == 1000
    assert info.class_names == VOC_CLASSES and info.class_names[0] == "background" and len(info.class_names) == 21
    assert info.head_names is not None and info.head_names[AIRLINER] == "airliner"
    assert info.head_names == list(imagenet_class_names()) and len(info.head_names) == 1000
    assert [sorted(g) for g in info.class_map] == [sorted(VOC_TO_IMAGENET[c]) for c in VOC_CLASSES[1:]]


def test_predictor_names_the_class_the_head_predicts(airliner_checkpoint, photo):
    predictor = SlotPredictor.from_checkpoint(airliner_checkpoint, device="cpu")
    predictor.set_image(photo)
    scores = predictor.class_scores()
    assert scores.shape == (20,)
    assert predictor.info.foreground_names[int(scores.argmax())] == "aeroplane"
    top = predictor.top_predictions(3)
    assert top[0].name == "airliner" and top[0].feeds == "aeroplane" and top[0].score > 0.99
    mask = predictor.pseudo_mask("cam", bg_threshold=0.0)
    assert set(np.unique(mask)) <= {0, VOC_CLASSES.index("aeroplane")}


def test_slots_prints_imagenet_names_beside_voc_classes(airliner_checkpoint, photo, capsys):
    assert vis_main(["slots", str(photo), "--checkpoint", str(airliner_checkpoint), "--blocks", "0"]) == 0
    text = capsys.readouterr().out
    assert "airliner 1.00 (-> aeroplane)" in text
    assert "classes: aeroplane 1.00" in text and "bicycle 1.00" not in text
    assert vis_main(["slots", str(photo), "--checkpoint", str(airliner_checkpoint), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert max(report["classes"], key=report["classes"].get) == "aeroplane"
    assert report["head"][0] == {"name": "airliner", "score": 1.0, "feeds": "aeroplane"}


def test_evidence_figure_legend_names_the_imagenet_classes(airliner_checkpoint, photo):
    from glmix_vis.figures import evidence_panel

    predictor = SlotPredictor.from_checkpoint(airliner_checkpoint, device="cpu")
    fig = evidence_panel((predictor, [photo]), crf=False, dpi=60)
    texts = [t.get_text() for t in fig.texts] + [a.get_title() for a in fig.axes]
    assert any("airliner 1.00 (-> aeroplane)" in t for t in texts)
    assert any("aeroplane" in t for t in texts) and not any("bicycle" in t for t in texts)


def test_app_class_view_names_the_imagenet_classes(airliner_checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from glmix_vis.app import SlotApp

    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path))
    app = SlotApp(airliner_checkpoint, max_side=128, device="cpu")
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    text, scores, gallery, _ = app.class_view(rgb, airliner_checkpoint.name, None, "cam")
    assert set(scores) == set(VOC_CLASSES[1:]) and max(scores, key=scores.get) == "aeroplane"
    assert "airliner 1.00 (-> aeroplane)" in text
    assert gallery and gallery[0][1].startswith("aeroplane")


def _voc_tree(base: Path, split: str, ids: list[str]) -> Path:
    """A VOC2012 tree with the real 21 class names (no classes.json): aeroplanes in the middle."""
    voc = base / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in ids:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        mask = np.zeros((H, W), np.uint8)
        mask[16:48, 20:60] = VOC_CLASSES.index("aeroplane")
        mask[15, 20:60] = 255
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", mask)
    (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return base


@pytest.mark.parametrize("split", ["val", "train_aug"])
def test_eval_voc_with_an_official_checkpoint(airliner_checkpoint, tmp_path, split):
    root = _voc_tree(tmp_path / "data", split, ["2007_000032", "2007_000033"])
    if split == "train_aug":  # SBD-style label PNGs live in SegmentationClassAug
        voc = root / "VOCdevkit" / "VOC2012"
        (voc / "SegmentationClass").rename(voc / "SegmentationClassAug")
    out = tmp_path / "out"
    argv = ["eval", "--dataset", "voc", "--root", str(root), "--split", split, "--checkpoint",
            str(airliner_checkpoint), "--method", "cam", "--out", str(out), "--workers", "1"]
    assert wsss_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["iou"]) == VOC_CLASSES
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 2
    labels = set(np.unique(np.asarray(Image.open(masks[0]))))
    assert labels <= {0, VOC_CLASSES.index("aeroplane")}  # labels from the ground truth: aeroplane only


def test_every_entry_point_says_what_the_model_knows(airliner_checkpoint, photo, capsys):
    from glmix_vis import load_model as load

    _, demo = load(None, device="cpu")
    assert demo.is_demo and "bundled demo model" in demo.knowledge_note()
    assert "disk" in demo.knowledge_note() and "official checkpoint" in demo.knowledge_note()
    _, official = load(airliner_checkpoint, device="cpu")
    assert not official.is_demo and "ImageNet-1k head" in official.knowledge_note()
    assert vis_main(["slots", str(photo), "--blocks", "0"]) == 0
    assert "bundled demo model" in capsys.readouterr().out
    assert vis_main(["slots", str(photo), "--checkpoint", str(airliner_checkpoint), "--json"]) == 0
    assert "PASCAL VOC" in json.loads(capsys.readouterr().out)["model_note"]
