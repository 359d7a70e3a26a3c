"""Consistent slot colours across blocks: follow a pixel group through the network.

Slot indices carry no identity from one GLMix block to the next (each block clusters afresh),
so colouring by index would make the same object change colour between columns. Instead,
the slots of each block are matched to those of the previous one by the overlap (IoU) of
their hard masks at a common resolution, with an optimal one-to-one matching (Hungarian
algorithm), and a matched slot inherits its partner's colour. A group that has no partner
(it split off, or appeared) gets the least recently used colour, so it does not look like a
group it has nothing to do with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["overlap_iou", "resize_labels", "track_slot_colors"]


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``(h, w)`` label map to ``size`` (pixel centres aligned)."""
    labels = np.asarray(labels)
    h, w = labels.shape
    if (h, w) == tuple(size):
        return labels
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def overlap_iou(a: np.ndarray, b: np.ndarray, num_a: int, num_b: int) -> np.ndarray:
    """``(num_a, num_b)`` IoU between the label regions of two same-size label maps."""
    if a.shape != b.shape:
        raise ValueError(f"label maps must have the same shape, got {a.shape} and {b.shape}")
    pairs = a.astype(np.intp)  # one image-size temporary, whatever the labels' dtype
    pairs *= num_b
    pairs += b
    joint = np.bincount(pairs.ravel(), minlength=num_a * num_b)
    inter = joint[: num_a * num_b].reshape(num_a, num_b).astype(np.float64)
    area_a, area_b = inter.sum(1), inter.sum(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def track_slot_colors(hard_maps: Sequence[np.ndarray], num_slots: Sequence[int], num_colors: int = 64,
                      min_iou: float = 0.0) -> list[np.ndarray]:
    """Colour index of every slot of every block, consistent along the sequence of blocks.

    Args:
        hard_maps: per block, an ``(H, W)`` int map of hard slot labels; sizes may differ
            (they are compared at the largest one, nearest-neighbour upsampled).
        num_slots: per block, the number of slots ``S_b`` (labels lie in ``0..S_b-1``).
        num_colors: size of the palette the indices point into; raised to ``max(num_slots)``.
        min_iou: a matched pair must overlap by more than this to share a colour.

    Returns:
        per block, an ``(S_b,)`` int64 array of colour indices, distinct within a block. In
        the first block, slots are coloured by decreasing area (the biggest group gets colour 0).
    """
    if len(hard_maps) != len(num_slots):
        raise ValueError(f"got {len(hard_maps)} hard maps but {len(num_slots)} slot counts")
    if not hard_maps:
        return []
    num_colors = max(num_colors, *num_slots)
    size = max((m.shape for m in hard_maps), key=lambda s: s[0] * s[1])
    maps = [np.asarray(m) for m in hard_maps]  # any integer dtype (int16 in the app): no image-size copy
    maps = [resize_labels(m if m.dtype.kind in "iu" else m.astype(np.int64), size) for m in maps]
    for m, s in zip(maps, num_slots):
        if m.size and (m.min() < 0 or m.max() >= s):
            raise ValueError(f"hard map labels must lie in 0..{s - 1}, got {m.min()}..{m.max()}")

    last_used = np.full(num_colors, -1, dtype=np.int64)  # block that last showed each colour
    colors: list[np.ndarray] = []
    for b, (labels, n) in enumerate(zip(maps, num_slots)):
        area = np.bincount(labels.ravel(), minlength=n)
        color = np.full(n, -1, dtype=np.int64)
        if b > 0:
            iou = overlap_iou(labels, maps[b - 1], n, num_slots[b - 1])
            rows, cols = linear_sum_assignment(iou, maximize=True)
            for r, c in zip(rows, cols):
                if iou[r, c] > min_iou and area[r] > 0:
                    color[r] = colors[-1][c]
        taken = set(color[color >= 0].tolist())
        # Unmatched slots, biggest first (empty ones last): least recently used colour, lowest index on ties.
        for s in sorted(np.flatnonzero(color < 0), key=lambda s: (-area[s], s)):
            free = [c for c in range(num_colors) if c not in taken]
            pick = min(free, key=lambda c: (last_used[c], c))
            color[s] = pick
            taken.add(pick)
        visible = color[area > 0]
        last_used[visible] = b
        colors.append(color)
    return colors
