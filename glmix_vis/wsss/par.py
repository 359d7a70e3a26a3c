"""PAR: the pixel-adaptive refinement of AFA (Ru et al., "Learning Affinity from Attention: End-to-End
Weakly-Supervised Semantic Segmentation with Transformers", CVPR 2022; their ``PAR`` module as
``refine_cams_with_bkg_v2`` uses it), a training-free smoothing of class evidence along colours.

Every pixel ``i`` looks at the 8 neighbours ``j`` of a 3x3 ring at each dilation (1, 2, 4, 8, 12, 24
pixels: 48 neighbours; replicate padding at the border) and weighs them by

* colour: ``softmax_j(-mean_c (|I_ic - I_jc| / (sigma_ic * w1))^2)``, ``sigma_ic`` the standard
  deviation of channel ``c`` over ``i``'s neighbours, so what counts is contrast relative to the
  pixel's surroundings (the colour scale does not matter);
* position: ``softmax_j(-(d_j / (sigma_d * w1))^2)``, ``d_j`` the neighbour's distance (the
  dilation, times sqrt(2) on the diagonals) and ``sigma_d`` their deviation: one kernel for every
  pixel, favouring near neighbours,

``weight = colour + w2 * position`` (``w1 = 0.3``, ``w2 = 0.01``). Then, ``iterations`` times (10),
every pixel's values become the weighted sum of its neighbours'. As AFA, this runs at half
the image size (``downscale=2``) and is resized back bilinearly. The weights sum to ``1 + w2``
per pixel (AFA's); :func:`par_operator` divides the result by ``(1 + w2) ** iterations``, so a
constant plane (AFA's background, our threshold) stays as it is and refining the CAMs alone
gives AFA's argmax over ``[background, CAMs]``.

The refinement is linear: :func:`par_operator` computes the weights of an image once and applies
them to any stack of planes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PARParams", "DEFAULT_DILATIONS", "par_weights", "par_operator"]

#: AFA's dilations of the 3x3 neighbourhood ring.
DEFAULT_DILATIONS: tuple[int, ...] = (1, 2, 4, 8, 12, 24)
#: The 8 neighbours of a 3x3 ring as (dy, dx) steps, row by row (AFA's kernel order).
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_EPS = 1e-8  # AFA's guard on the standard deviations
_BLOCK_VALUES = 1 << 15  # values per op of the propagation (torch's grain: one thread)


@dataclass(frozen=True)
class PARParams:
    """PAR's settings (defaults: AFA's).

    Attributes:
        iterations: propagation steps (10).
        dilations: dilations of the 3x3 neighbour ring, in pixels of the working size.
        w1: width of the colour and position kernels, in standard deviations (0.3).
        w2: weight of the position kernel against the colour kernel (0.01).
        downscale: PAR runs at ``(H // downscale, W // downscale)`` (AFA: 2) and the result is
            resized back; 1 runs at the image size.
    """

    iterations: int = 10
    dilations: tuple[int, ...] = DEFAULT_DILATIONS
    w1: float = 0.3
    w2: float = 0.01
    downscale: int = 2

    def __post_init__(self) -> None:
        dilations = tuple(self.dilations) if not isinstance(self.dilations, (int, str)) else ()
        if not dilations or any(isinstance(d, bool) or int(d) != d or d < 1 for d in dilations):
            raise ValueError(f"PAR dilations must be whole numbers >= 1, got {self.dilations!r}")
        object.__setattr__(self, "dilations", tuple(int(d) for d in dilations))
        if isinstance(self.iterations, bool) or int(self.iterations) != self.iterations or self.iterations < 0:
            raise ValueError(f"PAR iterations must be a whole number >= 0, got {self.iterations!r}")
        if isinstance(self.downscale, bool) or int(self.downscale) != self.downscale or self.downscale < 1:
            raise ValueError(f"PAR downscale must be a whole number >= 1, got {self.downscale!r}")
        if not (self.w1 > 0 and math.isfinite(self.w1)):
            raise ValueError(f"PAR w1 must be a number > 0, got {self.w1!r}")
        if not (self.w2 >= 0 and math.isfinite(self.w2)):
            raise ValueError(f"PAR w2 must be a number >= 0, got {self.w2!r}")
        object.__setattr__(self, "iterations", int(self.iterations))
        object.__setattr__(self, "downscale", int(self.downscale))


def _neighbours(x: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """``(C, M, H, W)``: ``x`` ``(C, H, W)`` read at each ring neighbour, dilation by dilation."""
    h, w = x.shape[-2:]
    views = []
    for d in dilations:
        padded = F.pad(x[None], (d, d, d, d), mode="replicate")[0]
        views += [padded[:, d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w] for dy, dx in _RING]
    return torch.stack(views, dim=1)


def par_weights(image: torch.Tensor, params: PARParams = PARParams()) -> torch.Tensor:
    """``(M, H, W)`` neighbour weights (``M = 8 * len(dilations)``) of a ``(3, H, W)`` float image."""
    if image.ndim != 3:
        raise ValueError(f"the PAR image must be (C, H, W), got shape {tuple(image.shape)}")
    image = image.float()
    nbrs = _neighbours(image, params.dilations)  # (C, M, H, W)
    std = nbrs.std(dim=1, keepdim=True)
    colour = -(((nbrs - image[:, None]).abs() / (std + _EPS) / params.w1) ** 2).mean(dim=0)
    dist = torch.tensor([d * (math.sqrt(2.0) if dy and dx else 1.0) for d in params.dilations for dy, dx in _RING],
                        dtype=torch.float32, device=image.device)
    position = -((dist / (dist.std() + _EPS) / params.w1) ** 2)
    return colour.softmax(dim=0) + params.w2 * position.softmax(dim=0)[:, None, None]


def _propagate(x: torch.Tensor, weights: torch.Tensor, params: PARParams) -> torch.Tensor:
    """``iterations`` weighted neighbour sums of ``(C, H, W)`` planes, a few planes at a time: every op
    then works on a cache-sized block and stays on one thread (under torch's grain for splitting an op;
    on a busy machine each hand-off between threads can cost milliseconds)."""
    h, w = x.shape[-2:]
    pad = max(params.dilations)
    starts = [(pad + dy * d, pad + dx * d) for d in params.dilations for dy, dx in _RING]
    # replicate padding by the largest dilation (it clamps, as padding by each dilation would) as one
    # index_select from precomputed indices (F.pad and advanced indexing go multi-threaded even here)
    rows = (torch.arange(-pad, h + pad, device=x.device).clamp(0, h - 1) * w)[:, None]
    index = (rows + torch.arange(-pad, w + pad, device=x.device).clamp(0, w - 1)[None]).flatten()
    parts = []
    for part in x.split(max(1, _BLOCK_VALUES // (h * w))):
        for _ in range(params.iterations):
            out = torch.zeros_like(part)
            padded = part.flatten(1).index_select(1, index).view(-1, h + 2 * pad, w + 2 * pad)
            for n, (y0, x0) in enumerate(starts):
                out.addcmul_(padded[:, y0:y0 + h, x0:x0 + w], weights[n])
            part = out
        parts.append(part)
    return torch.cat(parts) if parts else x


def _image_tensor(image: np.ndarray, device: torch.device | str) -> torch.Tensor:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"PAR needs an RGB image (H, W, 3), got shape {img.shape}")
    return torch.tensor(img, dtype=torch.float32, device=device).permute(2, 0, 1) / 255.0


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def par_operator(image: np.ndarray, params: PARParams = PARParams(),
                 device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """PAR over ``image`` (``(H, W, 3)`` RGB) as a function of ``(C, H, W)`` planes -> ``(C, H, W)``.

    The weights are computed once, at the working size; every call resizes its planes there,
    propagates and resizes back to ``(H, W)``.
    """
    img = _image_tensor(image, device)
    size = tuple(img.shape[-2:])
    work = (max(1, size[0] // params.downscale), max(1, size[1] // params.downscale))
    weights = par_weights(_resize(img, work), params)

    def apply(planes: torch.Tensor) -> torch.Tensor:
        if planes.ndim != 3 or tuple(planes.shape[-2:]) != size:
            raise ValueError(f"PAR planes must be (C, {size[0]}, {size[1]}), got shape {tuple(planes.shape)}")
        x = _resize(planes.to(weights.device, torch.float32), work)
        return _resize(_propagate(x, weights, params), size) / (1.0 + params.w2) ** params.iterations

    return apply

