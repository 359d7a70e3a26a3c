"""``figures.LAYOUTS``, the one table of figure layouts, and ``glmix-vis figure``'s wiring through it:
every entry is a ``--layout`` choice whose options are flags and whose name dispatches to its
function; anything else is refused in one line. Checked through the table and the command line,
not through matplotlib."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import glmix_vis.figures as figures
from glmix_vis.cli import figure_cmd
from glmix_vis.cli.vis import main
from glmix_vis.figures.layouts import LAYOUTS, Layout, LayoutOption, layout_options
from glmix_vis.figures.style import PaperFigure

#: A value of each layout option, to drive every option through the command line (a new option
#: needs one here: the test below says so).
SAMPLES = {"--blocks": ("0,-1", [0, -1]), "--counts": (None, True), "--slots": ("1,2", [1, 2]), "-k": ("2", 2),
           "--class": ("star", "star"), "--bg-threshold": ("0.3", 0.3), "--no-crf": (None, False),
           "--methods": ("cam,slot-cam+crf", None), "--atlas": ("{atlas}", "{atlas}"), "--concepts": ("2", 2)}


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[10:40, 12:44] = (220, 60, 40)
    Image.fromarray(rgb).save(path)
    return str(path)


def figure_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    return figure_cmd.add_parser(root.add_subparsers(), "figure")


def test_every_layout_is_a_choice_and_every_option_a_flag() -> None:
    parser = figure_parser()
    layout = next(a for a in parser._actions if a.dest == "layout")
    assert list(layout.choices) == list(LAYOUTS)
    for option, names in layout_options().items():
        assert option.flag in parser._option_string_actions, option.flag
        assert all(option in LAYOUTS[n].options for n in names)
    assert set(SAMPLES) == {o.flag for o in layout_options()}, "give each layout option a sample value above"


def test_each_entry_names_its_public_function() -> None:
    for name, layout in LAYOUTS.items():
        function = layout.function
        assert callable(function) and getattr(figures, function.__name__) is function, name


@pytest.fixture()
def spies(monkeypatch) -> dict[str, list[tuple]]:
    """Every layout function replaced by a spy that records its call and returns a blank figure."""
    calls: dict[str, list[tuple]] = {name: [] for name in LAYOUTS}
    for name, layout in LAYOUTS.items():
        module, _, attribute = layout.path.partition(":")

        def spy(source, *args, _name=name, **kwargs):
            rows = list(source[1]) if isinstance(source, tuple) else [source]
            calls[_name].append((source, rows, args, kwargs))
            return PaperFigure(figsize=(1, 1))

        monkeypatch.setattr(f"glmix_vis.figures.{module}.{attribute}", spy)
    return calls


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_dispatches_to_its_function_with_its_options(name, spies, tiny_checkpoint, image_file, tmp_path,
                                                                 tiny_atlas, capsys, request) -> None:
    if LAYOUTS[name].needs_segmenter:
        tiny_checkpoint = request.getfixturevalue("tiny_segmenter_checkpoint")
    argv = ["figure", image_file, "--layout", name, "--checkpoint", tiny_checkpoint, "--device", "cpu",
            "--dpi", "40", "--width", "single", "--out", str(tmp_path / "fig.png")]
    expected = {}
    for option in LAYOUTS[name].options:
        text, value = SAMPLES[option.flag]
        if text == "{atlas}":  # a folder made by the fixture
            text = value = str(tiny_atlas)
        argv += [option.flag] if text is None else [option.flag, text]
        expected[option.keyword] = value
    assert main(argv) == 0, capsys.readouterr().err
    assert [n for n, c in spies.items() if c] == [name]  # this layout's function, no other
    (source, rows, args, kwargs), = spies[name]
    assert len(rows) == 1 and rows[0].shape == (48, 64, 3) and not args
    assert kwargs["width"] == "single" and kwargs["dpi"] == 40
    for keyword, value in expected.items():
        got = kwargs[keyword]
        if keyword == "recipes":
            got, value = [r.name for r in got], ["cam", "slot-cam+crf"]
        assert got == value, keyword
    assert not set(kwargs) & ({o.keyword for o in layout_options()} - set(expected))  # left out: not passed


def test_an_unknown_layout_is_refused_by_argparse(image_file, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["figure", image_file, "--layout", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'nope'" in err and len(err.splitlines()) == 1


def test_options_of_another_layout_and_bad_values_are_one_line(spies, tiny_checkpoint, image_file, capsys) -> None:
    base = ["figure", image_file, "--checkpoint", tiny_checkpoint, "--device", "cpu"]
    assert main([*base, "--layout", "grid", "--slots", "1"]) == 2
    assert "--slots applies to the soft layout, not to --layout grid" in capsys.readouterr().err
    assert main([*base, "--layout", "representative", "-k", "0"]) == 2
    assert "-k: expected a whole number >= 1, got 0" in capsys.readouterr().err
    assert main([*base, "--layout", "evidence", "--class", "cat"]) == 2
    assert "--class: 'cat' is not one of the model's classes" in capsys.readouterr().err
    assert not any(spies.values())


def test_an_option_two_layouts_share_is_declared_once() -> None:
    one = LayoutOption("--x", "x", "an option")
    other = LayoutOption("--x", "x", "the same flag, said differently")
    assert layout_options({"a": Layout("m:a", "a", (one,)), "b": Layout("m:b", "b", (one,))}) == {one: ["a", "b"]}
    with pytest.raises(ValueError, match="declares --x"):
        layout_options({"a": Layout("m:a", "a", (one,)), "b": Layout("m:b", "b", (other,))})


def test_reading_the_table_imports_no_plotting() -> None:
    """The command line reads LAYOUTS to build its options, for every command: it must stay light."""
    code = ("import sys; from glmix_vis.figures import LAYOUTS; import glmix_vis.cli.figure_cmd; "
            "print(sorted(m for m in ('matplotlib', 'glmix_vis.figures.panels', 'glmix_vis.figures.class_layouts') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
