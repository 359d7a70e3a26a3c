"""Turning RGB images into model input, and model-resolution maps back into image pixels.

One place for the normalisation and resizing rules, so the trainer, the evaluator, the figures
and the app all feed the network the same way.

Sizes, named for what they are: ``short_side`` is the length the image's shorter side is scaled
to (``ModelInfo.input_size``, ``--input-size``; None keeps the image's own size); ``(h, w)`` from
:func:`model_input_size` is the batch the network sees, rounded to the stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["to_tensor", "normalize", "image_to_batch", "resize_batch", "model_input_size"]


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
    size), both sides rounded to a multiple of the network stride so every stage's grid is exact."""
    if short_side is not None:
        scale = short_side / min(height, width)
        height, width = height * scale, width * scale
    return (max(multiple, int(round(height / multiple)) * multiple),
            max(multiple, int(round(width / multiple)) * multiple))


def resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a (B, C, H, W) float tensor to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def image_to_batch(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
                   short_side: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """One RGB image -> a normalised (1, 3, h, w) batch at the network's input size."""
    x = to_tensor(image).unsqueeze(0).to(device)
    x = resize_batch(x, model_input_size(image.shape[0], image.shape[1], short_side))
    return normalize(x, mean, std)
