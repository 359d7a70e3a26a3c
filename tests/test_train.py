"""Classifier training from image labels: metric, checkpoints, resume, DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from glmix_vis.data.scenes import SceneConfig, generate_scenes
from glmix_vis.models.checkpoints import read_checkpoint_meta
from glmix_vis.train import (
    CHECKPOINT_LAST,
    FINAL_CHECKPOINT,
    TrainConfig,
    multilabel_average_precision,
    train,
)


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate_scenes(root, n_train=12, n_val=6, config=SceneConfig(size=64), workers=1, progress=False)
    return root


def test_average_precision_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.6]])
    targets = np.array([[1, 0], [0, 0], [1, 1], [0, 0]])
    ap = multilabel_average_precision(scores, targets)
    # class 0 ranking: pos, neg, pos, neg -> (1/1 + 2/3) / 2; class 1 ranking: pos first -> 1
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1] == pytest.approx(1.0)
    assert np.isnan(multilabel_average_precision(scores, np.zeros_like(targets))).all()


def test_train_writes_checkpoints_and_resumes(tiny_scenes, tmp_path, monkeypatch):
    import glmix_vis.train as training

    config = TrainConfig(root=str(tiny_scenes), out=str(tmp_path / "run"), model="glnet_nano", epochs=2,
                         batch_size=4, input_size=64, workers=0, device="cpu")
    real_epoch, calls = training._train_epoch, []

    def interrupted(*args, **kwargs):  # the run is stopped during its second epoch
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(training, "_train_epoch", real_epoch)
    saved = torch.load(tmp_path / "run" / CHECKPOINT_LAST, weights_only=True)
    assert saved["epoch"] == 1
    first = dict(history=saved["history"])
    assert len(first["history"]) == 1
    second = train(config)  # the same settings: resumes after epoch 1 instead of starting over
    meta = read_checkpoint_meta(tmp_path / "run" / FINAL_CHECKPOINT)
    assert meta["model"] == "glnet_nano"
    assert meta["classes"][0] == "background" and meta["num_classes"] == len(meta["classes"]) - 1
    assert meta["input_size"] == [64, 64] and len(meta["mean"]) == 3
    assert [r["epoch"] for r in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(0.0 <= r["val_map"] <= 1.0 for r in history)


def test_train_refuses_to_resume_into_other_settings_in_one_line(tiny_scenes, tmp_path, capsys):
    from glmix_vis.cli.wsss import main as wsss_main
    from glmix_vis.wsss.outdir import SettingsMismatch

    out = tmp_path / "run"
    argv = ["train", "--root", str(tiny_scenes), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--input-size", "64", "--workers", "0", "--device", "cpu", "--max-train-images", "4"]
    assert wsss_main(argv) == 0
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["model"] == "glnet_nano" and "out" not in recorded and "workers" not in recorded
    capsys.readouterr()
    assert wsss_main([*argv, "--model", "glnet_micro"]) == 2  # was a 177-line size-mismatch traceback
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model: 'glnet_nano' -> 'glnet_micro'" in err and "Traceback" not in err
    mixed = [*argv, "--lr", "0.5", "--batch-size", "8", "--input-size", "96"]  # was silently mixed
    assert wsss_main(mixed) == 2
    err = capsys.readouterr().err
    assert all(f"{k}:" in err for k in ("lr", "batch_size", "input_size"))
    assert wsss_main([*argv, "--workers", "1"]) == 0  # how it runs is not what it computes: resumes
    (out / "settings.json").unlink()  # a folder from before settings.json: its checkpoint's config decides
    config = TrainConfig(root=str(tiny_scenes), out=str(out), epochs=1, batch_size=4, input_size=64, workers=0,
                         device="cpu", max_train_images=4, lr=0.5)
    with pytest.raises(SettingsMismatch, match="lr: 0.002 -> 0.5"):
        train(config)


def test_train_from_checkpoint_resets_head(tiny_scenes, tmp_path):
    import timm

    from glmix_vis.models.checkpoints import save_safetensors

    init = tmp_path / "init.safetensors"
    save_safetensors(timm.create_model("glnet_nano", num_classes=1000).state_dict(), init)
    config = TrainConfig(root=str(tiny_scenes), out=str(tmp_path / "ft"), model="glnet_nano", init=str(init),
                         epochs=1, batch_size=4, input_size=64, workers=0, device="cpu", max_train_images=4)
    train(config)
    meta = read_checkpoint_meta(tmp_path / "ft" / FINAL_CHECKPOINT)
    assert meta["num_classes"] == 7


@pytest.mark.slow
def test_torchrun_ddp_gloo_two_processes(tiny_scenes, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "glmix_vis.cli.wsss", "train", "--root", str(tiny_scenes), "--epochs", "1", "--batch-size", "4",
           "--input-size", "64", "--workers", "0", "--device", "cpu", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / FINAL_CHECKPOINT).is_file()
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and 0.0 <= history[0]["val_map"] <= 1.0


def test_a_single_process_joins_no_group(monkeypatch):
    """Training and eval set up torchrun through one function; without torchrun it is a no-op."""
    import torch.distributed as dist

    from glmix_vis.devices import init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    here = init_distributed("cpu")
    assert (here.rank, here.world, here.device, here.local_world, here.main) == (0, 1, torch.device("cpu"), 1, True)
    assert not dist.is_initialized()


def test_train_says_what_it_will_do_before_its_first_batch(tiny_scenes, tmp_path, capsys):
    """Issue 24 item 5: the model, the images, the folder and the epochs before the bar; the time left after each epoch."""
    from glmix_vis.cli.wsss import main as wsss_main

    out = tmp_path / "run"
    argv = ["train", "--root", str(tiny_scenes), "--out", str(out), "--epochs", "2", "--batch-size", "4",
            "--input-size", "64", "--workers", "0", "--device", "cpu", "--max-train-images", "4"]
    assert wsss_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    first = lines[0]
    assert first.startswith("training glnet_nano (1.7M parameters, from random weights) on 4 train images")
    assert "6 val images" in first and str(tiny_scenes) in first and "2 epochs of 1 steps" in first
    assert str(out) in first
    assert lines[1].startswith("epoch 1/2:") and "left)" in lines[1] and lines[2].startswith("epoch 2/2:")
    assert "left" not in lines[2]


def test_the_schedule_counts_the_steps_the_loader_makes(tiny_scenes, tmp_path):
    """5 images in batches of 2 make 2 steps (the partial batch is dropped): the rate ends at min_lr."""
    from torch.utils.data import DataLoader

    from glmix_vis.train import epoch_steps

    for images, batch in [(5, 2), (4, 2), (3, 4), (62 * 16 + 7, 16)]:
        loader = DataLoader(range(images), batch_size=batch, drop_last=images > batch)
        assert epoch_steps(images, batch) == len(loader)
    config = TrainConfig(root=str(tiny_scenes), out=str(tmp_path / "run"), model="glnet_nano", epochs=1,
                         batch_size=2, input_size=32, workers=0, device="cpu", max_train_images=5, min_lr=1e-5, warmup_epochs=0)
    train(config)
    saved = torch.load(tmp_path / "run" / CHECKPOINT_LAST, weights_only=True)
    assert saved["scheduler"]["last_epoch"] == 2
    assert saved["scheduler"]["_last_lr"][0] == pytest.approx(1e-5)
