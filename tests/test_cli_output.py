"""What the commands say about what they loaded and print (issue 24 items 5, 7 and 8): the
checkpoint name rule the README states, the file each command loaded, the slot maps' legend and a
compact ``--json``, class scores by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glmix_vis.cli.vis import main as vis_main
from glmix_vis.models.checkpoints import checkpoint_candidates, resolve_checkpoint


def test_a_named_checkpoint_in_the_working_directory_wins(nano_checkpoint, checkpoint_dir, tmp_path, monkeypatch):
    """README: "a file of that name in the working directory wins" (``./glnet_stl.pth`` was not found)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    shutil.copy(nano_checkpoint, checkpoint_dir / "mine.safetensors")
    assert resolve_checkpoint("mine") == checkpoint_dir / "mine.safetensors"
    shutil.copy(nano_checkpoint, work / "mine.pth")
    assert resolve_checkpoint("mine").resolve() == work / "mine.pth"
    assert [p.resolve() for p in checkpoint_candidates("mine")] == [work / "mine.pth",
                                                                   checkpoint_dir / "mine.safetensors"]
    with pytest.raises(FileNotFoundError, match=r"\./other\.safetensors, \./other\.pth, .*checkpoint_dir"):
        resolve_checkpoint("other")


def test_slots_and_figure_say_which_file_they_loaded_and_what_they_passed_over(
        nano_checkpoint, checkpoint_dir, tmp_path, monkeypatch, capsys):
    """Two files one name stands for: the first is taken, and the loaded line names the other."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(nano_checkpoint, checkpoint_dir / "mine.safetensors")
    shutil.copy(nano_checkpoint, checkpoint_dir / "mine.pth")
    assert vis_main(["slots", "--checkpoint", "mine", "--device", "cpu", "--blocks", "0"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("checkpoint: "))
    assert line.startswith(f"checkpoint: {checkpoint_dir / 'mine.safetensors'} (found by the name 'mine'")
    assert f"not used: {checkpoint_dir / 'mine.pth'}" in line
    figure = tmp_path / "f.png"
    assert vis_main(["figure", "--checkpoint", str(nano_checkpoint), "--device", "cpu", "--blocks", "0",
                     "-o", str(figure), str(_image(tmp_path))]) == 0
    assert f"checkpoint: {nano_checkpoint}\n" in capsys.readouterr().err
    assert vis_main(["slots", "--device", "cpu", "--blocks", "0"]) == 0
    assert "(the bundled demo model)" in capsys.readouterr().out


def _image(folder):
    from PIL import Image

    path = folder / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(path)
    return path


def test_slots_text_has_a_legend_and_names_each_block_both_ways(capsys):
    assert vis_main(["slots", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("How to read the maps:") == 1 and "A-Z slots 10-35" in out
    headers = [line for line in out.splitlines() if line.startswith("block ")]
    assert len(headers) == 4  # the bundled glnet_nano's GLMix blocks
    assert headers[0].startswith("block 0 (stage 1) = stages.0.blocks.0  grid ")


def test_slots_json_puts_a_map_row_on_one_line(capsys):
    """``--json`` was 9,736 lines for one image (one line per cell); now one line per row."""
    assert vis_main(["slots", "--device", "cpu", "--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text)
    rows = sum(len(b["hard"]) for b in report["blocks"])
    assert len(text.splitlines()) < rows + 120
    assert report["checkpoint"].endswith("glnet_nano_scenes.safetensors")
    assert np.asarray(report["blocks"][0]["hard"]).shape == tuple(report["blocks"][0]["grid"])


def test_class_scores_by_name(tiny_predictor):
    """Issue 24 item 8: the scores with their class names, in class order."""
    tiny_predictor.set_image(np.full((40, 48, 3), 100, np.uint8))
    named = tiny_predictor.scores_by_class()
    assert list(named) == tiny_predictor.info.foreground_names
    assert np.allclose(list(named.values()), tiny_predictor.class_scores())
