import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import APP_CLASSES, TINY_CLASSES

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device (run on a GPU machine by eval/gpu_check.sh)")


def _reference_dir() -> Path:
    """The authors' test vectors: $GLMIX_REFERENCE_DIR, ../shared/reference beside the checkout, or the
    copy in tests/reference (see its README.md)."""
    env = os.environ.get("GLMIX_REFERENCE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "reference", REPO / "shared" / "reference", REPO / "tests" / "reference"]
    for c in candidates:
        if (c / "official_state_dicts.json").is_file():
            return c
    return candidates[0] if candidates else REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session", autouse=True)
def _temp_files_kept_by_pytest(tmp_path_factory):
    """Temporary files of the tests' own process go to pytest's folder, not the system's: gradio_client
    leaves an empty folder in ``tempfile.gettempdir()`` for every file it downloads."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempdir"))
    yield
    tempfile.tempdir = saved


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    d = _reference_dir()
    if not (d / "official_state_dicts.json").is_file():
        pytest.skip(f"official reference vectors not found (looked in {d}); set GLMIX_REFERENCE_DIR")
    return d


# ------------------------------------------------------------------------------ generated scenes
@pytest.fixture(scope="session")
def make_scenes(tmp_path_factory) -> Callable[..., Path]:
    """``make_scenes(n_train, n_val, size=None, seed=None)``: a generated VOC-layout dataset (``None``:
    :class:`SceneConfig`'s default), made once per set of arguments in the session and shared by
    every test that asks for the same one."""
    from glmix_vis.data.scenes import SceneConfig, generate_scenes

    made: dict[tuple, Path] = {}

    def make(n_train: int = 2, n_val: int = 4, size: int | tuple[int, int] | None = None,
             seed: int | None = None) -> Path:
        key = (n_train, n_val, size if size is None or isinstance(size, int) else tuple(size), seed)
        if key not in made:
            root = tmp_path_factory.mktemp("scenes")
            settings = {k: v for k, v in (("size", size), ("seed", seed)) if v is not None}
            generate_scenes(root, n_train=n_train, n_val=n_val, config=SceneConfig(**settings), workers=1,
                            progress=False)
            made[key] = root
        return made[key]

    return make


# ------------------------------------------------------------------------------ the web app's tests
@pytest.fixture()
def checkpoint_dir(tmp_path, monkeypatch) -> Path:
    """An empty ``$GLMIX_CHECKPOINT_DIR``: the app never scans the user's real checkpoint folder."""
    folder = tmp_path / "checkpoint_dir"
    folder.mkdir()
    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def nano_checkpoint(tmp_path_factory) -> Path:
    """A small random glnet_nano with a 3-class head (:data:`APP_CLASSES`), written like a trained checkpoint."""
    from glmix_vis.models.checkpoints import save_safetensors
    from glmix_vis.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("glnet_nano", num_classes=len(APP_CLASSES) - 1)
    path = tmp_path_factory.mktemp("ckpt") / "nano_test.safetensors"
    save_safetensors(model.state_dict(), path, meta={"model": "glnet_nano", "classes": APP_CLASSES,
                                                     "input_size": [128, 128]})
    return path


@pytest.fixture(scope="module")
def backend(nano_checkpoint, tmp_path_factory):
    """The app's backend on :func:`nano_checkpoint`, one per test module."""
    pytest.importorskip("gradio")
    from glmix_vis.app import SlotApp

    mp = pytest.MonkeyPatch()
    mp.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path_factory.mktemp("empty_dir")))
    try:
        return SlotApp(nano_checkpoint, max_side=256, device="cpu")
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def tiny_predictor():
    """A predictor over a random ``glnet_nano`` with :data:`TINY_CLASSES` and a 64 px input: fast figures."""
    from glmix_vis.data.labels import LabelSpace
    from glmix_vis.loading import ModelInfo
    from glmix_vis.models.factory import create_model
    from glmix_vis.predictor import SlotPredictor

    torch.manual_seed(0)
    model = create_model("glnet_nano", num_classes=len(TINY_CLASSES) - 1)
    info = ModelInfo(name="glnet_nano", labels=LabelSpace(tuple(TINY_CLASSES)), input_size=64)
    return SlotPredictor(model, info, device="cpu")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_predictor) -> str:
    """:func:`tiny_predictor`'s model saved with its metadata, for the CLI."""
    from glmix_vis.models.checkpoints import save_safetensors

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    meta = {"model": "glnet_nano", "classes": TINY_CLASSES, "input_size": [64, 64], "head": "foreground"}
    save_safetensors(tiny_predictor.model.state_dict(), path, meta=meta)
    return str(path)


@pytest.fixture(scope="module")
def tiny_atlas(tiny_predictor, tmp_path_factory) -> Path:
    """A slot atlas of :func:`tiny_predictor`'s block 0 over a few random pictures (``atlas.json`` and
    its crops): what the ``atlas`` figure layout and the app's atlas tab read."""
    import json

    from glmix_vis.discovery.atlas import AtlasConfig, build_atlas
    from glmix_vis.discovery.quality import GroundTruthImage
    from glmix_vis.io import atomic_write_bytes

    rng = np.random.default_rng(3)
    pictures = [GroundTruthImage(f"p{k}", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for k in range(3)]
    out = tmp_path_factory.mktemp("atlas")
    atlas = build_atlas(tiny_predictor, lambda: pictures, out, AtlasConfig(concepts=2, examples=2, fidelity_images=0,
                                                                        craft=False), progress=False)
    atomic_write_bytes(out / "atlas.json", json.dumps(atlas).encode())
    return out


@pytest.fixture(scope="module")
def tiny_segmenter_checkpoint(tmp_path_factory, tiny_checkpoint) -> str:
    """A segmenter on :func:`tiny_checkpoint`'s backbone (random decoder), saved as ``train-seg`` saves one."""
    from glmix_vis.models.checkpoints import save_safetensors
    from glmix_vis.models.factory import create_segmenter
    from glmix_vis.models.segmenter import DecoderConfig

    torch.manual_seed(0)
    model = create_segmenter(None, len(TINY_CLASSES), DecoderConfig(dim=8), init=tiny_checkpoint)
    path = tmp_path_factory.mktemp("seg") / "tiny_seg.safetensors"
    meta = {"model": "glnet_nano", "classes": TINY_CLASSES, "input_size": [64, 64], "head": "segmentation",
            "decoder": DecoderConfig(dim=8).to_dict()}
    save_safetensors(model.state_dict(), path, meta=meta)
    return str(path)
