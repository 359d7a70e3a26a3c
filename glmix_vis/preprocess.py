"""Turning RGB images into model input, and model-resolution maps back into image pixels.

One place for the normalisation and resizing rules, so the trainer, the evaluator, the figures
and the app all feed the network the same way.

Sizes, named for what they are: ``short_side`` is the length the image's shorter side is scaled
to (``ModelInfo.input_size``, ``--input-size``; None keeps the image's own size); ``(h, w)`` from
:func:`model_input_size` is the batch the network sees, rounded to the stride.

The network input is bounded here, for every entry point (CLI, Python API, eval, the app): an
image more elongated than :data:`MAX_ASPECT_RATIO` is refused (a 1x1024 sliver would otherwise
reach the network as 163840x160 at a short side of 160: minutes and gigabytes for 91 bytes), and
so is an input of more than :data:`MAX_INPUT_PIXELS` pixels. An image larger than that bound but
bound for a smaller input is shrunk as 8-bit pixels first, so it never exists as float32 at full size.
The commands that show maps (``slots``, ``figure``) read an image through :func:`load_working_image`:
one larger than that bound is decoded reduced, so it never exists at full size at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .io import ImageSource, load_image

__all__ = ["MAX_ASPECT_RATIO", "MAX_INPUT_PIXELS", "to_tensor", "normalize", "image_to_batch", "resize_batch",
           "model_input_size", "load_working_image"]

#: The longer side of an image may be at most this many times its shorter side.
MAX_ASPECT_RATIO = 16
#: The network sees at most this many pixels (2048x2048; a VOC photo at its own size is 0.19 M).
MAX_INPUT_PIXELS = 2048 * 2048


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Channel normalisation of a (..., 3, H, W) tensor in [0, 1]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def model_input_size(height: int, width: int, short_side: int | None, multiple: int = 32) -> tuple[int, int]:
    """The (h, w) the network sees: short side scaled to ``short_side`` (None keeps the image's
    size), both sides rounded to a multiple of the network stride so every stage's grid is exact.

    A ``ValueError`` (one line) refuses an empty image, a ``short_side`` below 1, an aspect ratio
    beyond :data:`MAX_ASPECT_RATIO` and an input of more than :data:`MAX_INPUT_PIXELS` pixels.
    """
    if height < 1 or width < 1:
        raise ValueError(f"empty image ({width}x{height} pixels)")
    if short_side is not None and short_side < 1:
        raise ValueError(f"the input size (short side) must be positive, got {short_side}")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(f"a {width}x{height} image has an aspect ratio of {ratio:.0f}:1, more than the "
                         f"{MAX_ASPECT_RATIO}:1 allowed; crop or pad it first")
    h, w = float(height), float(width)
    if short_side is not None:
        scale = short_side / min(height, width)
        h, w = height * scale, width * scale
    size = (max(multiple, int(round(h / multiple)) * multiple), max(multiple, int(round(w / multiple)) * multiple))
    if size[0] * size[1] > MAX_INPUT_PIXELS:
        asked = f"an input size of {short_side}" if short_side is not None else "the image's own size"
        raise ValueError(f"{asked} makes the network input {size[1]}x{size[0]} = {size[0] * size[1]} pixels, "
                         f"more than the limit of {MAX_INPUT_PIXELS}; choose a smaller input size (--input-size)")
    return size


def resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (B, C, H, W) float tensor to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def image_to_batch(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
                   short_side: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """One RGB image -> a normalised (1, 3, h, w) batch at the network's input size.

    An image of more than :data:`MAX_INPUT_PIXELS` pixels is shrunk to that size while still 8-bit
    (Pillow's antialiased bilinear filter, the one torch's ``antialias=True`` follows), so an 8000x8000
    photo never becomes a 768 MB float32 tensor; smaller images take the float path unchanged.
    """
    size = model_input_size(image.shape[0], image.shape[1], short_side)
    if image.shape[0] * image.shape[1] > MAX_INPUT_PIXELS and size[0] * size[1] < image.shape[0] * image.shape[1]:
        image = _shrink_uint8(image, size)
    x = to_tensor(image).unsqueeze(0).to(device)
    x = resize_batch(x, size)
    return normalize(x, mean, std)


def _shrink_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) uint8 image resized to ``size`` (h, w) with Pillow's antialiased bilinear filter."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def load_working_image(src: ImageSource) -> np.ndarray:
    """An image as the commands that show maps read it: one of more than :data:`MAX_INPUT_PIXELS`
    pixels is decoded reduced and shrunk to that many (:func:`glmix_vis.io.load_image`'s
    ``shrink_to``). The network never sees more pixels, so nothing it would use is lost, and maps
    drawn at the image's size stay bounded (an 8000x8000 JPEG: 2048x2048, not 64 megapixels)."""
    return load_image(src, shrink_to=MAX_INPUT_PIXELS)
