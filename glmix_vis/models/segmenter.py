"""A GLNet segmenter: the GLNet backbone (its GLMix slots intact) and a dense decoder.

Stage 2 of WSSS trains it on pseudo-masks (``glmix-wsss train-seg``). It is a model like every
other here: :meth:`GLNetSegmenter.forward_slots` returns the backbone's :class:`SlotOutput` (slot
maps of every GLMix block, final features) with the decoder's per-pixel class logits in
:attr:`SlotOutput.segmentation`, so slot maps, figures and the app work on it unchanged.

* ``model(x)``: ``(B, C, H, W)`` class logits at the input size, background first (``C`` =
  :attr:`num_classes`, every segmentation class).
* ``forward_slots(x).logits``: ``(B, C - 1)`` image-level logits derived from the segmentation,
  the log-odds of each foreground class's most confident pixel, so the label rule and every
  consumer of a multi-label head read a segmenter as they read a classifier.

Decoders (:data:`DECODERS`; ``mlp``, the default, by measurement: 55.4 against ASPP's 23.3 val mIoU on
the generated scenes at the same small budget, ``eval/RESULTS.md``):

* ``"mlp"``: SegFormer's all-MLP head (Xie et al., NeurIPS 2021): each stage projected to
  ``decoder_dim`` channels, upsampled to stride 4, concatenated, fused by a 1x1 conv + norm + ReLU
  (GroupNorm for SegFormer's BatchNorm: see :class:`MLPDecoder`), then a 1x1 classifier;
* ``"aspp"``: DeepLabV2's ASPP (Chen et al., TPAMI 2017): the sum of parallel dilated 3x3 class
  convolutions on the last stage (``aspp_rates``; DeepLabV2 uses 6/12/18/24 at stride 8, ours run
  at stride 32, so the default rates are 1/2/3/4 cells).

Checkpoints record ``head="segmentation"`` and the decoder settings in their metadata
(:mod:`.meta`); :func:`segmenter_from_checkpoint` rebuilds the network from them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from .glnet import GLNet, channels_last_batch
from .slots import SlotMap, SlotOutput

__all__ = ["DECODERS", "DecoderConfig", "GLNetSegmenter", "segmenter_from_checkpoint",
           "is_segmenter_meta"]

DECODERS = ("mlp", "aspp")
#: The metadata key that holds the decoder's settings.
DECODER_META_KEY = "decoder"
#: Logit of a probability clipped to this distance from 0 and 1 (the image-level logits stay finite).
_PROB_EPS = 1e-6


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder's settings: its kind, width, dropout and (ASPP) dilation rates."""

    kind: str = "mlp"
    dim: int = 128
    dropout: float = 0.1
    aspp_rates: tuple[int, ...] = (1, 2, 3, 4)

    def __post_init__(self) -> None:
        if self.kind not in DECODERS:
            raise ValueError(f"unknown decoder {self.kind!r}; choose one of {', '.join(DECODERS)}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"decoder dim must be a whole number >= 1, got {self.dim!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"decoder dropout must be in [0, 1), got {self.dropout!r}")
        rates = tuple(int(r) for r in self.aspp_rates)
        if not rates or any(r < 1 for r in rates):
            raise ValueError(f"ASPP rates must be whole numbers >= 1, got {self.aspp_rates!r}")
        object.__setattr__(self, "aspp_rates", rates)

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), aspp_rates=list(self.aspp_rates))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> DecoderConfig:
        raw = dict(raw or {})
        known = {k: raw[k] for k in ("kind", "dim", "dropout", "aspp_rates") if k in raw}
        return cls(**known)


class MLPDecoder(nn.Module):
    """SegFormer's all-MLP decoder over every stage, predicting at stride 4."""

    def __init__(self, in_dims: Sequence[int], num_classes: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_dims)
        # GroupNorm, not SegFormer's BatchNorm: per image, so a step does not depend on how a batch
        # is split over processes (1 or N processes take the same steps).
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(in_dims), dim, 1, bias=False), nn.GroupNorm(1, dim),
                                  nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        parts = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
                 else p(f) for p, f in zip(self.proj, features)]
        return self.classifier(self.dropout(self.fuse(torch.cat(parts, 1))))


class ASPPDecoder(nn.Module):
    """DeepLabV2's ASPP: the sum of dilated 3x3 class convolutions on the last stage."""

    def __init__(self, in_dims: Sequence[int], num_classes: int, rates: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        self.branches = nn.ModuleList(nn.Conv2d(in_dims[-1], num_classes, 3, padding=r, dilation=r) for r in rates)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.dropout(features[-1])
        return sum(b(x) for b in self.branches)  # type: ignore[return-value]


class GLNetSegmenter(nn.Module):
    """A GLNet backbone (no classifier) and a dense decoder (see the module docstring)."""

    def __init__(self, backbone: GLNet, num_classes: int, decoder: DecoderConfig | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a segmenter needs background and at least one class, got {num_classes} classes")
        self.decoder_config = decoder or DecoderConfig()
        self.backbone = backbone
        self.num_classes = num_classes
        dims = list(backbone.embed_dims)
        cfg = self.decoder_config
        self.decoder = (MLPDecoder(dims, num_classes, cfg.dim, cfg.dropout) if cfg.kind == "mlp"
                        else ASPPDecoder(dims, num_classes, cfg.aspp_rates, cfg.dropout))
        self.pretrained_cfg = dict(getattr(backbone, "pretrained_cfg", None) or {})

    @property
    def num_glmix_blocks(self) -> int:
        return self.backbone.num_glmix_blocks

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def _stages(self, x: torch.Tensor, slots: bool) -> tuple[list[torch.Tensor], list[SlotMap]]:
        """Every stage's output (the last one normed, as the backbone's final features) and, with
        ``slots``, every GLMix block's slot map."""
        input_size = (x.shape[-2], x.shape[-1])
        x = channels_last_batch(x)
        feats: list[torch.Tensor] = []
        maps: list[SlotMap] = []
        for downsample, stage in zip(self.backbone.downsample_layers, self.backbone.stages):
            if slots:
                x, stage_maps = stage.forward_slots(downsample(x), input_size)
                maps.extend(stage_maps)
            else:
                x = stage(downsample(x))
            feats.append(x)
        feats[-1] = self.backbone.norm(x)
        return feats, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` class logits at the input size."""
        feats, _ = self._stages(x, slots=False)
        return F.interpolate(self.decoder(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)

    def forward_slots(self, x: torch.Tensor) -> SlotOutput:
        """The backbone's slot maps and features, the decoder's logits (at its own stride) in
        ``segmentation`` and image-level foreground logits derived from them in ``logits``."""
        feats, maps = self._stages(x, slots=True)
        seg = self.decoder(feats)
        return SlotOutput(logits=image_logits(seg), features=feats[-1], maps=maps, segmentation=seg)


def image_logits(segmentation: torch.Tensor) -> torch.Tensor:
    """``(B, C - 1)``: the log-odds of each foreground class's most confident pixel."""
    peak = segmentation.float().softmax(1)[:, 1:].flatten(2).amax(-1).clamp(_PROB_EPS, 1 - _PROB_EPS)
    return torch.logit(peak)


def is_segmenter_meta(meta: Any) -> bool:
    """Whether a checkpoint's metadata (a :class:`~.meta.CheckpointMeta`) describes a segmenter."""
    return getattr(meta, "is_segmentation", False)


def segmenter_from_checkpoint(path: str | os.PathLike[str], meta: Any,
                              state_dict: Mapping[str, torch.Tensor]) -> GLNetSegmenter:
    """The segmenter a checkpoint describes (``meta``: its :class:`~.meta.CheckpointMeta`), its weights loaded."""
    if not meta.model or meta.classes is None:
        raise ValueError(f"{path}: a segmentation checkpoint must record its model and classes")
    decoder = DecoderConfig.from_dict(meta.extra.get(DECODER_META_KEY))
    with torch.device("meta"):
        backbone = timm.create_model(meta.model, num_classes=0)
        model = GLNetSegmenter(backbone, len(meta.classes), decoder)
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not fit a {meta.model} {decoder.kind} segmenter "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.pretrained_cfg = dict(getattr(backbone, "pretrained_cfg", None) or {})
    return model.eval()
