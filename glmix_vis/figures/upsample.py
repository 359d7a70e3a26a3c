"""Hard slot labels at display size, straight from a block's grid logits.

The reference rule (:meth:`glmix_vis.models.slots.SlotMap.hard_upsampled`) upsamples every slot's
logits bilinearly to the display size and takes the argmax over slots: ``S`` full-size maps for
one ``(H, W)`` label image, most of the web app's time. :func:`hard_labels` gives the same labels
(equal but for float rounding where two slots tie) with image-size work on labels only:

1. interpolate the logits vertically to every display row, still on the grid's columns
   (``(H, w, S)``: small, as ``w`` is the grid's width);
2. along a display row, between two neighbouring grid columns, every slot's logit is a line in
   the horizontal weight ``t`` in [0, 1], so the winning slot changes only where the upper
   envelope of these lines has a corner. If both ends prefer the same slot, it wins the whole
   interval (a convex combination keeps the order). Otherwise the envelope is walked from the
   left winner: the next winner is the slot that catches up with the current one first, until
   the right winner is reached (usually after one step, sometimes two or three);
3. each corner becomes an event "from this pixel on, slot k" in its row, and a running maximum
   along the rows fills the pixels in between.

Index arrays are cached per (grid, display size), so blocks with the same grid and every image of
the same size share them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["bilinear_axis", "hard_labels"]


@lru_cache(maxsize=64)
def bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, t)`` of one axis resized from ``n_in`` to ``n_out`` samples, as PyTorch's bilinear
    interpolation with ``align_corners=False`` does: output ``k`` mixes inputs ``i0[k]`` and
    ``i1[k]`` (``i0 + 1``, clamped to the last) with weight ``t[k]`` on ``i1``. Read-only, cached."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"axis sizes must be positive, got {n_in} -> {n_out}")
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(src.astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = (src - i0).astype(np.float32)
    for a in (i0, i1, t):
        a.flags.writeable = False
    return i0, i1, t


@lru_cache(maxsize=64)
def _columns(w: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display columns of each grid interval ``c``: ``starts[c]:stops[c]`` (empty when
    downscaling skips it), and every column's source coordinate ``c0 + t`` (non-decreasing)."""
    c0, _, t = bilinear_axis(w, width)
    starts = np.searchsorted(c0, np.arange(w), side="left")
    stops = np.searchsorted(c0, np.arange(w), side="right")
    source = c0 + t.astype(np.float64)
    for a in (starts, stops, source):
        a.flags.writeable = False
    return starts, stops, source


def _corners(left: np.ndarray, slope: np.ndarray, first: np.ndarray, last: np.ndarray,
             ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The corners of the upper envelope of ``n`` sets of lines ``left + t * slope`` (``(n, S)``)
    on ``t`` in [0, 1], walked from the winner at 0 (``first``) to the one at 1 (``last``).

    Returns, per step, ``(which, t, slot)``: the lines whose envelope turns a ``step``-th time, where,
    and to which slot.
    """
    n = len(first)
    current = first.copy()
    since = np.zeros(n, np.float32)
    active = np.arange(n)
    steps = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while active.size:
            rows = np.arange(active.size)
            here, rise = left[active], slope[active]
            now = current[active]
            faster = rise - rise[rows, now][:, None]  # how much faster each slot rises than the winner
            catch = here[rows, now][:, None] - here
            catch /= faster  # where each slot catches up with the winner
            catch[faster <= 0] = np.inf
            np.maximum(catch, since[active][:, None], out=catch)  # rounding: never before the last corner
            nxt = catch.argmin(axis=1)
            at = catch[rows, nxt]
            turns = at < 1.0
            which, slot = active[turns], nxt[turns]
            steps.append((which, at[turns], slot))
            current[which] = slot
            since[which] = at[turns]
            active = which[slot != last[which]]  # the winner at 1 is never overtaken
    return steps


def hard_labels(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` int16: the slot with the largest bilinearly upsampled logit at every pixel of
    ``size`` (``logits``: ``(S, h, w)`` on the block's grid), as
    :meth:`~glmix_vis.models.slots.SlotMap.hard_upsampled` computes it at full size."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or min(logits.shape) < 1:
        raise ValueError(f"logits must be (S, h, w), got shape {logits.shape}")
    num_slots, h, w = logits.shape
    if num_slots > np.iinfo(np.int16).max:
        raise ValueError(f"at most {np.iinfo(np.int16).max} slots, got {num_slots}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    r0, r1, ty = bilinear_axis(h, height)
    starts, stops, source = _columns(w, width)

    # 1. every display row on the grid's columns: (H, w, S)
    grid = np.ascontiguousarray(np.moveaxis(logits.astype(np.float32, copy=False), 0, -1))
    rows = grid[r0]
    rows *= (1.0 - ty)[:, None, None]
    rows += grid[r1] * ty[:, None, None]
    winner = rows.argmax(axis=2)  # (H, w)

    # 2. the envelope's corners in the intervals whose two ends disagree
    nxt = np.minimum(np.arange(w) + 1, w - 1)
    ys, cs = np.nonzero(winner != winner[:, nxt])
    left = rows[ys, cs]
    slope = rows[ys, nxt[cs]]
    slope -= left
    steps = _corners(left, slope, winner[ys, cs], winner[ys, nxt[cs]])

    # 3. events, ordered along each row by their id: an interval's start, then its corners
    stride = len(steps) + 1
    interval_id = (np.arange(height)[:, None] * w + np.arange(w)) * stride
    slot_of = np.zeros(height * w * stride, np.int16)
    slot_of[interval_id.ravel()] = winner.ravel()
    events = np.zeros((height, width), np.int32 if slot_of.size < 2**31 else np.int64)
    present = stops > starts
    events[:, starts[present]] = interval_id[:, present]
    for step, (which, at, slot) in enumerate(steps, 1):
        y, c = ys[which], cs[which]
        pos = np.searchsorted(source, c + at.astype(np.float64), side="right")  # first pixel past the corner
        inside = pos < stops[c]
        ids = interval_id[y[inside], c[inside]] + step
        slot_of[ids] = slot[inside]
        at_pixel = (y[inside], pos[inside])  # one event per interval and step: no repeated pixel
        events[at_pixel] = np.maximum(events[at_pixel], ids)  # a corner on an interval's first pixel wins
    np.maximum.accumulate(events, axis=1, out=events)
    return slot_of[events]
