"""Bad command-line values get one specific line and exit status 2, before any work starts."""

from __future__ import annotations

import pytest

from glmix_vis.cli.vis import main as vis_main
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.devices import check_device_name, resolve_device
from glmix_vis.models.slots import BlockIndexError, parse_blocks, resolve_blocks


@pytest.mark.parametrize("main, argv, expected", [
    (vis_main, ["slots", "--device", "tpu"], "unknown device 'tpu'"),
    (wsss_main, ["eval", "--device", "tpu"], "unknown device 'tpu'"),
    (wsss_main, ["train", "--device", "tpu"], "unknown device 'tpu'"),
    (wsss_main, ["train", "--model", "glnet_huge"], "invalid choice: 'glnet_huge'"),
    (wsss_main, ["train", "--epochs", "0"], "--epochs: expected a whole number >= 1, got 0"),
    (wsss_main, ["eval", "--limit", "0"], "--limit: expected a whole number >= 1, got 0"),
    (wsss_main, ["eval", "--bg-threshold", "2"], "--bg-threshold: expected a number from 0 to 1, got 2"),
    (wsss_main, ["eval", "--scales", "0,-1"], "--scales: every value must be > 0"),
    (wsss_main, ["train", "--dataset", "scenes"], "invalid choice: 'scenes' (choose from 'voc', 'coco')"),
    (vis_main, ["slots", "--input-size", "-5"], "--input-size: expected a whole number >= 1, got -5"),
    (vis_main, ["figure", "x.png", "--dpi", "0"], "--dpi: expected a resolution above 0 and at most 1200 dpi, got 0"),
])
def test_bad_values_are_one_line_and_exit_2(main, argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_empty_block_list_is_an_error_not_silence(capsys):
    assert vis_main(["slots", "--blocks", ""]) == 2
    assert "no GLMix blocks given" in capsys.readouterr().err


def test_block_rule():
    assert parse_blocks("0, 2,-1") == (0, 2, -1) and parse_blocks("all") is None
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_blocks("0,x")
    assert resolve_blocks(4, None) == [0, 1, 2, 3] and resolve_blocks(4, [-1, 0]) == [3, 0]
    assert resolve_blocks(17, None, default="spread") == [0, 5, 11, 16]
    assert resolve_blocks(17, None, default="last") == [16]
    with pytest.raises(BlockIndexError, match="GLMix block 7 does not exist: this model has 4"):
        resolve_blocks(4, [7])


def test_device_names():
    check_device_name("auto")
    check_device_name("cpu")
    check_device_name("cuda:1")
    for bad in ("tpu", "meta", "cuda:x"):
        with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


def test_figure_out_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    assert vis_main(["figure", str(image), "-o", str(blocker / "fig.pdf")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "keep"
