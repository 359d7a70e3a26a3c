"""`glmix-wsss eval` on real-dataset layouts: the whole split's ground truth is checked before anything
is computed, split names (mmseg's ``aug``), EXIF-rotated JPEGs, and CRF workers that never outlive eval."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
from helpers import wait_until
from PIL import Image

import glmix_vis.wsss.evaluate as evaluate_module
from glmix_vis import workers as workers_module
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import VOC_CLASSES, DatasetError, VOCDataset, open_dataset, save_palette_png
from glmix_vis.data.base import MAX_LISTED_PROBLEMS
from glmix_vis.io import load_image
from glmix_vis.models.checkpoints import save_safetensors
from glmix_vis.wsss import crf as crf_module

H, W = 64, 96  # not square, so that a 90-degree EXIF rotation changes the shape
IDS = [f"2008_{k:06d}" for k in range(1, 8)]
REPO = Path(__file__).resolve().parents[1]


def _stored_pixels() -> np.ndarray:
    """Four coloured quadrants: any rotation or flip of it is a different image."""
    arr = np.zeros((H, W, 3), np.uint8)
    arr[: H // 2, : W // 2] = (220, 30, 30)
    arr[: H // 2, W // 2 :] = (30, 220, 30)
    arr[H // 2 :, : W // 2] = (30, 30, 220)
    arr[H // 2 :, W // 2 :] = (220, 220, 30)
    return arr


def _mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[: H // 2, : W // 2] = 15  # person, top left: where the red quadrant is stored
    mask[H // 2 - 1, : W // 2] = 255
    return mask


def _make_voc(base: Path, ids: list[str] = IDS, split: str = "train") -> Path:
    """A VOC2012 tree of sound images: JPEG, palette mask and XML for each id."""
    voc = base / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        Image.fromarray(_stored_pixels()).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", _mask())
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            "<annotation><object><name>person</name></object></annotation>")
    (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return voc


@pytest.fixture(scope="module")
def voc_checkpoint(tmp_path_factory) -> Path:
    """An untrained glnet_nano over the VOC classes: enough to run eval end to end."""
    path = tmp_path_factory.mktemp("ckpt") / "voc_nano.safetensors"
    model = timm.create_model("glnet_nano", num_classes=len(VOC_CLASSES) - 1)
    save_safetensors(model.state_dict(), path, meta=dict(model="glnet_nano", classes=VOC_CLASSES, input_size=[H, W]))
    return path


def _eval_args(root: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--root", str(root), "--split", "train", "--checkpoint", str(ckpt), "--out", str(out),
            "--method", "cam", "--workers", "1", *extra]


# -- 1. the whole split is checked first --------------------------------------------------------


def test_eval_reports_every_ground_truth_problem_before_computing(tmp_path, voc_checkpoint, capsys, monkeypatch):
    voc = _make_voc(tmp_path)
    seg, jpg = voc / "SegmentationClass", voc / "JPEGImages"
    (seg / f"{IDS[0]}.png").unlink()  # missing mask
    Image.fromarray(_mask(), "L").save(seg / f"{IDS[1]}.png")  # grayscale in SegmentationClass
    Image.fromarray(_stored_pixels()).save(seg / f"{IDS[2]}.png")  # colour mask
    (jpg / f"{IDS[3]}.jpg").unlink()  # missing image
    save_palette_png(seg / f"{IDS[4]}.png", np.zeros((H, W - 8), np.uint8))  # size mismatch
    (jpg / f"{IDS[5]}.jpg").write_bytes(b"not a jpeg")  # unreadable image
    monkeypatch.setattr(evaluate_module, "load_model", lambda *a, **k: pytest.fail("computed before checking"))
    out = tmp_path / "out"

    assert wsss_main(_eval_args(tmp_path, voc_checkpoint, out)) == 2

    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("glmix-wsss eval: error: 6 problem(s) in the ground truth of")
    assert "split 'train' (7 images checked):" in lines[0]
    expected = [
        rf"SegmentationClass/{IDS[0]}\.png: mask file not found",
        rf"SegmentationClass/{IDS[1]}\.png: mask must be a palette \('P' mode\) PNG .* got mode 'L' "
        r"\(8-bit grayscale label PNGs are accepted in SegmentationClassAug only\)",
        rf"SegmentationClass/{IDS[2]}\.png: mask must be a palette .* got mode 'RGB'$",
        rf"JPEGImages/{IDS[3]}\.jpg: image file not found",
        rf"JPEGImages/{IDS[4]}\.jpg: image is 96x64 pixels but its mask \S+/{IDS[4]}\.png is 88x64",
        rf"JPEGImages/{IDS[5]}\.jpg: not a recognised image file",
    ]
    assert len(lines) == 1 + len(expected)
    for line, pattern in zip(lines[1:], expected):
        assert line.startswith("  ")
        assert re.search(pattern, line), (pattern, line)
    assert not out.exists()  # no folder, no settings.json, no mask


def test_validate_lists_the_first_problems_and_counts_the_rest(tmp_path):
    ids = [f"2009_{k:06d}" for k in range(MAX_LISTED_PROBLEMS + 5)]
    voc = _make_voc(tmp_path, ids)
    for image_id in ids:
        (voc / "SegmentationClass" / f"{image_id}.png").unlink()
    ds = VOCDataset(tmp_path, "train")
    assert len(ds.validate(progress=False, raise_errors=False)) == len(ids)  # one per image, not repeated
    with pytest.raises(DatasetError) as info:
        ds.validate(progress=False)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{len(ids)} problem(s)")
    assert len(lines) == 1 + MAX_LISTED_PROBLEMS + 1
    assert lines[-1] == "  ... and 5 more"
    assert all("mask file not found" in line for line in lines[1:-1])


def test_validate_reads_headers_only(tmp_path, monkeypatch):
    _make_voc(tmp_path)
    ds = VOCDataset(tmp_path, "train")

    def no_decoding(self):
        raise AssertionError(f"{self.filename}: pixels decoded")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    assert ds.validate(progress=False) == []


def test_validate_deep_also_decodes_pixels(tmp_path):
    voc = _make_voc(tmp_path)
    save_palette_png(voc / "SegmentationClass" / f"{IDS[2]}.png", np.full((H, W), 42, np.uint8))
    ds = VOCDataset(tmp_path, "train")
    assert ds.validate(progress=False) == []  # the header is sound
    problems = ds.validate(progress=False, raise_errors=False, deep=True)
    assert len(problems) == 1 and f"{IDS[2]}.png: mask has values [42]" in problems[0]


def test_grayscale_masks_are_legitimate_in_segmentation_class_aug_only(tmp_path):
    voc = _make_voc(tmp_path)
    aug = voc / "SegmentationClassAug"
    aug.mkdir()
    for image_id in IDS:
        Image.fromarray(_mask(), "L").save(aug / f"{image_id}.png")  # mmseg's converter writes these
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(IDS) + "\n")
    assert VOCDataset(tmp_path, "train_aug").validate(progress=False) == []
    Image.fromarray(_mask(), "L").save(voc / "SegmentationClass" / f"{IDS[0]}.png")
    problems = VOCDataset(tmp_path, "train").validate(progress=False, raise_errors=False)
    assert len(problems) == 1 and "got mode 'L'" in problems[0]
    Image.fromarray(_stored_pixels()).save(aug / f"{IDS[1]}.png")
    problems = VOCDataset(tmp_path, "train_aug").validate(progress=False, raise_errors=False)
    assert len(problems) == 1 and f"SegmentationClassAug/{IDS[1]}.png: mask must be a palette or 8-bit" in problems[0]


def test_coco_image_size_must_match_the_annotation(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    images = [{"id": 1, "file_name": "a.jpg", "height": 30, "width": 40},
              {"id": 2, "file_name": "b.jpg", "height": 30, "width": 40}]
    Image.new("RGB", (40, 30)).save(root / "val2014" / "a.jpg")
    Image.new("RGB", (30, 40)).save(root / "val2014" / "b.jpg")  # rotated against its annotation
    data = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    problems = open_dataset("coco", root, "val").validate(progress=False, raise_errors=False)
    assert len(problems) == 1
    assert "b.jpg: image is 30x40 pixels but its mask (the size instances_val2014.json records) is 40x30" in problems[0]
    with pytest.raises(DatasetError, match=r"instances_train2014\.json: .* available splits: val$"):
        open_dataset("coco", root, "train")


# -- 2. split names -------------------------------------------------------------------------------


def test_mmseg_aug_split_is_train_aug(tmp_path):
    voc = _make_voc(tmp_path, split="val")
    aug = voc / "SegmentationClassAug"
    aug.mkdir()
    for image_id in IDS[:3]:
        Image.fromarray(_mask(), "L").save(aug / f"{image_id}.png")
    (voc / "ImageSets/Segmentation/aug.txt").write_text("\n".join(IDS[:3]) + "\n")  # mmseg's name
    for name in ("aug", "train_aug"):
        ds = open_dataset("voc", tmp_path, name)
        assert ds.split == "train_aug" and len(ds) == 3
        assert ds.mask_path(0).parent == aug
        assert ds.validate(progress=False) == []
    assert VOCDataset(tmp_path, "val").available_splits() == ["aug", "val"]


def test_eval_refuses_an_unknown_split_listing_the_available_ones(tmp_path, voc_checkpoint, capsys):
    voc = _make_voc(tmp_path)
    (voc / "ImageSets/Segmentation/val.txt").write_text(IDS[0] + "\n")
    out = tmp_path / "out"
    args = _eval_args(tmp_path, voc_checkpoint, out)
    args[args.index("train")] = "tranval"
    assert wsss_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("glmix-wsss eval: error: ") and err.endswith(
        "split list for split 'tranval' not found; available splits: train, val")
    assert not out.exists()


def test_eval_records_the_canonical_split_name(tmp_path, voc_checkpoint):
    _make_voc(tmp_path, split="aug")
    out = tmp_path / "out"
    args = _eval_args(tmp_path, voc_checkpoint, out, "--no-crf", "--limit", "1")
    args[args.index("train")] = "aug"
    assert wsss_main(args) == 0
    assert json.loads((out / "settings.json").read_text())["split"] == "train_aug"
    args[args.index("aug")] = "train_aug"
    assert wsss_main(args) == 0  # the same run: resuming is allowed


# -- 3. EXIF orientation: dataset images as stored, user images upright -------------------------------


def _exif_jpeg(path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_stored_pixels()).save(path, exif=exif, quality=95)
    return path


@pytest.mark.parametrize("orientation", [3, 6])
def test_dataset_reads_images_as_stored_but_load_image_turns_them_upright(tmp_path, orientation):
    voc = _make_voc(tmp_path)
    path = _exif_jpeg(voc / "JPEGImages" / f"{IDS[0]}.jpg", orientation)
    stored = np.asarray(Image.open(path).convert("RGB"))
    ds = VOCDataset(tmp_path, "train")
    np.testing.assert_array_equal(ds.load_image(0), stored)
    assert ds.image_size(0) == (H, W) and ds[0].mask.shape == (H, W)
    np.testing.assert_array_equal(load_image(path, exif_transpose=False), stored)
    upright = load_image(path)  # the default for user images
    expected = stored[::-1, ::-1] if orientation == 3 else np.rot90(stored, k=-1)  # 6: turn 90 degrees clockwise
    np.testing.assert_array_equal(upright, expected)


@pytest.mark.parametrize("orientation", [3, 6])
def test_eval_aligns_exif_rotated_images_with_their_masks(tmp_path, voc_checkpoint, monkeypatch, orientation):
    voc = _make_voc(tmp_path, IDS[:2])
    path = _exif_jpeg(voc / "JPEGImages" / f"{IDS[0]}.jpg", orientation)
    stored = np.asarray(Image.open(path).convert("RGB"))
    seen: list[np.ndarray] = []
    to_batch = evaluate_module.image_to_batch

    def record(image, *args, **kwargs):
        seen.append(image.copy())
        return to_batch(image, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "image_to_batch", record)
    out = tmp_path / "out"
    assert wsss_main(_eval_args(tmp_path, voc_checkpoint, out)) == 0  # with the CRF, on the image's colours
    np.testing.assert_array_equal(seen[0], stored)  # the network and the CRF saw the stored pixels
    for folder in ("masks", "masks_nocrf"):
        assert np.asarray(Image.open(out / folder / f"{IDS[0]}.png")).shape == (H, W)


# -- 4. CRF workers never outlive eval ----------------------------------------------------------------

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else (fields[0], int(fields[1]))


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        info = _stat(int(stat.parent.name))
        if info is not None and info[1] == pid:
            found.add(int(stat.parent.name))
    return found


def _ignores_sigint(pid: int) -> bool:
    """Whether ``pid`` ignores SIGINT: a CRF worker whose initializer has run (it arms the watch first)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


@linux_only
def test_crf_pool_workers_leave_ctrl_c_to_the_parent_and_end_with_the_pool():
    before = _children(os.getpid())
    pool = crf_module.crf_pool(2)
    try:
        assert sorted(pool.map(abs, [-1, -2])) == [1, 2]  # started, now idle in the job queue
        workers = wait_until(lambda: {c for c in _children(os.getpid()) - before if _ignores_sigint(c)}, 20,
                            "the workers to start")
        for w in workers:
            os.kill(w, signal.SIGINT)  # Ctrl-C reaches every process of the terminal's group
        time.sleep(0.3)
        assert all(_stat(w) is not None for w in workers)  # the parent decides: no traceback, no broken pool
        assert pool.submit(abs, -3).result(timeout=20) == 3
    finally:
        pool.shutdown(cancel_futures=True)
    assert all(_stat(w) is None for w in workers)  # a normal shutdown ends them


def _pool_owner() -> None:
    """Child process: run a CRF pool with two busy workers, then wait to be killed."""
    pool = crf_module.crf_pool(2)
    for _ in range(2):
        pool.submit(time.sleep, 30)
    time.sleep(60)


def _watcher_owner() -> None:
    """Child process: start a grandchild protected by the polling fallback only (no prctl), wait."""
    def grandchild() -> None:
        parent = os.getppid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # tells the test that the watch is on
        workers_module.exit_when_orphaned(parent, 0.1)

    multiprocessing.get_context("fork").Process(target=grandchild).start()
    time.sleep(60)


@linux_only
@pytest.mark.parametrize("owner", [_pool_owner, _watcher_owner], ids=["pool", "polling-fallback"])
def test_workers_die_with_a_killed_parent(owner):
    parent = multiprocessing.get_context("fork").Process(target=owner)
    parent.start()
    try:
        expected = 2 if owner is _pool_owner else 1

        def ready() -> set[int]:
            workers = {c for c in _children(parent.pid) if _ignores_sigint(c)}
            return workers if len(workers) >= expected else set()

        workers = wait_until(ready, 20, "the workers to start")
        os.kill(parent.pid, signal.SIGKILL)
        parent.join(5)
        wait_until(lambda: all(_stat(w) is None for w in workers), 3, f"workers {workers} to end")
    finally:
        if parent.is_alive():
            parent.kill()
            parent.join()


def _start_eval(tmp_path: Path, ckpt: Path, out: Path) -> subprocess.Popen:
    """A real ``glmix-wsss eval`` whose CRF is slow enough to be caught with two busy workers."""
    ids = [f"2010_{k:06d}" for k in range(12)]
    _make_voc(tmp_path, ids)
    cmd = [sys.executable, "-m", "glmix_vis.cli.wsss", *_eval_args(tmp_path, ckpt, out), "--workers", "2",
           "--crf-iterations", "3000"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_for_workers(proc: subprocess.Popen) -> set[int]:
    def two_ready() -> set[int]:
        if proc.poll() is not None:
            pytest.fail(f"eval ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        workers = {c for c in _children(proc.pid) if _ignores_sigint(c)}
        return workers if len(workers) >= 2 else set()

    return wait_until(two_ready, 120, "eval's CRF workers")


@linux_only
@pytest.mark.slow
def test_eval_crf_workers_die_when_eval_is_killed(tmp_path, voc_checkpoint):
    proc = _start_eval(tmp_path, voc_checkpoint, tmp_path / "out")
    try:
        workers = _wait_for_workers(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: all(_stat(w) is None for w in workers), 3, f"workers {workers} to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


@linux_only
@pytest.mark.slow
def test_eval_ctrl_c_shuts_the_crf_pool_down_cleanly(tmp_path, voc_checkpoint):
    out = tmp_path / "out"
    proc = _start_eval(tmp_path, voc_checkpoint, out)
    try:
        workers = _wait_for_workers(proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "glmix-wsss: interrupted" in err and "Traceback" not in err, err
    assert all(_stat(w) is None for w in workers)
    assert not (out / "metrics.json").exists() and (out / "settings.json").exists()  # resumable
