"""The console scripts parse first and import only what the chosen command runs (issue 24, item 4):
``--help``, ``--version`` and argument errors answer without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import glmix_vis

PROBE = """
import sys
from glmix_vis.cli.{script} import main
try:
    status = main({argv!r})
except SystemExit as exc:
    status = exc.code
print("STATUS", status, "TORCH", "torch" in sys.modules)
"""

LIGHT = [  # eval's parser reads its defaults from the WSSS modules: not yet light
    ("vis", []), ("vis", ["--help"]), ("vis", ["--version"]), ("vis", ["bogus"]),
    ("vis", ["slots", "--help"]), ("vis", ["slots", "--blocks"]), ("vis", ["figure", "--help"]),
    ("vis", ["checkpoint", "--help"]), ("vis", ["app", "--help"]), ("vis", ["app", "--port", "x"]),
    ("wsss", ["--help"]), ("wsss", ["--version"]), ("wsss", ["train", "--help"]),
    ("wsss", ["train", "--epochs", "x"]), ("wsss", ["make-data", "--help"]),
]


@pytest.mark.parametrize(("script", "argv"), LIGHT)
def test_help_version_and_argument_errors_import_no_torch(script, argv):
    out = subprocess.run([sys.executable, "-c", PROBE.format(script=script, argv=argv)], capture_output=True,
                         text=True, timeout=120)
    status, torch_loaded = out.stdout.split("STATUS ")[1].split(" TORCH ")
    assert int(status) in (0, 2), out.stderr
    assert torch_loaded.strip() == "False", (argv, out.stderr[-500:])


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
