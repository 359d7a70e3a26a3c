"""Files shipped inside the package: the demo checkpoint and example images."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_CHECKPOINT_NAME", "asset_path", "default_checkpoint", "example_images"]

DEFAULT_CHECKPOINT_NAME = "glnet_nano_scenes.safetensors"
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _assets_dir() -> Path:
    return Path(str(resources.files("glmix_vis") / "assets"))


def asset_path(name: str) -> Path:
    """Where the shipped file ``name`` lives (it may be missing from an incomplete installation)."""
    return _assets_dir() / name


def default_checkpoint() -> Path:
    """The bundled demo model: ``glnet_nano`` trained on the generated scenes (see eval/RESULTS.md)."""
    path = asset_path(DEFAULT_CHECKPOINT_NAME)
    if not path.is_file():
        raise FileNotFoundError(f"the bundled checkpoint {path} is missing: the installation is incomplete")
    return path


def example_images() -> dict[str, Path]:
    """Bundled example images by name (generated scenes, one per file)."""
    folder = _assets_dir() / "examples"
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
