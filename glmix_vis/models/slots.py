"""Slot assignment maps: what each GLMix block's soft clustering did to the pixel grid.

A GLMix block compares every pixel feature with every initial slot and gets one logit per
(slot, pixel) pair: ``slot_scale * cos(initial slot_s, normed pixel_p)``. The block then uses
the same logits twice:

* softmax over pixels (``grouping``): each slot's weights for pooling pixels into it;
* softmax over slots (``dispatch``): each pixel's distribution over slots, used to move the
  updated slots back to the grid (this is what the GLMix authors visualise).

:class:`SlotMap` keeps the raw logits and derives those views on demand, in float32 whatever
the dtype the forward pass ran in.

:func:`run_slots` is the one place the tool runs the network for maps and evidence: no autograd,
the caller's precision (:func:`glmix_vis.devices.inference_precision`), float32 outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..devices import network_autocast

__all__ = ["BlockIndexError", "SlotMap", "SlotOutput", "block_label", "parse_blocks", "resolve_blocks",
           "run_slots", "slots_float32", "input_size_of"]

#: GLMix blocks shown by default when there are more: four spread from the first to the last.
SPREAD_BLOCKS = 4


class BlockIndexError(IndexError, ValueError):
    """A GLMix block index the model does not have (an IndexError and a ValueError)."""


def parse_blocks(text: str) -> tuple[int, ...] | None:
    """``"0,2,-1"`` -> ``(0, 2, -1)``; ``"all"`` -> None (every block). Spaces are ignored."""
    cleaned = text.replace(" ", "")
    if cleaned == "all":
        return None
    try:
        blocks = tuple(int(b) for b in cleaned.split(",") if b)
    except ValueError:
        raise ValueError(f"GLMix blocks must be comma-separated integers such as 0,2,-1 or 'all', "
                         f"got {text!r}") from None
    if not blocks:
        raise ValueError("no GLMix blocks given")
    return blocks


def resolve_blocks(num_blocks: int, blocks: Sequence[int] | int | None, default: str = "all") -> list[int]:
    """The one block-selection rule: non-negative GLMix block indices (negative ones count from
    the end), or a clear :class:`BlockIndexError`.

    ``default`` when ``blocks`` is None: ``"all"``, ``"spread"`` (all, or four spread from the
    first to the last when there are more) or ``"last"``.
    """
    if blocks is None:
        if default == "last":
            return [num_blocks - 1]
        if default == "spread" and num_blocks > SPREAD_BLOCKS:
            step = (num_blocks - 1) / (SPREAD_BLOCKS - 1)
            return sorted({int(round(k * step)) for k in range(SPREAD_BLOCKS)})
        return list(range(num_blocks))
    if isinstance(blocks, int):
        blocks = [blocks]
    out = []
    for b in blocks:
        if not -num_blocks <= int(b) < num_blocks:
            raise BlockIndexError(f"GLMix block {b} does not exist: this model has {num_blocks} GLMix blocks "
                                  f"(indices 0..{num_blocks - 1}, or -{num_blocks}..-1 from the end)")
        out.append(int(b) % num_blocks)
    if not out:
        raise BlockIndexError("no GLMix blocks selected")
    return out


@dataclass(frozen=True)
class SlotMap:
    """The slot assignment of one GLMix block.

    Attributes:
        stage: index of the stage (0..3) the block belongs to.
        block: index of the block inside its stage.
        grid: ``(h, w)`` of the pixel grid the block ran on.
        logits: ``(B, S, h*w)`` assignment logits, locations flattened row-major.
        slots: ``(B, S, C)`` slot features after the block's slot self-attention.
        input_size: ``(H, W)`` of the image batch given to the model.
    """

    stage: int
    block: int
    grid: tuple[int, int]
    logits: torch.Tensor
    slots: torch.Tensor
    input_size: tuple[int, int]

    @property
    def name(self) -> str:
        return f"stages.{self.stage}.blocks.{self.block}"

    @property
    def num_slots(self) -> int:
        return self.logits.shape[1]

    def _grid_view(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], *self.grid)

    @property
    def dispatch(self) -> torch.Tensor:
        """``(B, S, h, w)``: softmax over slots; sums to 1 over S at every pixel."""
        return self._grid_view(self.logits.float().softmax(dim=1))

    @property
    def grouping(self) -> torch.Tensor:
        """``(B, S, h, w)``: softmax over pixels; each slot's weights sum to 1 over the grid."""
        return self._grid_view(self.logits.float().softmax(dim=-1))

    @property
    def hard(self) -> torch.Tensor:
        """``(B, h, w)`` int64: the most likely slot of every pixel."""
        return self.logits.argmax(dim=1).reshape(self.logits.shape[0], *self.grid)

    def upsample(self, size: Sequence[int] | None = None, mode: str = "bilinear") -> torch.Tensor:
        """The dispatch map resized to ``size`` (default: the input size), still summing to 1.

        Interpolating the logits rather than the probabilities keeps every pixel a proper
        distribution over slots and gives smooth, sharp-edged boundaries.
        """
        size = tuple(size) if size is not None else self.input_size
        logits = self._grid_view(self.logits.float())
        if mode == "nearest":
            up = F.interpolate(logits, size=size, mode="nearest")
        else:
            up = F.interpolate(logits, size=size, mode=mode, align_corners=False)
        return up.softmax(dim=1)

    def hard_upsampled(self, size: Sequence[int] | None = None) -> torch.Tensor:
        """``(B, H, W)`` hard slot labels at ``size`` (default: the input size)."""
        return self.upsample(size).argmax(dim=1)

    def share(self) -> torch.Tensor:
        """``(B, S)``: the fraction of the image each slot wins in the hard assignment."""
        hard = self.hard.flatten(1)
        counts = F.one_hot(hard, self.num_slots).sum(dim=1).float()
        return counts / hard.shape[1]

    def detach(self) -> SlotMap:
        return SlotMap(self.stage, self.block, self.grid, self.logits.detach(), self.slots.detach(),
                       self.input_size)

    def to(self, *args, **kwargs) -> SlotMap:
        return SlotMap(self.stage, self.block, self.grid, self.logits.to(*args, **kwargs),
                       self.slots.to(*args, **kwargs), self.input_size)


def block_label(index: int, slot_map: SlotMap, *, with_path: bool = False) -> str:
    """The one name of a GLMix block wherever a person reads it (app, CLI, figures, docs):
    ``"block 3 (stage 3)"``.

    ``index`` is the block's GLMix block index (0 = the first GLMix block; the index ``--blocks``
    and ``resolve_blocks`` take); the stage is counted from 1. The module path
    (:attr:`SlotMap.name`, ``stages.2.blocks.2``) is for code, not for readers: ``with_path``
    adds it, ``"block 3 (stage 3) = stages.2.blocks.2"``, for the one place that tells a reader
    both names (the app's block picker).
    """
    label = f"block {int(index)} (stage {slot_map.stage + 1})"
    return f"{label} = {slot_map.name}" if with_path else label


@dataclass
class SlotOutput:
    """What :meth:`GLNet.forward_slots` returns.

    Attributes:
        logits: ``(B, num_classes)``, the same as ``model(x)`` in eval mode (or the pooled
            features when the model has no head).
        features: ``(B, C, h, w)`` final features after the last norm.
        maps: one :class:`SlotMap` per GLMix block, in forward order.
        cls_logits: token-labeling models only: the head on the mean-pooled features.
        token_logits: token-labeling models only: ``(B, h*w, num_classes)`` dense head.
        segmentation: segmenters only (:class:`~glmix_vis.models.segmenter.GLNetSegmenter`):
            ``(B, C, h', w')`` per-pixel logits of every class, background first, at the decoder's stride.
    """

    logits: torch.Tensor
    features: torch.Tensor
    maps: list[SlotMap] = field(default_factory=list)
    cls_logits: torch.Tensor | None = None
    token_logits: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None

    def __iter__(self) -> Iterator[SlotMap]:
        return iter(self.maps)

    def __len__(self) -> int:
        return len(self.maps)

    def select(self, blocks: Sequence[int] | None) -> list[SlotMap]:
        """Maps of the given GLMix block indices (negative indices count from the end; None: all)."""
        return [self.maps[b] for b in resolve_blocks(len(self.maps), blocks)]

    def split(self) -> list[SlotOutput]:
        """One :class:`SlotOutput` per image of a batched one (views, no copies)."""
        def part(t: torch.Tensor | None, k: int) -> torch.Tensor | None:
            return None if t is None else t[k:k + 1]

        return [SlotOutput(logits=self.logits[k:k + 1], features=self.features[k:k + 1],
                           maps=[replace(m, logits=m.logits[k:k + 1], slots=m.slots[k:k + 1]) for m in self.maps],
                           cls_logits=part(self.cls_logits, k), token_logits=part(self.token_logits, k),
                           segmentation=part(self.segmentation, k))
                for k in range(self.logits.shape[0])]


# --------------------------------------------------------------------------------------------
# the network runner
# --------------------------------------------------------------------------------------------
def run_slots(model: nn.Module, images: torch.Tensor) -> SlotOutput:
    """``model.forward_slots(images)`` without autograd (maps and evidence are inference only), in
    the precision the caller chose (:func:`glmix_vis.devices.inference_precision`); the output is
    float32 whatever the forward pass ran in."""
    if not hasattr(model, "forward_slots"):
        raise TypeError(f"{type(model).__name__} has no forward_slots(); class evidence needs a GLNet")
    with torch.no_grad(), network_autocast(images.device):
        return slots_float32(model.forward_slots(images))


def slots_float32(out: SlotOutput) -> SlotOutput:
    """``out`` with every tensor float32 (itself when they are: a float32 pass is not copied)."""
    def f32(t: torch.Tensor | None) -> torch.Tensor | None:
        return t if t is None or t.dtype == torch.float32 else t.float()

    maps = [m if m.logits.dtype == m.slots.dtype == torch.float32 else m.to(torch.float32) for m in out.maps]
    if all(a is b for a, b in zip(maps, out.maps)) and all(
            f32(t) is t for t in (out.logits, out.features, out.cls_logits, out.token_logits, out.segmentation)):
        return out
    return replace(out, logits=f32(out.logits), features=f32(out.features), maps=maps,
                   cls_logits=f32(out.cls_logits), token_logits=f32(out.token_logits),
                   segmentation=f32(out.segmentation))


def input_size_of(out: SlotOutput) -> tuple[int, int]:
    """The image size a :class:`SlotOutput` was computed at (from its slot maps)."""
    if not out.maps:
        raise ValueError("this SlotOutput has no slot maps to read the input size from; pass size=")
    return tuple(out.maps[0].input_size)  # type: ignore[return-value]
