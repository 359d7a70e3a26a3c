"""The console scripts parse first and import only what the chosen command runs (issue 24, item 4):
``--help``, ``--version`` and argument errors answer without importing torch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

import glmix_vis
from glmix_vis.cli._dispatch import build_parser
from glmix_vis.cli.scripts import VIS_COMMANDS, WSSS_COMMANDS

PROBE = """
import sys
from glmix_vis.cli.{script} import main
try:
    status = main({argv!r})
except SystemExit as exc:
    status = exc.code
print("STATUS", status, "TORCH", "torch" in sys.modules)
"""

LIGHT = [
    ("vis", []), ("vis", ["--help"]), ("vis", ["--version"]), ("vis", ["bogus"]),
    ("vis", ["slots", "--help"]), ("vis", ["slots", "--blocks"]), ("vis", ["figure", "--help"]),
    ("vis", ["checkpoint", "--help"]), ("vis", ["app", "--help"]), ("vis", ["app", "--port", "x"]),
    ("wsss", ["--help"]), ("wsss", ["--version"]), ("wsss", ["train", "--help"]),
    ("wsss", ["train", "--epochs", "x"]), ("wsss", ["make-data", "--help"]),
    ("wsss", ["eval", "--help"]), ("wsss", ["eval", "--method", "bogus"]), ("wsss", ["train-seg", "--help"]),
    ("wsss", ["train", "--model", "bogus"]), ("wsss", ["eval", "--device", "tpu"]),
]

#: Every subcommand's parser (and a subcommand's own actions: ``checkpoint inspect``), every option
#: with a checked value given a bad one, in one process: which argument list first imported torch,
#: and every one that did not exit with status 2.
EVERY_ERROR = """
import argparse, contextlib, io, json, sys
from pathlib import Path
from glmix_vis.cli._dispatch import build_parser
from glmix_vis.cli.scripts import VIS_COMMANDS, WSSS_COMMANDS

def argument_lists(prefix, parser):
    yield [*prefix, "--help"]
    yield [*prefix, "--no-such-option"]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from argument_lists([*prefix, name], sub)
        elif a.option_strings and a.nargs != 0 and (a.choices is not None or a.type not in (None, str, Path)):
            yield [*prefix, a.option_strings[0], "bogus!value"]

torch_after, not_refused, probes = None, [], 0
for prog, commands in (("glmix-vis", VIS_COMMANDS), ("glmix-wsss", WSSS_COMMANDS)):
    for name in commands:
        parser = build_parser(prog, "", commands, only=name)
        for argv in argument_lists([name], parser._subparsers._group_actions[0].choices[name]):
            probes += 1
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    parser.parse_args(argv)
                    code = "parsed"
                except SystemExit as exc:
                    code = exc.code
            if code not in (0, 2) or (code == 0 and argv[-1] != "--help"):
                not_refused.append([argv, code])
            if torch_after is None and "torch" in sys.modules:
                torch_after = argv
print(json.dumps(dict(torch_after=torch_after, not_refused=not_refused, probes=probes)))
"""


@pytest.mark.parametrize(("script", "argv"), LIGHT)
def test_help_version_and_argument_errors_import_no_torch(script, argv):
    out = subprocess.run([sys.executable, "-c", PROBE.format(script=script, argv=argv)], capture_output=True,
                         text=True, timeout=120)
    status, torch_loaded = out.stdout.split("STATUS ")[1].split(" TORCH ")
    assert int(status) in (0, 2), out.stderr
    assert torch_loaded.strip() == "False", (argv, out.stderr[-500:])


def test_every_argument_error_of_every_command_imports_no_torch():
    """Issue 24 item 4: each subcommand's --help, an unknown option, and a bad value for every option
    whose value is checked (choices or a type) answer with exit status 2 before torch is imported."""
    out = subprocess.run([sys.executable, "-c", EVERY_ERROR], capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["probes"] > 100
    assert report["not_refused"] == []
    assert report["torch_after"] is None, report["torch_after"]


def _actions(label: str, parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # a command's own actions (checkpoint inspect)
            for name, sub in action.choices.items():
                yield from _actions(f"{label} {name}", sub)
        elif not isinstance(action, argparse._HelpAction):
            yield f"{label} {'/'.join(action.option_strings) or action.dest}", action


def _options(prog: str, commands: dict[str, str]):
    for name in commands:
        parser = build_parser(prog, "", commands, only=name)
        yield from _actions(f"{prog} {name}", parser._subparsers._group_actions[0].choices[name])


def test_every_option_says_what_it_does_and_its_default():
    """Issue 24 item 5: no option without a help text, and every option that takes a value and has a
    default names it (a store_true/store_false switch says what it does)."""
    silent, no_default = [], []
    for prog, commands in (("glmix-vis", VIS_COMMANDS), ("glmix-wsss", WSSS_COMMANDS)):
        for label, action in _options(prog, commands):
            if not action.help:
                silent.append(label)
            elif action.nargs != 0 and action.default not in (None, False) and "default" not in action.help:
                no_default.append(label)
    assert silent == []
    assert no_default == []


def test_every_command_that_reads_a_dataset_declares_it_alike():
    """``--dataset`` and ``--root`` have one declaration (``_args.add_dataset_arguments``): the data
    package's formats, one help text each, whichever command reads the dataset."""
    from glmix_vis.data import DATASET_FORMATS

    found: dict[str, dict[str, argparse.Action]] = {"--dataset": {}, "--root": {}}
    for prog, commands in (("glmix-vis", VIS_COMMANDS), ("glmix-wsss", WSSS_COMMANDS)):
        for label, action in _options(prog, commands):
            command, option = label.rsplit(" ", 1)
            if option in found:
                found[option][command] = action
    assert set(found["--dataset"]) == set(found["--root"])
    assert {"glmix-vis atlas", "glmix-vis slot-quality", "glmix-wsss eval", "glmix-wsss train",
            "glmix-wsss train-seg"} <= set(found["--dataset"])
    assert {tuple(a.choices) for a in found["--dataset"].values()} == {DATASET_FORMATS}
    assert len({a.help.split("; default")[0] for a in found["--dataset"].values()}) == 1
    assert len({a.help for a in found["--root"].values()}) == 1


def test_the_values_the_parsers_read_from_source_are_the_library_values():
    """The parsers read names and defaults from their owners' source (``cli/_source.py``): each is
    what the imported owner holds."""
    from dataclasses import asdict

    from glmix_vis.cli import _source
    from glmix_vis.data import DATASET_FORMATS, DEFAULT_DATASET_FORMAT
    from glmix_vis.models.glnet import MODEL_CONFIGS
    from glmix_vis.models.segmenter import DECODERS
    from glmix_vis.train import TrainConfig
    from glmix_vis.train_seg import LOSSES, SegTrainConfig
    from glmix_vis.wsss.crf import CRFParams
    from glmix_vis.wsss.evidence import GRAD_CAM_METHODS, available_evidence_methods
    from glmix_vis.wsss.masks import DEFAULT_BG_THRESHOLD
    from glmix_vis.wsss.par import PARParams
    from glmix_vis.wsss.recipe import ORACLE_METHOD
    from glmix_vis.wsss.refinement import REFINEMENTS
    from glmix_vis.wsss.scheduling import DEFAULT_BATCH_SIZE
    from glmix_vis.wsss.slot_walk import DEFAULT_SLOT_WALK

    for module, cls, value in (("glmix_vis.wsss.crf", "CRFParams", CRFParams()),
                               ("glmix_vis.wsss.par", "PARParams", PARParams()),
                               ("glmix_vis.wsss.slot_walk", "SlotWalkConfig", DEFAULT_SLOT_WALK),
                               ("glmix_vis.train", "TrainConfig", TrainConfig(root="", out="")),
                               ("glmix_vis.train_seg", "SegTrainConfig", SegTrainConfig(root="", out=""))):
        read = vars(_source.dataclass_defaults(module, cls))
        assert read == {k: v for k, v in asdict(value).items() if k in read}, cls
        assert len(read) >= 5
    assert _source.constant("glmix_vis.wsss.recipe", "ORACLE_METHOD") == ORACLE_METHOD
    assert _source.constant("glmix_vis.data", "DATASET_FORMATS") == DATASET_FORMATS
    assert _source.constant("glmix_vis.data", "DEFAULT_DATASET_FORMAT") == DEFAULT_DATASET_FORMAT
    assert _source.constant("glmix_vis.wsss.refinement", "REFINEMENTS") == REFINEMENTS
    assert _source.constant("glmix_vis.wsss.masks", "DEFAULT_BG_THRESHOLD") == DEFAULT_BG_THRESHOLD
    assert _source.constant("glmix_vis.wsss.scheduling", "DEFAULT_BATCH_SIZE") == DEFAULT_BATCH_SIZE
    assert _source.constant("glmix_vis.train_seg", "LOSSES") == LOSSES
    assert _source.constant("glmix_vis.models.segmenter", "DECODERS") == DECODERS
    assert _source.dict_keys("glmix_vis.wsss.evidence.grad_cam", "GRAD_CAM_METHODS") == list(GRAD_CAM_METHODS)
    assert _source.dict_keys("glmix_vis.models.glnet", "MODEL_CONFIGS") == list(MODEL_CONFIGS)
    assert _source.registered_names("glmix_vis.wsss.evidence", "register_evidence") == available_evidence_methods()


def test_version_and_every_command_listed_with_its_summary(capsys):
    from glmix_vis.cli.vis import main as vis_main
    from glmix_vis.cli.wsss import main as wsss_main

    with pytest.raises(SystemExit):
        vis_main(["--version"])
    assert capsys.readouterr().out.strip() == f"glmix-vis {glmix_vis.__version__}"
    with pytest.raises(SystemExit):
        wsss_main(["--help"])
    text = capsys.readouterr().out
    assert "train" in text and "a multi-label classifier from image-level labels" in text
