"""The slot random walk (ours): class evidence propagated along the pixel affinity a GLMix block
already computes.

A GLMix block dispatches every pixel over its slots (``SlotMap.dispatch``, ``D``: ``S x N`` over the
block's ``N`` grid cells, each column summing to 1). Two pixels are alike when they go to the same
slots: ``A = D^T D``, the probability that both pick the same slot. As PSA's and IRN's random walks
do with their learned affinities (Ahn & Kwak, CVPR 2018; Ahn, Cho & Kwak, CVPR 2019,
``to_transition_matrix``/``propagate_to_edge``), the walk

1. keeps the affinity between cells within ``radius`` grid cells of each other (IRN's radius: a
   block-0 slot also gathers texture-alike pixels far away, and walking there spreads a class over
   the whole image), raises it to ``power`` (elementwise, sharper) and, with ``top_k``, keeps only
   each cell's ``top_k`` strongest neighbours;
2. normalises every row into a transition matrix ``T`` (IRN normalises the columns of a symmetric
   matrix and multiplies from the left: the same thing);
3. moves the class evidence planes ``steps`` times, ``v <- T v``: every cell's evidence
   becomes the ``T``-weighted average of those of the cells it is alike with.

With a radius, ``T`` is a local operator: it is kept as one weight per (cell, offset) within the
radius (``(M, h, w)``, like PAR's neighbour weights) rather than a dense ``N x N`` matrix, so the
cost is linear in the cells. The walk runs on the selected blocks' finest grid (a coarser block's
dispatch is resized to it through its logits, :meth:`SlotMap.upsample`; several blocks' affinities
are averaged, ``combine="mean"``, or multiplied, ``"product"``: alike in every block), shrunk to at
most ``max_cells`` cells for a large photo (the radius shrinks with it, so the walk reaches as far
and its cost stays bounded). The evidence is area-averaged onto the grid; what comes back to
the image size (bilinearly) is, with ``residual`` (default), only the walk's *change*, added to the
evidence at full resolution, so detail finer than the grid (a slot-CAM edge) survives where the
walk moves nothing; without it, the walk's result itself.

The walk is linear in the evidence (a constant plane, the background threshold, stays as it is): :func:`walk_operator` builds ``T`` once per image and
applies it to any stack of planes. :data:`DEFAULT_SLOT_WALK` records how its defaults were chosen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.slots import SlotMap, SlotOutput, parse_blocks, resolve_blocks

__all__ = ["SlotWalkConfig", "DEFAULT_SLOT_WALK", "COMBINES", "walk_offsets", "walk_grid", "slot_affinity",
           "transition_weights", "walk", "walk_operator"]

COMBINES = ("mean", "product")
_BLOCK_VALUES = 1 << 15  # values per op of the walk: a cache-sized block, single-threaded in torch


def _whole(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ValueError(f"slot-walk {name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"slot-walk {name} must be a number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SlotWalkConfig:
    """The slot walk's settings.

    Attributes:
        blocks: GLMix block indices (negative from the end; ``"0,1"`` or ``"all"`` accepted).
        steps: walk steps (0: only the trip to the grid and back).
        power: elementwise power of the affinity before normalising (higher: sharper).
        radius: cells farther apart than this (in cells of the walk's grid) are not linked.
        top_k: keep each cell's ``top_k`` strongest links within the radius (0: all).
        combine: ``"mean"`` or ``"product"`` of the blocks' affinities.
        residual: bring back the walk's change to the evidence (True) or its result (False).
        max_cells: the most grid cells the walk runs on (0: the blocks' grid, however large).
    """

    blocks: str | tuple[int, ...] = (0, 1)
    steps: int = 16
    power: float = 4.0
    radius: float = 5.0
    top_k: int = 32
    combine: str = "product"
    residual: bool = True
    max_cells: int = 4096

    def __post_init__(self) -> None:
        blocks = self.blocks
        if isinstance(blocks, str):
            try:
                parsed = parse_blocks(blocks)
            except ValueError as exc:
                raise ValueError(f"slot-walk blocks: {exc}") from None
            blocks = "all" if parsed is None else parsed
        elif isinstance(blocks, int) and not isinstance(blocks, bool):
            blocks = (blocks,)
        else:
            blocks = tuple(_whole(b, "block", -(1 << 30)) for b in blocks)
            if not blocks:
                raise ValueError("slot-walk blocks must name at least one GLMix block")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "steps", _whole(self.steps, "steps", 0))
        object.__setattr__(self, "top_k", _whole(self.top_k, "top_k", 0))
        object.__setattr__(self, "max_cells", _whole(self.max_cells, "max_cells", 0))
        if not isinstance(self.residual, bool):
            raise ValueError(f"slot-walk residual must be True or False, got {self.residual!r}")
        object.__setattr__(self, "power", _positive(self.power, "power"))
        object.__setattr__(self, "radius", _positive(self.radius, "radius"))
        if self.combine not in COMBINES:
            raise ValueError(f"slot-walk combine must be one of {COMBINES}, got {self.combine!r}")

    def block_indices(self, num_blocks: int) -> list[int]:
        """The selected blocks of a model with ``num_blocks`` GLMix blocks (or a clear error)."""
        return resolve_blocks(num_blocks, None if self.blocks == "all" else self.blocks)


#: The default slot walk, chosen on the generated scenes' train split (bundled model, slot-cam, each
#: variant at its best background threshold; eval/RESULTS.md and eval/tune_slot_walk.py): blocks 0
#: and 1 multiplied, radius 5, power 4, 16 steps, top 32 links, residual: 68.1 mIoU without the CRF
#: against 61.2 unrefined (300 images), and with the CRF 68.8 against 67.4 (200 images), where the
#: variants that were up to 0.9 better without the CRF fell behind it. Blocks 0-1 gave +1.8 over
#: block 0 alone, the residual +1, the product +0.5-1 over the mean; with no radius at all the walk
#: fell below the unrefined masks.
DEFAULT_SLOT_WALK = SlotWalkConfig()


def walk_offsets(radius: float) -> list[tuple[int, int]]:
    """The ``(dy, dx)`` offsets within ``radius`` (Euclidean), ``(0, 0)`` included, row by row."""
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def walk_grid(maps: Sequence[SlotMap], max_cells: int = 0) -> tuple[tuple[int, int], float]:
    """The grid the walk runs on, the finest of the blocks' grids shrunk to at most ``max_cells`` cells
    (0: no limit), and the factor it was shrunk by (1: not at all)."""
    h, w = max((tuple(m.grid) for m in maps), key=lambda g: g[0] * g[1])
    if not max_cells or h * w <= max_cells:
        return (h, w), 1.0
    scale = math.sqrt(max_cells / (h * w))
    return (max(1, int(h * scale)), max(1, int(w * scale))), scale


def _overlap(dy: int, dx: int, h: int, w: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The cells ``i`` of an ``(h, w)`` grid whose neighbour ``i + (dy, dx)`` is inside it, and those
    neighbours, as ``(C, h, w)`` index tuples (no padding: the walk adds only where both exist)."""
    y0, y1 = max(0, -dy), max(0, min(h, h - dy))
    x0, x1 = max(0, -dx), max(0, min(w, w - dx))
    y1, x1 = max(y0, y1), max(x0, x1)  # empty when the offset leaves the grid everywhere
    return ((slice(None), slice(y0, y1), slice(x0, x1)),
            (slice(None), slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx)))


def _blocks(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x`` ``(C, h, w)`` split into a few planes at a time: every op of the walk then works on a
    cache-sized block and stays on one thread (under torch's grain for splitting an op)."""
    return x.split(max(1, _BLOCK_VALUES // max(1, x.shape[-2] * x.shape[-1])))


def slot_affinity(maps: Sequence[SlotMap], grid: Sequence[int], offsets: Sequence[tuple[int, int]],
                  combine: str = "mean") -> torch.Tensor:
    """``(M, h, w)`` float32: ``A[i, i + offset] = sum_s D[s, i] D[s, i + offset]`` of the first image's
    dispatch maps on ``grid``, combined over ``maps``; 0 where ``i + offset`` leaves the grid."""
    if not maps:
        raise ValueError("the slot walk needs at least one slot map")
    grid = (int(grid[0]), int(grid[1]))
    total: torch.Tensor | None = None
    for m in maps:
        d = m.dispatch[0] if tuple(m.grid) == grid else m.upsample(grid)[0]  # (S, h, w)
        a = d.new_zeros(len(offsets), *grid)
        for o, (dy, dx) in enumerate(offsets):
            dst, src = _overlap(dy, dx, *grid)
            for part in _blocks(d):
                a[o][dst[1:]] += (part[dst] * part[src]).sum(dim=0)
        if total is None:
            total = a
        elif combine == "product":
            total = total * a
        else:
            total = total + a
    assert total is not None
    return total / len(maps) if combine == "mean" else total


def transition_weights(affinity: torch.Tensor, power: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """``(M, h, w)`` transition weights: ``affinity ** power``, each cell's ``top_k`` largest kept (0:
    all), normalised to sum to 1 over the offsets of every cell."""
    a = affinity.clamp_min(0)
    if power != 1.0:
        a = a.pow(power)
    if 0 < top_k < a.shape[0]:
        values, index = a.topk(top_k, dim=0)
        a = torch.zeros_like(a).scatter_(0, index, values)
    return a / a.sum(dim=0, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def walk(planes: torch.Tensor, weights: torch.Tensor, offsets: Sequence[tuple[int, int]],
         steps: int) -> torch.Tensor:
    """``steps`` walk steps of ``(C, h, w)`` planes: ``v[i] <- sum_o weights[o, i] * v[i + o]`` (the
    weights of a neighbour outside the grid are 0)."""
    h, w = planes.shape[-2:]
    regions = [_overlap(dy, dx, h, w) for dy, dx in offsets]
    links = [(dst, src, weights[o][dst[1:]]) for o, (dst, src) in enumerate(regions)]
    parts = []
    for part in _blocks(planes):
        for _ in range(steps):
            out = torch.zeros_like(part)
            for dst, src, weight in links:
                out[dst].addcmul_(part[src], weight)
            part = out
        parts.append(part)
    return torch.cat(parts) if parts else planes


def walk_operator(slots: SlotOutput, size: Sequence[int], config: SlotWalkConfig = DEFAULT_SLOT_WALK,
                  device: torch.device | str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The walk over ``slots`` (one image's forward pass) as a function of ``(C, H, W)`` planes at
    ``size`` -> ``(C, H, W)`` planes at ``size``."""
    if not slots.maps:
        raise ValueError("the slot walk needs GLMix slot maps; this SlotOutput has none")
    maps = [slots.maps[b] for b in config.block_indices(len(slots.maps))]
    if device is not None:
        maps = [m.to(device) for m in maps]
    size = (int(size[0]), int(size[1]))
    grid, scale = walk_grid(maps, config.max_cells)
    offsets = walk_offsets(config.radius * scale)  # the same reach on a shrunk grid
    weights = transition_weights(slot_affinity(maps, grid, offsets, config.combine), config.power, config.top_k)

    def apply(planes: torch.Tensor) -> torch.Tensor:
        if planes.ndim != 3 or tuple(planes.shape[-2:]) != size:
            raise ValueError(f"slot-walk planes must be (C, {size[0]}, {size[1]}), got shape {tuple(planes.shape)}")
        x = planes.to(weights.device, torch.float32)
        v0 = F.adaptive_avg_pool2d(x[None], grid)[0]
        v = walk(v0, weights, offsets, config.steps)
        if config.residual:
            return x + F.interpolate((v - v0)[None], size=size, mode="bilinear", align_corners=False)[0]
        return F.interpolate(v[None], size=size, mode="bilinear", align_corners=False)[0]

    return apply
