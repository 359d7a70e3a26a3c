"""Qualitative colours for slot groups: colour-blind-safe first, distinct for at least 64 slots.

The palette starts with sets designed for colour-vision deficiencies:

1. Okabe & Ito's 7 colours (without black, which reads as shadow on an overlay);
2. Paul Tol's "muted" set, each colour kept only if it is not too close to one already chosen.

No hand-picked set goes beyond ~16 colours, so the rest is a deterministic, perceptually spaced
extension: greedy farthest-point sampling over an sRGB grid in OKLab (where Euclidean distance
tracks perceived difference), the distance between two colours being the *smallest* one under
normal vision and under simulated protanopia and deuteranopia (Machado et al. 2009, full
severity). Candidates are limited to mid lightness and moderate chroma (Okabe-Ito's range) so every
colour shows on a photo at overlay opacity without looking neon. Later colours are less distinct than earlier ones, and
:func:`~glmix_vis.figures.tracking.track_slot_colors` hands the first colours to the biggest
groups; slot boundaries are drawn too, so no group relies on colour alone.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["OKABE_ITO", "TOL_MUTED", "oklab_views", "slot_palette", "to_hex"]

#: Okabe & Ito (2008), without black: orange, sky blue, bluish green, yellow, blue, vermillion,
#: reddish purple.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
#: Paul Tol's muted scheme (without its "bad data" grey).
TOL_MUTED = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
             "#AA4499")

#: Colours the default palette always provides (the most GLMix blocks use).
DEFAULT_SIZE = 64

# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB.
_PROTAN = np.array([[0.152286, 1.052583, -0.204868],
                    [0.114503, 0.786281, 0.099216],
                    [-0.003882, -0.048116, 1.051998]])
_DEUTAN = np.array([[0.367322, 0.860646, -0.227968],
                    [0.280085, 0.672501, 0.047413],
                    [-0.011820, 0.042940, 0.968881]])
# Ottosson's OKLab: linear sRGB -> LMS, cube root, -> Lab.
_OK_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                   [0.2119034982, 0.6806995451, 0.1073969566],
                   [0.0883024619, 0.2817188376, 0.6299787005]])
_OK_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                   [1.9779984951, -2.4285922050, 0.4505937099],
                   [0.0259040371, 0.7827717662, -0.8086757660]])
_LIGHTNESS = (0.45, 0.88)  # OKLab L
_CHROMA = (0.07, 0.2)  # Okabe-Ito's range; more reads as neon
_MIN_BASE_DISTANCE = 0.08  # a Tol colour closer than this (worst case) to a chosen one is skipped
_GRID_STEP = 17  # 16 levels per channel: 4096 candidates


def _hex_to_rgb(colors: tuple[str, ...]) -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.uint8)


def to_hex(rgb: np.ndarray | tuple[int, int, int]) -> str:
    """``#RRGGBB`` of one uint8 RGB colour."""
    r, g, b = (int(v) for v in np.asarray(rgb).reshape(3))
    return f"#{r:02X}{g:02X}{b:02X}"


def oklab_views(rgb: np.ndarray) -> np.ndarray:
    """``(3, N, 3)`` OKLab of ``(N, 3)`` uint8 sRGB colours under normal, protan and deutan vision."""
    srgb = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    views = [linear, np.clip(linear @ _PROTAN.T, 0, 1), np.clip(linear @ _DEUTAN.T, 0, 1)]
    return np.stack([np.cbrt(v @ _OK_M1.T) @ _OK_M2.T for v in views])


def _worst_case_distance(views: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``(N,)`` smallest distance (over the three visions) between each colour and ``ref`` ``(3, 3)``."""
    return np.linalg.norm(views - ref[:, None, :], axis=-1).min(axis=0)


@lru_cache(maxsize=8)
def _palette(n: int) -> np.ndarray:
    chosen = list(_hex_to_rgb(OKABE_ITO))
    chosen_views = [v for v in oklab_views(np.array(chosen)).transpose(1, 0, 2)]
    for rgb in _hex_to_rgb(TOL_MUTED):
        views = oklab_views(rgb[None])
        if _worst_case_distance(np.stack(chosen_views, 1), views[:, 0]).min() >= _MIN_BASE_DISTANCE:
            chosen.append(rgb)
            chosen_views.append(views[:, 0])
    levels = np.arange(0, 256, _GRID_STEP)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3).astype(np.uint8)
    views = oklab_views(grid)
    lightness, chroma = views[0, :, 0], np.hypot(views[0, :, 1], views[0, :, 2])
    keep = (lightness >= _LIGHTNESS[0]) & (lightness <= _LIGHTNESS[1]) & (chroma >= _CHROMA[0]) & (chroma <= _CHROMA[1])
    grid, views = grid[keep], views[:, keep]
    nearest = np.full(len(grid), np.inf)
    for ref in chosen_views:
        nearest = np.minimum(nearest, _worst_case_distance(views, ref))
    while len(chosen) < n:
        best = int(np.argmax(nearest))  # ties go to the lowest grid index: deterministic
        chosen.append(grid[best])
        nearest = np.minimum(nearest, _worst_case_distance(views, views[:, best]))
    out = np.stack(chosen).astype(np.uint8)
    out.flags.writeable = False
    return out


def slot_palette(n: int = DEFAULT_SIZE) -> np.ndarray:
    """``(max(n, 64), 3)`` uint8 RGB colours; colour ``i`` is the same whatever ``n``."""
    if n < 0:
        raise ValueError(f"palette size must be non-negative, got {n}")
    return _palette(max(n, DEFAULT_SIZE)).copy()
