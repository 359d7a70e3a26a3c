"""The WSSS eval loop end to end on a few generated images: masks, metrics, resume, oracle."""

import json

import numpy as np
import pytest
import timm
from helpers import random_checkpoint
from PIL import Image

from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import open_dataset, voc_palette
from glmix_vis.models.checkpoints import save_safetensors
from glmix_vis.wsss.masks import DEFAULT_BG_THRESHOLD, checkpoint_bg_threshold
from glmix_vis.wsss.oracle import slot_oracle_mask
from glmix_vis.wsss.outdir import SETTINGS_FILE, OutputDir


@pytest.fixture(scope="module")
def scenes_and_checkpoint(make_scenes):
    root = make_scenes(4, 4, size=96)
    return root, random_checkpoint(root, input_size=96, name="evaluate_nano.safetensors")


def _eval(root, ckpt, out, *extra):
    code = wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt),
                      "--out", str(out), "--workers", "1", *extra])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def test_eval_writes_masks_and_metrics_and_resumes(scenes_and_checkpoint, tmp_path):
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "run"
    first = _eval(root, ckpt, out, "--method", "slot-cam", "--sweep")
    k = len(open_dataset("voc", root, "val").class_names)
    assert 0.0 <= first["miou"] <= 100.0
    assert len(first["confusion_matrix"]) == k and all(len(r) == k for r in first["confusion_matrix"])
    assert set(first["iou"]) == set(open_dataset("voc", root, "val").class_names)
    assert "nocrf" in first and "threshold_sweep" in first and first["versions"]["torch"]
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 4
    assert Image.open(masks[0]).mode == "P"
    assert (out / "metrics.md").read_text().startswith("#")

    stamps = {p.name: p.stat().st_mtime_ns for p in masks}
    second = _eval(root, ckpt, out, "--method", "slot-cam", "--sweep")
    assert second["timing"]["images_already_there"] == 4  # nothing recomputed: the first run's timing is kept
    assert second["timing"]["images_computed"] == 4
    assert second["timing"]["forward_s_per_image"] == pytest.approx(first["timing"]["forward_s_per_image"])
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").glob("*.png")} == stamps
    assert second["miou"] == first["miou"] and second["confusion_matrix"] == first["confusion_matrix"]


def test_eval_cam_without_crf_and_oracle(scenes_and_checkpoint, tmp_path):
    root, ckpt = scenes_and_checkpoint
    cam = _eval(root, ckpt, tmp_path / "cam", "--method", "cam", "--no-crf")
    assert "nocrf" not in cam and 0.0 <= cam["miou"] <= 100.0
    oracle = _eval(root, ckpt, tmp_path / "oracle", "--method", "slot-oracle", "--no-crf")
    assert 0.0 <= oracle["miou"] <= 100.0


def test_eval_rejects_a_checkpoint_for_other_classes(scenes_and_checkpoint, tmp_path, capsys):
    root, _ = scenes_and_checkpoint
    other = tmp_path / "other.safetensors"
    model = timm.create_model("glnet_nano", num_classes=3)
    save_safetensors(model.state_dict(), other, meta=dict(model="glnet_nano", classes=["background", "a", "b", "c"]))
    code = wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(other),
                      "--out", str(tmp_path / "x")])
    assert code == 2
    assert "the model predicts" in capsys.readouterr().err


def test_slot_oracle_by_hand():
    slots = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    gt = np.array([[1, 1, 0, 0], [1, 255, 0, 3], [255, 255, 255, 255]])
    # slot 0 -> class 1, slot 1 -> class 0 (3 of 4 votes), slot 2 has only ignored pixels -> background
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(slot_oracle_mask(slots, gt), expected)


def test_eval_uses_the_checkpoints_tuned_bg_threshold(scenes_and_checkpoint, tmp_path):
    root, ckpt = scenes_and_checkpoint
    classes = list(open_dataset("voc", root, "val").class_names)
    model = timm.create_model("glnet_nano", num_classes=len(classes) - 1)
    meta = dict(model="glnet_nano", classes=classes, input_size=[96, 96], bg_thresholds={"cam": 0.9, "slot-cam": 0.35})
    tuned = tmp_path / "tuned.safetensors"
    save_safetensors(model.state_dict(), tuned, meta=meta)
    assert _eval(root, tuned, tmp_path / "cam", "--method", "cam", "--no-crf")["settings"]["bg_threshold"] == 0.9
    assert _eval(root, tuned, tmp_path / "sc", "--no-crf", "--limit", "1")["settings"]["bg_threshold"] == 0.35
    given = _eval(root, tuned, tmp_path / "given", "--method", "cam", "--no-crf", "--bg-threshold", "0.2")
    assert given["settings"]["bg_threshold"] == 0.2  # the user's value wins
    plain = _eval(root, ckpt, tmp_path / "plain", "--method", "cam", "--no-crf", "--limit", "1")
    assert plain["settings"]["bg_threshold"] == DEFAULT_BG_THRESHOLD  # nothing recorded: IRN's 0.15


@pytest.mark.parametrize("meta, expected", [
    ({}, DEFAULT_BG_THRESHOLD),
    ({"bg_thresholds": {"cam": 0.55}}, 0.55),
    ({"bg_thresholds": {"slot-cam": 0.6}}, DEFAULT_BG_THRESHOLD),  # another method's value
    ({"bg_thresholds": {"cam": 1.5}}, DEFAULT_BG_THRESHOLD),  # out of range: ignored
    ({"bg_thresholds": {"cam": "0.5"}}, DEFAULT_BG_THRESHOLD),  # not a number
    ({"bg_thresholds": {"cam": True}}, DEFAULT_BG_THRESHOLD),
    ({"bg_thresholds": [0.5]}, DEFAULT_BG_THRESHOLD),
])
def test_checkpoint_bg_threshold(meta, expected):
    assert checkpoint_bg_threshold(meta, "cam") == expected


def test_eval_refuses_to_resume_with_other_settings(scenes_and_checkpoint, tmp_path, capsys):
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "run"
    first = _eval(root, ckpt, out, "--method", "cam", "--no-crf", "--limit", "2")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["method"] == "cam" and settings["bg_threshold"] == first["settings"]["bg_threshold"]
    # more images, other workers: the same masks, so resuming is fine
    assert _eval(root, ckpt, out, "--method", "cam", "--no-crf", "--workers", "1")["images"] == 4
    masks = {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")}
    for extra in (["--method", "slot-cam", "--no-crf"], ["--method", "cam", "--no-crf", "--bg-threshold", "0.5"],
                  ["--method", "cam", "--no-crf", "--flip"]):
        code = wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt),
                          "--out", str(out), "--workers", "1", *extra])
        assert code != 0
        assert "other settings" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "masks").glob("*.png")} == masks  # nothing overwritten
    # another checkpoint file with the same name and architecture is another model
    other = tmp_path / ckpt.name
    model = timm.create_model("glnet_nano", num_classes=len(open_dataset("voc", root, "val").class_names) - 1)
    save_safetensors(model.state_dict(), other, meta=dict(model="glnet_nano", input_size=[96, 96],
                                                          classes=list(open_dataset("voc", root, "val").class_names)))
    code = wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(other),
                      "--out", str(out), "--workers", "1", "--method", "cam", "--no-crf"])
    assert code != 0 and "checkpoint_sha256" in capsys.readouterr().err


def test_eval_oracle_takes_no_sweep(scenes_and_checkpoint, tmp_path, capsys):
    root, ckpt = scenes_and_checkpoint
    code = wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt), "--out",
                      str(tmp_path / "o"), "--method", "slot-oracle", "--no-crf", "--sweep"])
    assert code == 2 and "no class scores to sweep" in capsys.readouterr().err


def test_output_dir_is_a_store_tied_to_its_settings(tmp_path):
    store = OutputDir(tmp_path / "out", crf=True)
    settings = {"method": "cam", "scales": [1.0]}
    store.claim(settings, write=False)  # another rank: checks, never writes
    assert not (store.root / SETTINGS_FILE).exists() and store.mask_dir.is_dir() and store.raw_dir.is_dir()
    store.claim(settings)
    assert json.loads((store.root / SETTINGS_FILE).read_text()) == settings
    store.claim(dict(settings))  # the same settings: resuming is fine

    mask = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    assert not store.has_masks("a")
    store.write_raw("a", mask, voc_palette())
    with pytest.raises(ValueError, match=r"other settings \(method: 'cam' -> 'slot-cam'; new: None -> 1\)"):
        store.claim({"method": "slot-cam", "scales": [1.0], "new": 1})  # a mask is there: they would mix
    assert not store.has_masks("a")  # the final mask is missing still
    store.mask_writer(voc_palette())("a", mask.astype(np.int64))  # what a CRF worker calls
    assert store.has_masks("a")
    np.testing.assert_array_equal(store.read_mask("a", (3, 4)), mask)
    np.testing.assert_array_equal(store.read_raw("a", (3, 4)), mask)
    with pytest.raises(ValueError, match=r"mask is 4x3 but its ground truth is 5x3; delete it"):
        store.read_mask("a", (3, 5))
    assert OutputDir(tmp_path / "plain", crf=False).raw_dir == OutputDir(tmp_path / "plain", crf=False).mask_dir

    confusion = np.ones((2, 3, 3), np.int64)
    store.save_sweep(0, confusion, {"a", "b"}, [0.1, 0.2])
    loaded, ids = store.load_sweep(0, [0.1, 0.2])
    np.testing.assert_array_equal(loaded, confusion)
    assert ids == {"a", "b"}
    assert store.load_sweep(0, [0.1, 0.3]) is None and store.load_sweep(1, [0.1, 0.2]) is None

    (store.root / SETTINGS_FILE).write_text("{broken")
    with pytest.raises(ValueError, match="unreadable"):
        store.claim(settings)


def _run(root, ckpt, out, *extra) -> int:
    return wsss_main(["eval", "--root", str(root), "--split", "val", "--checkpoint", str(ckpt),
                      "--out", str(out), "--workers", "1", *extra])


@pytest.mark.parametrize("extra, message", [
    (["--method", "token"], "needs a token-labeling model"),
    (["--method", "slot-cam", "--slot-blocks", "7"], "GLMix block 7 does not exist"),
    (["--method", "slot-oracle", "--no-crf", "--oracle-block", "9"], "GLMix block 9 does not exist"),
])
def test_a_run_the_model_cannot_serve_stops_before_out_exists(scenes_and_checkpoint, tmp_path, capsys, extra, message):
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "out"
    assert _run(root, ckpt, out, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert _run(root, ckpt, out, "--method", "cam", "--no-crf") == 0  # the corrected command is not refused


def test_out_naming_a_file_is_one_clear_error(scenes_and_checkpoint, tmp_path, capsys):
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "metrics.txt"
    out.write_text("keep me")
    assert _run(root, ckpt, out, "--method", "cam", "--no-crf") == 2
    assert "is a file, not a folder" in capsys.readouterr().err and out.read_text() == "keep me"


def test_a_run_failing_at_its_first_image_releases_the_folder(scenes_and_checkpoint, tmp_path, monkeypatch):
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "out"

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("glmix_vis.wsss.evaluate.pseudo_mask", boom)  # the pipeline, as eval calls it
    with pytest.raises(RuntimeError):
        _run(root, ckpt, out, "--method", "cam", "--no-crf")
    assert not out.exists()
    monkeypatch.undo()
    assert _run(root, ckpt, out, "--method", "cam") == 0


def test_failed_training_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert wsss_main(["train", "--root", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()


def test_settings_without_a_mask_tie_nothing(scenes_and_checkpoint, tmp_path, capsys):
    """Issue 25 item 7: a run killed before its first mask leaves settings.json behind (nothing could
    release it); the corrected command is taken and the settings rewritten, not refused "because of
    masks" that are not there."""
    store = OutputDir(tmp_path / "store", crf=False)
    store.claim({"method": "cam"})
    store.claim({"method": "slot-cam"}, write=False)  # another rank: no mask, the writing rank decides
    store.claim({"method": "slot-cam"})
    assert json.loads((store.root / SETTINGS_FILE).read_text()) == {"method": "slot-cam"}

    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "run"
    _eval(root, ckpt, out, "--method", "cam", "--no-crf", "--limit", "1")
    for png in (out / "masks").glob("*.png"):  # as a kill before the first mask leaves it
        png.unlink()
    (out / "metrics.json").unlink()
    capsys.readouterr()
    assert _eval(root, ckpt, out, "--method", "slot-cam", "--no-crf", "--limit", "1")["images"] == 1
    assert json.loads((out / SETTINGS_FILE).read_text())["method"] == "slot-cam"


def test_a_resumed_run_says_what_is_there_and_keeps_the_timing(scenes_and_checkpoint, tmp_path, capsys):
    """Issue 24 item 7: "N masks already there", and the timing of the images computed before it."""
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "run"
    first = _eval(root, ckpt, out, "--method", "cam", "--no-crf", "--limit", "2")
    assert f"checkpoint: {ckpt}\n" in capsys.readouterr().err  # which file it loaded, said once
    second = _eval(root, ckpt, out, "--method", "cam", "--no-crf")
    assert "2 of 4 images already have their masks" in capsys.readouterr().err
    assert second["timing"]["images_computed"] == 4 and second["timing"]["images_already_there"] == 2
    assert second["timing"]["total_s"] > first["timing"]["total_s"]


def test_metrics_md_names_the_data_and_the_threshold(scenes_and_checkpoint, tmp_path):
    """Issue 24 item 7: generated scenes are not "voc"; the background threshold that decided the score is stated."""
    root, ckpt = scenes_and_checkpoint
    result = _eval(root, ckpt, tmp_path / "a", "--method", "cam", "--no-crf")
    text = (tmp_path / "a" / "metrics.md").read_text()
    assert text.startswith("# cam on generated scenes val")
    assert f"Background threshold {result['settings']['bg_threshold']:g} (" in text
    assert result["bg_threshold"]["value"] == result["settings"]["bg_threshold"]
    _eval(root, ckpt, tmp_path / "b", "--method", "cam", "--no-crf", "--bg-threshold", "0.35")
    assert "Background threshold 0.35 (--bg-threshold)" in (tmp_path / "b" / "metrics.md").read_text()


def test_save_evidence_writes_irns_layout(scenes_and_checkpoint, tmp_path):
    """Issue 24 item 7: the raw evidence as ``.npy``, as IRN's later steps read it."""
    root, ckpt = scenes_and_checkpoint
    out = tmp_path / "run"
    _eval(root, ckpt, out, "--method", "cam", "--no-crf", "--limit", "2")
    assert not (out / "evidence").exists()
    _eval(root, ckpt, out, "--method", "cam", "--no-crf", "--limit", "2", "--save-evidence")  # resumed: written now
    dataset = open_dataset("voc", root, "val")
    for i in range(2):
        saved = np.load(out / "evidence" / f"{dataset.image_ids[i]}.npy", allow_pickle=True).item()
        keys = np.flatnonzero(dataset.image_labels(i))
        assert saved["keys"].tolist() == keys.tolist()
        h, w = dataset.load_mask(i).shape
        assert saved["high_res"].shape == (len(keys), h, w) and saved["high_res"].dtype == np.float32
        assert 0.0 <= saved["high_res"].min() and saved["high_res"].max() <= 1.0


def test_other_settings_are_refused_before_the_default_scenes_are_generated(tmp_path, monkeypatch, capsys):
    """Issue 24 item 5: a flagless eval into a folder of other masks spent minutes generating the
    default dataset before refusing the folder; now it refuses first."""
    import glmix_vis.data.scenes as scenes

    default = tmp_path / "default-scenes"
    monkeypatch.setattr(scenes, "DEFAULT_SCENES_DIR", default)
    out = tmp_path / "eval"
    store = OutputDir(out, crf=False)
    store.claim({"method": "cam", "dataset": "voc"})
    store.write_raw("x", np.zeros((2, 2), np.uint8), voc_palette())
    assert wsss_main(["eval", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings (" in err and "method: 'cam' -> 'slot-cam'" in err
    assert not default.exists()
