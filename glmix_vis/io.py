"""Robust image loading shared by every entry point (CLIs, datasets, web app).

Everything that reads an image goes through :func:`load_image`, so the same rules apply
everywhere: every Pillow mode becomes 8-bit RGB, oversized images are refused before they are
decoded, and any failure is one :class:`ImageLoadError` whose message starts with the file's
name. EXIF orientation is honoured by default (a user's photo shows as it does on their phone);
dataset readers pass ``exif_transpose=False``, because ground-truth masks are drawn on the
pixels as stored (IRN, chainercv and imageio read them that way too).

Every file the package writes for others to read (checkpoints, masks, metrics, figures) is written
through :func:`atomic_path` (or :func:`atomic_write_bytes` on it): a reader never sees half a
file, and an interrupted write leaves the old one intact.
"""

from __future__ import annotations

import io
import math
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLoadError",
    "ImageSource",
    "atomic_path",
    "atomic_write_bytes",
    "downscale_to",
    "load_image",
    "probe_image",
    "shrunk_size",
]

#: Pillow's own default bomb threshold (about 89.5 megapixels, ~270 MB as RGB).
DEFAULT_MAX_PIXELS = 89_478_485

ImageSource = str | Path | bytes | bytearray | memoryview | BinaryIO | Image.Image

_GRAY_8BIT = {"1", "L"}
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}
_HIGH_DEPTH = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
#: Modes resized as they are when an image is shrunk (RGBA and LA with their alpha premultiplied).
_SHRINK_MODES = {"RGB", "RGBA", "L", "LA"}


class ImageLoadError(ValueError):
    """An image could not be read; the message starts with the file's name."""


def _source_name(src: ImageSource) -> str:
    if isinstance(src, str | Path):
        return str(src)
    if isinstance(src, Image.Image):
        return str(getattr(src, "filename", "") or "<PIL image>")
    if isinstance(src, bytes | bytearray | memoryview):
        return "<bytes>"
    return str(getattr(src, "name", "") or "<stream>")


def _bomb_message(name: str, exc: Image.DecompressionBombError, max_pixels: int | None) -> str:
    """Pillow refused the header itself (beyond twice its own threshold): say so with *our* limit,
    the one the caller chose, and the pixel count Pillow read."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{found.group(1)} pixels" if found else "its declared size"
    limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"{name}: refused, {size} exceeds the limit of {limit} (possible decompression bomb)"


def _open(src: ImageSource, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, bytes | bytearray | memoryview):
        src = io.BytesIO(bytes(src))
    elif isinstance(src, str | Path):
        path = Path(src)
        if not path.exists():
            raise ImageLoadError(f"{name}: no such file")
        if not path.is_file():
            raise ImageLoadError(f"{name}: not a regular file")
    try:
        with warnings.catch_warnings():
            # We apply our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(src)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(_bomb_message(name, exc, max_pixels)) from None
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{name}: not a recognised image file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{name}: cannot open image ({exc})") from exc


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale 16-bit / 32-bit integer / float single-channel data to 0..255.

    The range is inferred from the data: floats within [0, 1] are fractions, values
    within 0..255 are already 8-bit, values within 0..65535 are 16-bit (divided by 257,
    so 65535 -> 255), anything else is min-max stretched.
    """
    arr = np.asarray(img).astype(np.float64)
    finite = arr[np.isfinite(arr)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        arr = arr * 255.0
    elif img.mode.startswith("I;16") or (lo >= 0.0 and 255.0 < hi <= 65535.0):
        arr = arr / 257.0
    elif not (lo >= 0.0 and hi <= 255.0):
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
    gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _composite_on_white(img: Image.Image) -> np.ndarray:
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in _HIGH_DEPTH:
        return _high_depth_to_uint8(img)
    if mode in _WITH_ALPHA or (mode in {"P", "L"} and "transparency" in img.info):
        return _composite_on_white(img)
    if mode in _GRAY_8BIT or mode in {"P", "CMYK", "YCbCr", "LAB", "HSV"}:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _open_checked(src: ImageSource, max_pixels: int | None) -> tuple[Image.Image, str]:
    """Open ``src`` lazily (header only) and refuse empty or oversized images before decoding."""
    name = _source_name(src)
    img = _open(src, name, max_pixels)
    width, height = img.size
    problem = None
    if width <= 0 or height <= 0:
        problem = f"{name}: empty image ({width}x{height})"
    elif max_pixels is not None and width * height > max_pixels:
        problem = (f"{name}: refused, {width}x{height} = {width * height} pixels exceeds the limit of "
                   f"{max_pixels} (possible decompression bomb)")
    if problem is not None:
        if img is not src:
            img.close()  # ours to close: we opened it
        raise ImageLoadError(problem)
    return img, name


def probe_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(height, width)`` of an image file as stored, read from its header without decoding pixels.

    It refuses what :func:`load_image` refuses up front (missing, unrecognised, empty, oversized),
    so checking a whole dataset with it is cheap and agrees with loading it later. EXIF
    orientation is ignored: this is the size of the stored pixels.
    """
    img, _ = _open_checked(path, max_pixels)
    with img:
        width, height = img.size
    return height, width


def shrunk_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` with the aspect ratio kept and at most ``max_pixels`` pixels (the size
    itself when it has no more)."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while w * h > max_pixels:  # floating-point rounding, or a side held at 1
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


def _decode(img: Image.Image, name: str, target: tuple[int, int] | None, ours: bool) -> Image.Image:
    """Decode ``img``'s pixels; with a ``target`` size, a JPEG we opened is decoded at the smallest
    DCT scale (1/2, 1/4, 1/8) still at least that large, so the full-size pixels never exist."""
    if target is not None and ours and img.format == "JPEG":
        img.draft(None, target)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{name}: corrupt or truncated image data ({exc})") from exc
    return img


def _shrink(img: Image.Image, target: tuple[int, int]) -> Image.Image:
    """``img`` resized to ``target`` (w, h) while still 8-bit, if its mode allows (Pillow's
    antialiased bilinear filter, integer reduction first); other modes are left for the array."""
    if img.size == target or img.mode not in _SHRINK_MODES:
        return img
    return img.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)


def load_image(
    src: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, exif_transpose: bool = True,
    shrink_to: int | None = None,
) -> np.ndarray:
    """Read ``src`` (path, bytes, binary stream or PIL image) as an (H, W, 3) uint8 RGB array.

    ``max_pixels`` bounds width*height as declared in the header, checked before any
    pixel is decoded (decompression-bomb guard); ``None`` disables the check.
    ``exif_transpose`` turns the image upright as its EXIF orientation tag asks (for user
    images); ``False`` returns the pixels as stored (for dataset images, which must align with
    masks drawn on the stored pixels).
    ``shrink_to``: an image of more pixels is returned shrunk to that many (:func:`shrunk_size`),
    decoded reduced where the format allows (a JPEG at 1/2, 1/4 or 1/8 scale) and resized as 8-bit
    pixels: an 8000x8000 photo is never held at full size as an array (``None``: the stored size).
    """
    img, name = _open_checked(src, max_pixels)
    target = None if shrink_to is None else shrunk_size(*img.size, shrink_to)
    target = None if target == img.size else target
    img = _decode(img, name, target, ours=img is not src)
    if target is not None:
        img = _shrink(img, target)
    if exif_transpose:
        try:
            img = ImageOps.exif_transpose(img) or img
        except Exception:  # a malformed EXIF block must not reject an otherwise readable image
            pass
    try:
        arr = _to_rgb_array(img)
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"{name}: cannot convert mode {img.mode!r} to RGB ({exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageLoadError(f"{name}: unexpected decoded shape {arr.shape}")
    if target is not None and arr.shape[0] * arr.shape[1] > shrink_to:  # a mode Pillow does not resize
        h, w = arr.shape[:2]
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize(
            shrunk_size(w, h, shrink_to), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def downscale_to(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink an (H, W[, C]) uint8 image so its longer side is at most ``max_side``.

    Aspect ratio is kept and an antialiasing filter is used; smaller images are returned as-is.
    """
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=image.dtype)


def _file_mode(path: Path) -> int:
    """The permissions a rewritten ``path`` should get: its own if it exists, else what the umask allows."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write; renamed onto ``path`` with
    ``os.replace`` when the block ends, removed when it raises.

    The temporary name ends in ``path``'s suffix (``np.savez`` adds ``.npz`` otherwise). The file
    gets ``path``'s permissions, or those a new file gets under the umask: some writers
    (safetensors >= 0.8) create owner-only files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}"
    try:
        yield tmp
        mode = _file_mode(path)
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
