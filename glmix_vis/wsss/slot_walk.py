"""The slot random walk (ours): class probabilities propagated along the pixel affinity a GLMix block
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
3. moves the ``(K+1)``-plane probabilities ``steps`` times, ``v <- T v``: every cell's probabilities
   become the ``T``-weighted average of those of the cells it is alike with.

With a radius, ``T`` is a local operator: it is kept as one weight per (cell, offset) within the
radius (``(M, h, w)``, like PAR's neighbour weights) rather than a dense ``N x N`` matrix, so the
cost is linear in the cells. The walk runs on the selected blocks' finest grid (a coarser block's
dispatch is resized to it through its logits, :meth:`SlotMap.upsample`; several blocks' affinities
are averaged, ``combine="mean"``, or multiplied, ``"product"``: alike in every block). The
probabilities are area-averaged onto the grid, and the walk's result is brought back to the image
size bilinearly.

The walk is linear in the probabilities: :func:`walk_operator` builds ``T`` once per image and
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
_CHUNK_VALUES = 1 << 23  # most float32 values one gathered neighbour stack holds (32 MB)


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
    """

    blocks: str | tuple[int, ...] = (0,)
    steps: int = 8
    power: float = 8.0
    radius: float = 5.0
    top_k: int = 0
    combine: str = "mean"
    residual: bool = False

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
        object.__setattr__(self, "power", _positive(self.power, "power"))
        object.__setattr__(self, "radius", _positive(self.radius, "radius"))
        if self.combine not in COMBINES:
            raise ValueError(f"slot-walk combine must be one of {COMBINES}, got {self.combine!r}")

    def block_indices(self, num_blocks: int) -> list[int]:
        """The selected blocks of a model with ``num_blocks`` GLMix blocks (or a clear error)."""
        return resolve_blocks(num_blocks, None if self.blocks == "all" else self.blocks)


#: The default slot walk (chosen on the train split; eval/RESULTS.md).
DEFAULT_SLOT_WALK = SlotWalkConfig()


def walk_offsets(radius: float) -> list[tuple[int, int]]:
    """The ``(dy, dx)`` offsets within ``radius`` (Euclidean), ``(0, 0)`` included, row by row."""
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def walk_grid(maps: Sequence[SlotMap]) -> tuple[int, int]:
    """The grid the walk runs on: the finest of the blocks' grids."""
    return tuple(max((m.grid for m in maps), key=lambda g: g[0] * g[1]))  # type: ignore[return-value]


def _gather(x: torch.Tensor, offsets: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``(C, M, h, w)``: ``x`` ``(C, h, w)`` read at every cell plus each offset (0 outside the grid)."""
    h, w = x.shape[-2:]
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = F.pad(x, (pad, pad, pad, pad))
    return torch.stack([padded[:, pad + dy:pad + dy + h, pad + dx:pad + dx + w] for dy, dx in offsets], dim=1)


def _chunk(count: int, per_item: int) -> int:
    """How many of ``count`` items of ``per_item`` gathered values each to take at once (bounded memory)."""
    return max(1, min(count, _CHUNK_VALUES // max(1, per_item)))


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
        step = _chunk(d.shape[0], len(offsets) * d[0].numel())
        a = sum((_gather(part, offsets) * part[:, None]).sum(dim=0) for part in d.split(step))
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
    """``steps`` walk steps of ``(C, h, w)`` planes: ``v[i] <- sum_o weights[o, i] * v[i + o]``."""
    parts = []
    for part in planes.split(_chunk(planes.shape[0], weights.numel())):
        for _ in range(steps):
            part = (_gather(part, offsets) * weights).sum(dim=1)
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
    grid = walk_grid(maps)
    offsets = walk_offsets(config.radius)
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
