"""PASCAL VOC colour palette and indexed ("P" mode) PNG masks."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import atomic_write_bytes

__all__ = ["VOID_COLOR", "load_palette_png", "save_palette_png", "voc_palette"]

#: Colour VOC uses for the void / ignore label 255.
VOID_COLOR = (224, 224, 192)


@lru_cache(maxsize=1)
def _voc_palette() -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):  # bit-interleave the label's bits into the high bits of r, g, b
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    palette[255] = VOID_COLOR
    palette.flags.writeable = False
    return palette


def voc_palette() -> np.ndarray:
    """VOC's standard (256, 3) uint8 colormap: 0 black, 1 (128, 0, 0), ..., 255 = (224, 224, 192)."""
    return _voc_palette().copy()


def save_palette_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write an (H, W) uint8 label map as an indexed PNG, atomically (temp file + rename)."""
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{path}: mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"{path}: mask values must lie in 0..255")
        mask = mask.astype(np.uint8)
    pal = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.shape != (256, 3):
        raise ValueError(f"palette must have shape (256, 3), got {pal.shape}")
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    img.putpalette(pal.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def load_palette_png(path: str | Path) -> np.ndarray:
    """Read an indexed PNG's (H, W) uint8 label indices; any other image mode is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode == "P":
                img.load()
                return np.array(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read mask ({exc})") from exc
    raise ValueError(f"{path}: mask must be a palette ('P' mode) PNG of class indices, got mode {mode!r}")
