"""Slot-CAM (ours): class evidence scored per GLMix slot and dispatched back through the slot maps.

A GLMix block soft-clusters its pixel grid into slots that follow image content. Slot-CAM
gives every slot one score per class and paints each pixel with the scores of the slots it
belongs to:

1. slot scores, ``(B, S, K)``, one of
   * ``score="cam"`` (default): the dense evidence (normalised CAM, or the token head with
     ``base="token"``) resampled to the block's grid and pooled with the slot's weights,
     ``score_k[s] = sum_p w[s, p] * cam_k[p]``. The weights are, with ``pool="dispatch"``
     (default), the dispatch map normalised over pixels (the slot's share of the soft
     partition), or the block's own ``grouping`` (softmax over pixels, what the model pools
     slots with; so peaked that a few pixels decide the score);
   * ``score="head"``: the updated slot features through the linear head, ReLU'd and divided
     by their maximum over slots. Only for blocks whose width equals the head's input width.

   With ``contrast="minmax"`` (default) each class's slot scores are then stretched to [0, 1]
   over the image's slots: pooling a CAM gives every slot some evidence, and without the
   stretch the least likely slot would still paint its pixels with it;
2. pixel scores: ``pixel_k[p] = sum_s dispatch[s, p] * score_k[s]``, with the dispatch map
   upsampled to the input size by :meth:`SlotMap.upsample` (interpolated logits, then softmax),
   so a map's edges are the slots' edges, not a bilinear ramp across the coarse CAM grid;
3. the selected blocks are combined by ``mean``, ``max`` or ``product`` (geometric mean, so the
   result stays on the scale of one block), then mixed with the plain CAM, by default as a
   weighted geometric mean ``slot_maps ** (1 - cam_weight) * cam ** cam_weight``: a pixel needs
   both its slot's evidence (sharp edges, whole parts) and nearby CAM evidence (locality: a
   fine block's slot can gather texture-alike pixels from all over the image). ``cam_mix=
   "linear"`` mixes ``(1 - cam_weight) * slot_maps + cam_weight * cam`` instead.

:data:`DEFAULT_SLOT_CAM` is the one place that fixes the default recipe; its docstring gives
the measurements that chose it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn

from ...models.slots import SlotMap, SlotOutput, parse_blocks, run_slots
from .base import (
    NORM_EPS,
    ClassMap,
    EvidenceMethod,
    apply_linear,
    linear_head,
    normalize_per_class,
    register_evidence,
    resize_maps,
)
from .cam import CAM
from .token import TokenEvidence
from .tta import tta_evidence

__all__ = ["SlotCAM", "SlotCAMConfig", "DEFAULT_SLOT_CAM", "BLOCK_PRESETS"]

BLOCK_PRESETS = ("first", "last-stage", "all")
SCORES = ("cam", "head")
POOLS = ("grouping", "dispatch")
COMBINES = ("mean", "product", "max")
CONTRASTS = ("minmax", "none")
CAM_MIXES = ("geometric", "linear")
TTA_MODES = ("dense", "all")
BASES = ("cam", "token")
UPSAMPLES = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class SlotCAMConfig:
    """The Slot-CAM recipe.

    Attributes:
        blocks: which GLMix blocks: ``"first"`` (the first GLMix block: the finest grid),
            ``"last-stage"`` (every GLMix block of the deepest stage that has any), ``"all"``,
            or indices into ``SlotOutput.maps`` (negative from the
            end; a string ``"0,-2,-1"`` is accepted too).
        score: ``"cam"`` (pool the dense evidence into slots) or ``"head"`` (slot features
            through the head; final-width blocks only).
        pool: slot weights for ``score="cam"``: ``"grouping"`` or ``"dispatch"``.
        contrast: ``"minmax"`` stretches each class's slot scores to [0, 1] over the slots of
            the image; ``"none"`` keeps them as pooled.
        combine: ``"mean"``, ``"product"`` (geometric mean) or ``"max"`` over blocks.
        cam_weight: weight of the plain dense evidence mixed into the result, in [0, 1]
            (0: slots only, 1: the plain dense evidence).
        cam_mix: ``"geometric"`` (weighted geometric mean) or ``"linear"`` mixing.
        base: the dense evidence pooled into slots and mixed in: ``"cam"`` or ``"token"``.
        upsample: interpolation of the dispatch logits to the input size.
        dispatch_scale: dispatch at this fraction of the output size, then resize the maps
            bilinearly (below 1 trades edge sharpness for speed on CPU; 1 is exact).
        tta: under test-time augmentation, ``"dense"`` augments only the dense evidence and
            pools it into the slots of the unaugmented image; ``"all"`` averages whole
            slot-CAM maps over the scales and flips, like any other method.
    """

    blocks: str | tuple[int, ...] = "first"
    score: str = "cam"
    pool: str = "dispatch"
    contrast: str = "minmax"
    combine: str = "mean"
    cam_weight: float = 0.5
    cam_mix: str = "geometric"
    base: str = "cam"
    upsample: str = "bilinear"
    dispatch_scale: float = 1.0
    tta: str = "dense"

    def __post_init__(self) -> None:
        blocks = self.blocks
        if isinstance(blocks, str) and blocks not in BLOCK_PRESETS:
            try:
                blocks = parse_blocks(blocks) or "all"
            except ValueError:
                raise ValueError(f"blocks must be one of {BLOCK_PRESETS} or block indices, got {self.blocks!r}") from None
        elif not isinstance(blocks, str):
            blocks = tuple(int(b) for b in blocks)
        if not isinstance(blocks, str) and not blocks:
            raise ValueError("blocks must name at least one GLMix block")
        object.__setattr__(self, "blocks", blocks)
        for name, allowed in (("score", SCORES), ("pool", POOLS), ("contrast", CONTRASTS), ("combine", COMBINES),
                              ("cam_mix", CAM_MIXES), ("base", BASES), ("upsample", UPSAMPLES),
                              ("tta", TTA_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"slot-cam {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 <= self.cam_weight <= 1.0:
            raise ValueError(f"cam_weight must be in [0, 1], got {self.cam_weight}")
        if not 0.0 < self.dispatch_scale <= 1.0:
            raise ValueError(f"dispatch_scale must be in (0, 1], got {self.dispatch_scale}")


#: The default Slot-CAM recipe, chosen on the bundled model (first 80 val scenes, no CRF, best
#: background threshold of each; eval/RESULTS.md): the first GLMix block, whose 40x40-grid slots
#: are the best partition (slot oracle 79.4 mIoU against 65.5 / 51.3 / 45.4 for blocks 1-3),
#: CAM pooled over each slot's share of the dispatch map (52.3; the peaked grouping weights
#: gave 34.6), min-max contrast (52.3 against 45.9 without), and the geometric mean with the
#: CAM (60.2; 52.3 slots alone, 60.3 linear at 0.3, plain CAM 41.0). Deeper blocks added to the
#: first lowered it (blocks 0-1: 58.8, all: 54.0). Under IRN's test-time augmentation (train
#: split, with CRF) augmenting only the dense evidence gave 82.2 against 80.7 for whole maps.
#: Re-checked on the train split (eval/tune_slot_cam.py, 300 images): the structure holds; a CAM
#: weight of 0.3 is +2.4 without the CRF but -2.4 with it (200 images), so 0.5 stays.
DEFAULT_SLOT_CAM = SlotCAMConfig()


@register_evidence("slot-cam")
class SlotCAM(EvidenceMethod):
    """Slot-CAM evidence (see the module docstring).

    Args:
        config: the recipe (default :data:`DEFAULT_SLOT_CAM`); keyword ``overrides`` replace
            single fields, e.g. ``SlotCAM(combine="product")``.
        class_map, class_reduce: see :class:`EvidenceMethod`.
        bias: add the head's bias (CAM and ``score="head"``).
    """

    def __init__(self, config: SlotCAMConfig | None = None, class_map: ClassMap | None = None,
                 class_reduce: str = "max", bias: bool = True, **overrides: object) -> None:
        super().__init__(class_map, class_reduce)
        known = {f.name for f in fields(SlotCAMConfig)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown slot-cam options {sorted(unknown)}; expected some of {sorted(known)}")
        self.config = replace(config or DEFAULT_SLOT_CAM, **overrides)
        self.bias = bias
        self._dense: CAM | TokenEvidence
        if self.config.base == "token":
            self._dense = TokenEvidence(class_map, class_reduce)
        else:
            self._dense = CAM(class_map, class_reduce, bias=bias)

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The fields of :class:`SlotCAMConfig` (defaults :data:`DEFAULT_SLOT_CAM`) and the constructor's."""
        return {**{f.name: getattr(DEFAULT_SLOT_CAM, f.name) for f in fields(SlotCAMConfig)},
                **super().option_defaults()}

    # ---------------------------------------------------------------- pieces
    def select_maps(self, model: nn.Module, out: SlotOutput) -> list[SlotMap]:
        """The slot maps of the configured blocks (for ``score="head"``: those of the head's width)."""
        if not out.maps:
            raise ValueError("slot-cam needs GLMix slot maps; this SlotOutput has none")
        blocks = self.config.blocks
        head_width = linear_head(model).in_features if self.config.score == "head" else None
        if blocks == "all":
            maps = list(out.maps)
        elif blocks == "first":  # with score="head": the first block of the head's width
            maps = [next((m for m in out.maps if m.slots.shape[-1] == head_width), out.maps[0])
                    if head_width else out.maps[0]]
        elif blocks == "last-stage":
            deepest = max(m.stage for m in out.maps)
            maps = [m for m in out.maps if m.stage == deepest]
        else:
            maps = out.select(blocks)
        if head_width is not None:
            width = head_width
            widths = sorted({m.slots.shape[-1] for m in out.maps})
            matching = [m for m in maps if m.slots.shape[-1] == width]
            if not matching or (not isinstance(blocks, str) and len(matching) != len(maps)):
                raise ValueError(f"slot-cam score='head' needs slots of the head's width {width}; the selected "
                                 f"blocks have widths {sorted({m.slots.shape[-1] for m in maps})} "
                                 f"(all GLMix widths: {widths}); use score='cam'")
            maps = matching
        return maps

    def dense_evidence(self, model: nn.Module, out: SlotOutput, classes: list[int] | None) -> torch.Tensor:
        """``(B, K', h, w)`` normalised dense evidence (CAM or token head) on the final grid."""
        return normalize_per_class(self._dense.logit_maps(model, out, classes))

    def slot_scores(self, model: nn.Module, slot_map: SlotMap, dense: torch.Tensor | None,
                    classes: list[int] | None) -> torch.Tensor:
        """``(B, S, K')`` per-slot class scores in [0, 1]."""
        if self.config.score == "head":
            logits = apply_linear(slot_map.slots, linear_head(model), self.bias)  # (B, S, N)
            scores = self.select_targets(logits.transpose(1, 2), classes).clamp_min(0)  # (B, K', S)
            scores = (scores / (scores.amax(dim=-1, keepdim=True) + NORM_EPS)).transpose(1, 2)
        else:
            assert dense is not None
            evidence = resize_maps(dense, slot_map.grid).flatten(2)  # (B, K', P)
            if self.config.pool == "grouping":
                weights = slot_map.grouping.flatten(2)
            else:
                d = slot_map.dispatch.flatten(2)
                weights = d / d.sum(dim=-1, keepdim=True).clamp_min(NORM_EPS)
            scores = torch.einsum("bsp,bkp->bsk", weights, evidence)
        if self.config.contrast == "minmax":
            low = scores.amin(dim=1, keepdim=True)
            scores = (scores - low) / (scores.amax(dim=1, keepdim=True) - low + NORM_EPS)
        return scores

    def iter_block_maps(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
                        size: Sequence[int], dense: torch.Tensor | None = None
                        ) -> Iterator[tuple[SlotMap, torch.Tensor]]:
        """Each selected block with its ``(B, K', H, W)`` pixel scores (for inspection and tuning).

        ``dense`` is the normalised dense evidence to pool (any size; default: this output's own).
        """
        if dense is None and self.config.score == "cam":
            dense = self.dense_evidence(model, out, classes)
        scale = self.config.dispatch_scale
        at = tuple(size) if scale == 1.0 else tuple(max(1, round(int(s) * scale)) for s in size)
        for m in self.select_maps(model, out):
            scores = self.slot_scores(model, m, dense, classes)
            dispatch = m.upsample(at, mode=self.config.upsample)  # (B, S, H, W)
            yield m, resize_maps(torch.einsum("bsk,bshw->bkhw", scores, dispatch), size)

    # ---------------------------------------------------------------- evidence
    def raw(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
            size: tuple[int, int]) -> torch.Tensor:
        return self.from_dense(model, out, self.dense_evidence(model, out, classes), classes, size)

    def from_dense(self, model: nn.Module, out: SlotOutput, dense: torch.Tensor, classes: list[int] | None,
                   size: tuple[int, int]) -> torch.Tensor:
        """Slot-CAM maps at ``size`` from ``out``'s slots and normalised dense evidence ``dense``."""
        combine = self.config.combine
        acc: torch.Tensor | None = None
        n = 0
        for _, pix in self.iter_block_maps(model, out, classes, size, dense):
            if acc is None:
                acc = pix
            elif combine == "max":
                acc = torch.maximum(acc, pix)
            elif combine == "product":
                acc = acc * pix
            else:
                acc = acc + pix
            n += 1
        assert acc is not None
        if combine == "mean":
            acc = acc / n
        elif combine == "product":
            acc = acc.clamp_min(0).pow(1.0 / n)  # geometric mean: a zero in any block stays zero
        w = self.config.cam_weight
        if w == 0:
            return acc
        dense = resize_maps(dense, size)
        if self.config.cam_mix == "linear":
            return (1 - w) * acc + w * dense
        # weighted geometric mean of two maps in [0, 1] (each brought to peak 1 first, so that
        # the weight, not the scale of either map, decides their balance)
        return normalize_per_class(acc).pow(1 - w) * dense.pow(w)

    def augmented(self, model: nn.Module, images: torch.Tensor, classes: list[int] | None,
                  scales: Sequence[float], flip: bool, size: tuple[int, int]) -> torch.Tensor | None:
        """Test-time augmentation of the dense evidence only (``tta="dense"``).

        Scaled and flipped copies sharpen where the CAM puts a class, but the slots of a
        half-size image are coarse: averaging whole slot-CAM maps over scales blurs the edges
        that are slot-CAM's point. So the dense evidence is averaged over every scale and flip,
        and pooled into the slots of the image at its own scale (and of its mirror image, with
        ``flip``).
        """
        if self.config.tta != "dense" or (tuple(scales) == (1.0,) and not flip):
            return None
        dense = tta_evidence(self._dense, model, images, classes, scales=scales, flip=flip, size=size)
        if not flip:
            return self.from_dense(model, run_slots(model, images), dense, classes, size)
        # the flipped image's slots too (flipping loses no resolution), so the maps stay equivariant
        b = images.shape[0]
        both = self.from_dense(model, run_slots(model, torch.cat([images, images.flip(-1)])),
                               torch.cat([dense, dense.flip(-1)]), classes, size)
        return (both[:b] + both[b:].flip(-1)) / 2

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, config={self.config})"
