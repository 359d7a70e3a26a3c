"""Run timm's own model test suite (``tests/test_models.py``) against the GLNet family.

The test file comes from the source distribution of the *installed* timm version on PyPI (so the
tests match the library), is patched the one way timm's maintainers would when adding a family
(``glnet`` in the forward_intermediates filter list), and runs with ``glmix_vis`` imported first
and official-layout checkpoints (the authors' ``save_model`` layout, hydra config in ``args``)
in ``$GLMIX_CHECKPOINT_DIR`` for the pretrained tests. TorchScript tests are left out: GLNet does
not support TorchScript (deprecated by torch itself).

    python eval/timm_model_tests.py [--work DIR] [--keep] [-- extra pytest args]

Exit status: pytest's, or 3 when the test file could not be fetched (no network to PyPI).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import timm
import torch

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.models.glnet import OFFICIAL_VARIANTS

FILTER_LINE_END = "'csatv2', 'cpubone'"  # the last entries of FEAT_INTER_FILTERS in timm 1.0.2x-1.0.3x


def fetch_test_file(work: Path) -> Path:
    """timm's ``tests/`` of the installed version, from its sdist on PyPI."""
    version = timm.__version__
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    f"timm=={version}", "-d", str(work)], check=True)
    sdist = next(work.glob("timm-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name and m.isfile()]
        tar.extractall(work, members=members, filter="data")
    tests = next(work.glob("timm-*/tests"))
    return tests / "test_models.py"


def patch(test_file: Path) -> None:
    """Add ``glnet`` to the families tested through forward_intermediates / the getter wrapper."""
    text = test_file.read_text()
    if "'glnet'" in text:
        return
    if FILTER_LINE_END not in text:
        raise SystemExit(f"{test_file}: FEAT_INTER_FILTERS has changed shape; add 'glnet' to it by hand")
    test_file.write_text(text.replace(FILTER_LINE_END, FILTER_LINE_END + ", 'glnet'", 1))
    (test_file.parent / "conftest.py").write_text("import glmix_vis.models  # noqa: F401\n")


def write_official_checkpoints(folder: Path) -> None:
    """Random weights in the layout of the authors' ``save_model`` for every official variant."""
    omegaconf = None
    try:
        import omegaconf
    except ImportError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    for name in OFFICIAL_VARIANTS:
        path = folder / f"{name}.pth"
        if path.is_file():
            continue
        model = timm.create_model(name)
        args = {"model": name, "input_size": 224, "output_dir": "./out"}
        if omegaconf is not None:
            args = omegaconf.OmegaConf.create({**args, "log_dir": "${output_dir}/log"})
        ckpt = {"model": model.state_dict(), "epoch": 299, "args": args}
        if name == "glnet_16g":
            ckpt["model_ema"] = model.state_dict()
        torch.save(ckpt, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="timm-tests-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            test_file = fetch_test_file(work)
        except (subprocess.CalledProcessError, StopIteration) as exc:
            print(f"could not fetch timm {timm.__version__}'s tests from PyPI: {exc}", file=sys.stderr)
            return 3
        patch(test_file)
        checkpoints = work / "checkpoints"
        write_official_checkpoints(checkpoints)
        env = {**os.environ, "GLMIX_CHECKPOINT_DIR": str(checkpoints)}
        env.pop("GITHUB_ACTIONS", None)  # the pretrained tests run only outside GitHub's runners
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
               "ignore::pytest.PytestUnknownMarkWarning", "--rootdir", str(test_file.parent),
               str(test_file), "-k", "glnet and not torchscript", *args.pytest_args]
        print("+", " ".join(cmd), flush=True)
        return subprocess.run(cmd, cwd=test_file.parent, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
