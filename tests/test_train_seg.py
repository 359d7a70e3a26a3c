"""Stage 2: train-seg on tiny generated scenes, eval --method seg, DDP equivalence, resume, refused masks."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import open_dataset, save_palette_png, voc_palette
from glmix_vis.data.mask_source import MaskSource
from glmix_vis.data.scenes import SceneConfig, generate_scenes
from glmix_vis.loading import load_model
from glmix_vis.models.checkpoints import read_checkpoint
from glmix_vis.train_seg import SegTrainConfig, segmentation_loss, train_segmenter
from glmix_vis.training import global_batch_order


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate_scenes(root, n_train=8, n_val=4, config=SceneConfig(size=64), workers=1, progress=False)
    return root


def _config(root, out, **changes) -> SegTrainConfig:
    settings = dict(root=str(root), out=str(out), masks="gt", epochs=1, batch_size=2, crop_size=32, workers=0,
                    val_every=0, decoder_dim=16, decoder_dropout=0.0, device="cpu", max_train_images=4)
    settings.update(changes)
    return SegTrainConfig(**settings)


def _weights(path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in read_checkpoint(path).select()[1].items()}


# ------------------------------------------------------------------------------------ the rules
def test_global_batches_split_over_ranks_are_the_single_process_batches():
    alone = global_batch_order(10, 4, seed=3, epoch=2)
    ranks = [global_batch_order(10, 4, seed=3, epoch=2, rank=r, world=2) for r in range(2)]
    assert len(alone) == 8  # the last, incomplete batch is dropped
    for step in range(2):
        together = ranks[0][2 * step:2 * step + 2] + ranks[1][2 * step:2 * step + 2]
        assert together == alone[4 * step:4 * step + 4]
    assert global_batch_order(10, 4, seed=3, epoch=3) != alone  # reshuffled per epoch


def test_balanced_loss_weighs_background_and_foreground_equally():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 5.0  # confident background everywhere
    target = torch.tensor([[[0, 0], [0, 2]]])
    balanced = segmentation_loss(logits, target, balanced=True)
    plain = segmentation_loss(logits, target, balanced=False)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")[0]
    assert balanced == pytest.approx(0.5 * (per_pixel[target[0] == 0].mean() + per_pixel[1, 1]).item())
    assert plain == pytest.approx(per_pixel.mean().item())
    assert balanced > plain  # the one wrong foreground pixel counts as much as all the background
    ignored = segmentation_loss(logits, torch.full_like(target, 255), balanced=True)
    assert ignored.item() == 0.0  # no labelled pixel: zero, not NaN


# ------------------------------------------------------------------------------------ end to end
def test_train_seg_then_eval_seg(tiny_scenes, tmp_path, capsys):
    run = tmp_path / "run"
    code = wsss_main(["train-seg", "--root", str(tiny_scenes), "--masks", "gt", "--out", str(run), "--epochs", "1",
                      "--batch-size", "2", "--crop-size", "32", "--max-train-images", "4", "--workers", "0", "--decoder-dim", "16",
                      "--val-every", "1", "--device", "cpu"])
    assert code == 0
    said = capsys.readouterr().out.splitlines()[0]  # what it will do, before the first step
    assert said.startswith("training a glnet_nano mlp segmenter (") and "on 4 train images of" in said, said
    assert "the dataset's own masks" in said and "1 epochs of 2 steps" in said and str(run) in said, said
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and {"train_loss", "val_miou", "seconds", "images_per_s", "peak_memory_mb"} <= set(history[0])
    model, info = load_model(run / "final.safetensors", device="cpu")
    assert info.labels.segmentation and info.class_names == open_dataset("voc", tiny_scenes, "val").class_names
    assert info.meta.extra["masks"]["source"] == "gt" and info.meta.extra["training"]["batch_size"] == 2
    # the predictor's short side is the backbone's own input size (the bundled init's 160), never the crop
    assert tuple(info.meta.input_size) == (160, 160)
    out = tmp_path / "eval"
    code = wsss_main(["eval", "--root", str(tiny_scenes), "--split", "val", "--checkpoint",
                      str(run / "final.safetensors"), "--method", "seg", "--no-crf", "--workers", "0",
                      "--out", str(out), "--device", "cpu"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["method"] == "seg" and metrics["images"] == 4
    assert history[0]["val_miou"] == pytest.approx(metrics["miou"], abs=1e-3)  # the same argmax, no labels
    assert {"iou", "precision", "recall"} <= set(metrics)
    assert "| class | IoU | precision | recall |" in (out / "metrics.md").read_text()


def test_no_val_split_means_no_val_scores(tiny_scenes, tmp_path):
    """--val-split none with the default --val-every 1: trained, nothing scored (it used to assert)."""
    train_segmenter(_config(tiny_scenes, tmp_path / "run", val_split=None, val_every=1))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1 and "val_miou" not in history[0]


def test_resume_after_a_kill_gives_the_same_weights(tiny_scenes, tmp_path, monkeypatch):
    import glmix_vis.train_seg as train_seg

    whole = train_segmenter(_config(tiny_scenes, tmp_path / "whole", epochs=2, decoder_dropout=0.1))
    real_save = train_seg.save_epoch_checkpoint

    def killed_after_first_epoch(out, state, epoch, keep):
        real_save(out, state, epoch, keep)
        raise KeyboardInterrupt  # as a kill right after the checkpoint of epoch 1

    monkeypatch.setattr(train_seg, "save_epoch_checkpoint", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(_config(tiny_scenes, tmp_path / "resumed", epochs=2, decoder_dropout=0.1))
    monkeypatch.setattr(train_seg, "save_epoch_checkpoint", real_save)
    resumed = train_segmenter(_config(tiny_scenes, tmp_path / "resumed", epochs=2, decoder_dropout=0.1))
    a, b = _weights(whole["checkpoint"]), _weights(resumed["checkpoint"])
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in whole["history"]] == [h["train_loss"] for h in resumed["history"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: SegTrainConfig) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    train_segmenter(config)
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one(tiny_scenes, tmp_path):
    """The same global batch split over 2 processes (DDP, gloo, CPU) takes the same steps as 1 process."""
    import torch.multiprocessing as mp

    alone = train_segmenter(_config(tiny_scenes, tmp_path / "one", epochs=2))
    two = _config(tiny_scenes, tmp_path / "two", epochs=2)
    mp.spawn(_ddp_worker, args=(2, _free_port(), two), nprocs=2, join=True)
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in alone["history"]], rel=1e-4)
    # Float rounding differs with the batch split (a batch of 1 per process is computed otherwise than one
    # of 2), and Adam turns a tiny gradient's rounding into a step of up to lr: the bound is lr per step.
    a, b = _weights(alone["checkpoint"]), _weights(tmp_path / "two" / "final.safetensors")
    steps = 2 * (4 // two.batch_size)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= two.lr * steps, worst
    one_model, _ = load_model(alone["checkpoint"], device="cpu")
    two_model, _ = load_model(tmp_path / "two" / "final.safetensors", device="cpu")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p1, p2 = one_model(x).softmax(1), two_model(x).softmax(1)
    assert float((p1 - p2).abs().max()) < 1e-2
    assert float((p1.argmax(1) == p2.argmax(1)).float().mean()) > 0.99


# ------------------------------------------------------------------------------------ refused masks
def _masks_folder(root, tmp_path):
    """A copy of the train split's masks as eval writes them (OUT/masks/<id>.png)."""
    data = open_dataset("voc", root, "train")
    folder = tmp_path / "eval" / "masks"
    folder.mkdir(parents=True)
    for i, image_id in enumerate(data.image_ids):
        save_palette_png(folder / f"{image_id}.png", data.load_mask(i), voc_palette())
    return data, folder


def _break_missing(data, folder):
    (folder / f"{data.image_ids[1]}.png").unlink()
    return data.image_ids[1], "missing"


def _break_size(data, folder):
    save_palette_png(folder / f"{data.image_ids[2]}.png", np.zeros((32, 48), np.uint8), voc_palette())
    return data.image_ids[2], "48x32"


def _break_classes(data, folder):
    mask = data.load_mask(3).copy()
    mask[0, 0] = 42
    save_palette_png(folder / f"{data.image_ids[3]}.png", mask, voc_palette())
    return data.image_ids[3], "42"


def _break_mode(data, folder):
    Image.new("RGB", (64, 64)).save(folder / f"{data.image_ids[0]}.png")
    return data.image_ids[0], "palette"


@pytest.mark.parametrize("breaker", [_break_missing, _break_size, _break_classes, _break_mode])
def test_bad_masks_folder_refused_before_training(tiny_scenes, tmp_path, capsys, breaker):
    data, folder = _masks_folder(tiny_scenes, tmp_path)
    MaskSource.open(data, folder).validate()  # the intact copy is accepted
    image_id, detail = breaker(data, folder)
    out = tmp_path / "run"
    code = wsss_main(["train-seg", "--root", str(tiny_scenes), "--masks", str(folder), "--out", str(out),
                      "--workers", "0", "--device", "cpu", "--batch-size", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and image_id in err[0] and detail in err[0]
    assert not out.exists()  # refused before anything was written


def test_missing_masks_folder_refused(tiny_scenes, tmp_path, capsys):
    code = wsss_main(["train-seg", "--root", str(tiny_scenes), "--masks", str(tmp_path / "nope"), "--out",
                      str(tmp_path / "run"), "--device", "cpu"])
    assert code == 2 and "no such folder" in capsys.readouterr().err


def test_batch_that_does_not_split_over_processes_is_refused():
    from glmix_vis.training import per_rank_batch

    assert per_rank_batch(8, 2) == 4
    with pytest.raises(ValueError, match="multiple of 3"):
        per_rank_batch(8, 3)


# ------------------------------------------------------------------------------------ a segmenter everywhere
@pytest.fixture(scope="module")
def segmenter_checkpoint(tmp_path_factory):
    """An (untrained) segmenter on the bundled backbone, saved as train-seg saves one."""
    from glmix_vis.assets import default_checkpoint
    from glmix_vis.models.checkpoints import save_safetensors
    from glmix_vis.models.factory import create_segmenter
    from glmix_vis.models.meta import HEAD_SEGMENTATION, CheckpointMeta
    from glmix_vis.models.segmenter import DecoderConfig

    _, classifier = load_model(None, device="cpu")
    torch.manual_seed(0)
    model = create_segmenter(None, len(classifier.class_names), DecoderConfig(dim=16), init=default_checkpoint())
    meta = CheckpointMeta(model="glnet_nano", classes=classifier.class_names, head=HEAD_SEGMENTATION,
                          input_size=(64, 64), extra={"decoder": DecoderConfig(dim=16).to_dict()})
    path = tmp_path_factory.mktemp("seg") / "seg.safetensors"
    save_safetensors(model.state_dict(), path, meta=meta.to_mapping())
    return path


def test_segmenter_loads_as_a_model_with_slot_maps_and_its_own_prediction(segmenter_checkpoint):
    from glmix_vis.predictor import SlotPredictor
    from glmix_vis.wsss.evidence import available_evidence_methods
    from glmix_vis.wsss.evidence.usable import usable_methods

    predictor = SlotPredictor.from_checkpoint(segmenter_checkpoint, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    out = predictor.set_image(image)
    assert predictor.has_segmentation and out.segmentation is not None and len(out.maps) == 4
    mask = predictor.segmentation()
    assert mask.shape == (48, 80) and mask.max() < len(predictor.info.class_names)
    assert np.array_equal(mask, predictor.pseudo_mask("seg", labels=np.zeros(5)))  # image labels never used
    methods = usable_methods(predictor.model, available_evidence_methods())
    assert "seg" in methods and "cam" not in methods  # the app offers seg, and only where it serves
    bundled = SlotPredictor.from_checkpoint(None, device="cpu")
    bundled.set_image(image)
    with pytest.raises(ValueError, match="no segmentation head"):
        bundled.segmentation()


def test_slots_and_figure_show_the_segmentation(segmenter_checkpoint, tmp_path, capsys):
    from glmix_vis.cli.vis import main as vis_main

    assert vis_main(["slots", "--checkpoint", str(segmenter_checkpoint), "--device", "cpu"]) == 0
    assert "segmentation (argmax over every class" in capsys.readouterr().out
    out = tmp_path / "seg.png"
    from glmix_vis.assets import example_images

    image = str(next(iter(example_images().values())))
    assert vis_main(["figure", image, "--checkpoint", str(segmenter_checkpoint), "--layout", "segmentation",
                     "--device", "cpu", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert vis_main(["figure", image, "--layout", "segmentation", "--device", "cpu", "--out", str(out)]) == 2
    assert "no segmentation head" in capsys.readouterr().err


def test_confidence_band_writes_255_before_and_after_the_crf():
    from glmix_vis.wsss.masks import in_band
    from glmix_vis.wsss.pipeline import PseudoMask
    from glmix_vis.wsss.recipe import MaskRecipe

    recipe = MaskRecipe("slot-cam", crf=True, bg_threshold=0.5, ignore_band=(0.3, 0.7))
    assert recipe.record()["ignore_band"] == [0.3, 0.7] and "ignore_band" not in MaskRecipe().record()
    for bad in [(0.7, 0.3), (0.2,), (-0.1, 0.5)]:
        with pytest.raises(ValueError, match="band"):
            MaskRecipe(ignore_band=bad)
    with pytest.raises(ValueError, match="seg takes"):
        MaskRecipe("seg", ignore_band=(0.2, 0.6))
    scores = np.array([[[0.1, 0.5, 0.9]]], np.float32)  # one class, three pixels
    band = in_band(scores, (0.3, 0.7))
    assert band.tolist() == [[False, True, False]]
    image = np.zeros((1, 3, 3), np.uint8)
    result = PseudoMask(labels=np.ones(1, np.float32), scores=scores,
                        mask=np.where(band, 255, (scores[0] > 0.5) * 1).astype(np.uint8), recipe=recipe, ignored=band)
    assert result.after_crf(image).tolist()[0][1] == 255


def test_metrics_leave_unlabelled_predictions_out():
    from glmix_vis.wsss.metrics import ConfusionMatrix

    cm = ConfusionMatrix(2)
    cm.update(np.array([[0, 1, 255, 1]]), np.array([[0, 1, 1, 255]]))
    assert cm.matrix.tolist() == [[1, 0], [0, 1]] and cm.coverage == pytest.approx(200 / 3)
