"""The eval loop at dataset scale: images read ahead, consecutive same-size images batched, cores shared
between the network and the CRF; the masks stay those of one image at a time, and runs still resume."""

import json
import threading
import time

import numpy as np
import pytest
import torch
from helpers import random_checkpoint

from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import load_palette_png, open_dataset
from glmix_vis.loading import load_model
from glmix_vis.models.slots import run_slots
from glmix_vis.preprocess import image_to_batch
from glmix_vis.wsss.crf import crf_refine
from glmix_vis.wsss.pipeline import ImageInput, pseudo_mask
from glmix_vis.wsss.recipe import MaskRecipe
from glmix_vis.wsss.scheduling import consecutive_groups, plan_cores, read_ahead

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
N = 5


@pytest.fixture(scope="module")
def scenes(make_scenes):
    """Non-square generated scenes (all one size: batches form) and a random nano checkpoint for them."""
    root = make_scenes(1, N, size=(64, 96))
    return root, random_checkpoint(root, seed=0, name="scheduling_nano.safetensors")


def _eval(root, ckpt, out, *extra):
    assert wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt), "--out", str(out),
                      "--method", "slot-cam", "--device", "cpu", "--threads", "1", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def _masks(out, folder="masks"):
    return {p.stem: load_palette_png(p) for p in sorted((out / folder).glob("*.png"))}


@pytest.fixture(scope="module")
def reference(scenes):
    """Every image alone through the pipeline, as the predictor does: (mask before the CRF, after it)."""
    root, ckpt = scenes
    dataset = open_dataset("voc", root, "val")
    model, info = load_model(ckpt, device="cpu")
    recipe = MaskRecipe("slot-cam")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the eval runs below use
    try:
        masks = {}
        for i, image_id in enumerate(dataset.image_ids):
            image = dataset.load_image(i)
            x = image_to_batch(image, info.mean, info.std)
            result = pseudo_mask(model, info, ImageInput(image, x), recipe, dataset.image_labels(i))
            masks[image_id] = (result.mask, result.after_crf(image))
    finally:
        torch.set_num_threads(threads)
    return masks


def test_the_loop_writes_the_masks_of_one_image_at_a_time_bit_for_bit(scenes, reference, tmp_path):
    root, ckpt = scenes
    result = _eval(root, ckpt, tmp_path / "run", "--workers", "1")  # CRF in a worker, images read ahead
    assert result["timing"]["images_computed"] == N and result["timing"]["crf_workers"] == 1
    assert result["timing"]["torch_threads"] == 1 and result["timing"]["batch_size"] == 1
    raw, final = _masks(tmp_path / "run", "masks_nocrf"), _masks(tmp_path / "run")
    assert set(raw) == set(final) == set(reference)
    for image_id, (before, after) in reference.items():
        np.testing.assert_array_equal(raw[image_id], before)
        np.testing.assert_array_equal(final[image_id], after)


def test_batched_forward_passes_agree_with_one_image_at_a_time(scenes, reference, tmp_path, monkeypatch):
    import glmix_vis.wsss.evaluate as evaluate_module

    root, ckpt = scenes
    batches = []

    def spy(model, x):
        if tuple(x.shape[-2:]) != (64, 64):  # not the set-up probe (EvidenceMethod.check on a blank image)
            batches.append(x.shape[0])
        return run_slots(model, x)

    monkeypatch.setattr(evaluate_module, "run_slots", spy)
    result = _eval(root, ckpt, tmp_path / "run", "--batch-size", "3", "--workers", "0")
    assert result["timing"]["batch_size"] == 3 and result["timing"]["images_computed"] == N
    assert batches == [3, 2]  # every image of this split has one size: 5 = 3 + 2
    raw = _masks(tmp_path / "run", "masks_nocrf")
    # float rounding of another batch shape may flip a rare boundary pixel, never more
    agree = np.mean([(raw[k] == before).mean() for k, (before, _) in reference.items()])
    assert agree > 0.995


def test_an_interrupted_run_resumes_where_it_stopped(scenes, reference, tmp_path, monkeypatch):
    import glmix_vis.wsss.evaluate as evaluate_module

    root, ckpt = scenes
    real, calls = evaluate_module.pseudo_mask, []

    def fail_at_the_fourth(*args, **kwargs):  # the pipeline, as eval calls it once per image
        calls.append(args[2])
        if len(calls) == 4:
            raise RuntimeError("killed at the fourth image")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "pseudo_mask", fail_at_the_fourth)
    with pytest.raises(RuntimeError, match="fourth"):
        _eval(root, ckpt, tmp_path / "run", "--workers", "1")
    monkeypatch.undo()
    # the images before it are done, both masks written whole (a CRF still queued is dropped: not done)
    done = set(_masks(tmp_path / "run")) & set(_masks(tmp_path / "run", "masks_nocrf"))
    assert 2 <= len(done) <= 3
    second = _eval(root, ckpt, tmp_path / "run", "--workers", "1")
    assert second["timing"]["images_computed"] == N - len(done)
    final = _masks(tmp_path / "run")
    for image_id, (_, after) in reference.items():
        np.testing.assert_array_equal(final[image_id], after)


def test_precision_is_recorded_and_tied_to_the_folder(scenes, tmp_path, capsys):
    root, ckpt = scenes
    out = tmp_path / "run"
    result = _eval(root, ckpt, out, "--precision", "bf16", "--no-crf", "--limit", "2")
    assert result["settings"]["precision"] == "bf16"
    assert json.loads((out / "settings.json").read_text())["precision"] == "bf16"
    assert wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt), "--out", str(out),
                      "--method", "slot-cam", "--device", "cpu", "--no-crf", "--limit", "2"]) == 2
    assert "precision: 'bf16' -> None" in capsys.readouterr().err  # fp32 masks never mix with bf16 ones
    fp32 = _eval(root, ckpt, tmp_path / "fp32", "--no-crf", "--limit", "2")
    assert fp32["settings"]["precision"] == "fp32"
    assert "precision" not in json.loads((tmp_path / "fp32" / "settings.json").read_text())  # as before the option


# ------------------------------------------------------------------------------ the pieces
def test_the_crf_sees_only_the_images_classes(monkeypatch):
    import pydensecrf.densecrf as dcrf

    real, labels_seen = dcrf.DenseCRF2D, []

    def recording(w, h, n):
        labels_seen.append(n)
        return real(w, h, n)

    monkeypatch.setattr(dcrf, "DenseCRF2D", recording)
    from glmix_vis.wsss.masks import unary_probabilities

    rng = np.random.default_rng(0)
    scores = rng.random((7, 24, 32)).astype(np.float32)  # evidence for all 7 classes
    unary = unary_probabilities(scores, np.array([0, 1, 0, 0, 1, 0, 0], np.float32), bg_threshold=0.5)
    post = crf_refine(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), unary)
    assert labels_seen == [3]  # background and the image's two classes
    assert not post[[1, 3, 4, 6, 7]].any()


@pytest.mark.parametrize("crf, device, cores, workers, threads, expected", [
    (True, CPU, 2, None, None, (1, 1)),  # the network and the CRF one core each
    (True, CPU, 1, None, None, (0, 1)),  # one core: the CRF between forward passes
    (True, CPU, 16, None, None, (8, "rest")),  # the network: the other 8, never above torch's default
    (True, CUDA, 16, None, None, (15, 1)),  # beside a GPU every core but one refines
    (False, CPU, 10_000, None, None, (0, None)),  # no CRF: torch's own threads
    (True, CPU, 2, 3, None, (3, 1)),
    (True, CPU, 2, None, 2, (1, 2)),
])
def test_cores_are_shared_between_the_network_and_the_crf(crf, device, cores, workers, threads, expected):
    plan = plan_cores(crf, device, workers, threads, cores=cores)
    if expected[1] == "rest":
        expected = (expected[0], min(torch.get_num_threads(), cores - expected[0]))
    assert (plan.crf_workers, plan.torch_threads) == expected
    two_ranks = plan_cores(True, CPU, cores=16, processes_here=2)  # torchrun: each rank its share
    assert two_ranks.cores == 8 and two_ranks.crf_workers == 4
    with pytest.raises(ValueError):
        plan_cores(True, CPU, threads=0)


def test_read_ahead_keeps_order_raises_in_place_and_stops_its_thread():
    loaded = []

    def load(i):
        loaded.append(i)
        if i == 7:
            raise OSError("broken image 7")
        return i * 10

    assert list(read_ahead(range(5), load, depth=2)) == [0, 10, 20, 30, 40]
    items = read_ahead(range(10), load, depth=2)
    assert [next(items) for _ in range(7)] == [0, 10, 20, 30, 40, 50, 60]
    with pytest.raises(OSError, match="broken image 7"):
        next(items)

    started = threading.active_count()
    items = read_ahead(range(1000), lambda i: i, depth=2)
    assert next(items) == 0 and next(items) == 1
    items.close()
    time.sleep(0.3)
    assert threading.active_count() <= started  # closed: its thread is gone, not blocked on a full queue


def test_consecutive_groups_never_reorder():
    sizes = ["a", "a", "a", "b", "a", "a", "c", "c"]
    groups = list(consecutive_groups(range(len(sizes)), lambda i: sizes[i], 2))
    assert groups == [[0, 1], [2], [3], [4, 5], [6, 7]]
    assert list(consecutive_groups(range(3), lambda i: 0, 1)) == [[0], [1], [2]]
