"""GLNet (GLMix) backbones: convolutions on a pixel grid mixed with attention over semantic slots.

Zhu et al., "Revisiting the Integration of Convolution and Attention for Vision Backbone",
NeurIPS 2024. Module names, parameter names and shapes follow the authors' implementation, so
official checkpoints load with ``strict=True`` and no renaming.

Differences from the authors' code, none of which changes the numbers:

* Inside blocks, tensors are kept channels-last (``B, H, W, C``): LayerNorm runs on the
  contiguous last dimension, 1x1 convolutions are plain matrix products and depth-wise
  convolutions run on channels-last memory. That is what makes GLNet faster than Swin on CPU.
* Slot attention and the attention stages use ``scaled_dot_product_attention``.
* The cosine assignment logits divide the (slots x pixels) product by the pixel norms instead
  of building a normalised copy of the feature map.
* Eval-mode BatchNorm on channels-last maps is one fused multiply-add (:class:`BatchNorm2d`).
* Inference (eval mode, autograd off, no autocast) takes in-place kernels: residual sums and
  GELU are written into buffers the block already owns, and the pointwise MLP runs over bands
  of rows whose hidden activations stay in cache (:func:`_mlp_residual_`). Training, autograd
  in eval mode (saliency methods) and autocast take the plain out-of-place path; both paths
  give the same numbers up to float rounding (``tests/test_backbone_api.py``).
* :meth:`GLNet.forward_slots` returns every GLMix block's assignment logits by design; the
  plain forward never materialises anything it does not need.

Where the time goes on CPU (``glnet_stl``, 224x224, batch 1, 2 threads) and what each change
bought is recorded in ``eval/RESULTS.md`` ("Backbone speed").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    register_notrace_function,
    register_notrace_module,
    resolve_pretrained_cfg,
)

from ..assets import DEFAULT_CHECKPOINT_NAME
from .slots import SlotMap, SlotOutput

__all__ = ["GLNet", "GLMixBlock", "MHSABlock", "MHSANCHWBlock", "GLNET_MEAN", "GLNET_STD"]

GLNET_MEAN = (0.485, 0.456, 0.406)
GLNET_STD = (0.229, 0.224, 0.225)
MIXING_MODES = ("glmix", "mha", "mha_nchw", "glmix.mha_nchw")
LN_EPS = 1e-6  # eps of timm's LayerNorm2d and of the authors' nn.LayerNorm blocks


# --------------------------------------------------------------------------------------------
# small pieces
# --------------------------------------------------------------------------------------------
def _pointwise(x_nhwc: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution applied to a channels-last tensor as a matrix product."""
    return F.linear(x_nhwc, conv.weight.flatten(1), conv.bias)


def _depthwise(x_nhwc: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A depth-wise convolution on a channels-last tensor (run on channels-last memory)."""
    return conv(x_nhwc.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _as_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _as_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _fast_path(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` may use its in-place, row-banded inference kernels on ``x``.

    Only when no autograd graph is being recorded (in-place updates would break backward),
    in eval mode (drop-path needs the branch output on its own) and without autocast (autocast
    picks a dtype per op; an in-place update would pin the result to its destination's dtype).
    The fast kernels compute the same numbers up to float rounding.
    """
    return not (torch.is_grad_enabled() or module.training or _autocast_enabled(x.device.type))


# _FX_NOTE: torch.fx traces GLNet (timm's FX feature extraction, torchvision's
# create_feature_extractor) with the blocks and the fused BatchNorm as leaf modules: their fast
# inference kernels branch on autograd/eval/autocast state and loop over row bands, which a
# symbolic trace cannot follow, and a leaf runs the very code of the eager model, so a traced
# model gives bit-identical outputs. Nodes exist for every block output (``stages.i.blocks.j``).
@register_notrace_function  # FX wraps only public names: no leading underscore
def channels_last_batch(x: torch.Tensor) -> torch.Tensor:
    """Check the input is a (B, C, H, W) batch and lay it out channels-last."""
    if x.ndim != 4:
        raise ValueError(f"GLNet expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    return x.contiguous(memory_format=torch.channels_last)


def _gamma(ls: nn.Module) -> torch.Tensor | None:
    return ls.gamma.reshape(-1) if isinstance(ls, LayerScale) else None


# A band of rows of the MLP's hidden activations should stay in cache (L2/L3) between the
# first matrix product, the GELU and the second product: about 3 MB of float32.
_MLP_BAND_ELEMS = 3 << 18
_MLP_MIN_BAND_ROWS = 1024


def _add_matmul_(out2d: torch.Tensor, h2d: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 gamma: torch.Tensor | None) -> None:
    """``out2d += gamma * (h2d @ weight.T + bias)`` in place."""
    if gamma is None:
        out2d.addmm_(h2d, weight.t())
        if bias is not None:
            out2d.add_(bias)
    elif bias is not None:
        out2d.addcmul_(torch.addmm(bias, h2d, weight.t()), gamma)
    else:
        out2d.addcmul_(h2d @ weight.t(), gamma)


def _mlp_residual_(out: torch.Tensor, norm: nn.LayerNorm, fc1: nn.Module, dw: nn.Module | None,
                   fc2: nn.Module, gamma: torch.Tensor | None) -> torch.Tensor:
    """Inference kernel of the pre-norm MLP residual: ``out += gamma * fc2(gelu(fc1(norm(out))))``.

    ``out`` is a contiguous channels-last tensor owned by the caller and updated in place.
    ``fc1``/``fc2`` are 1x1 convolutions or linear layers. Without the depth-wise conv the MLP
    is pointwise, so it runs over bands of rows whose hidden activations stay in cache; that
    and the in-place GELU and residual make it about 1.7x faster than the plain sequence at
    high resolution (the hidden tensor is 4x the size of the feature map).
    """
    c = out.shape[-1]
    w1 = fc1.weight.reshape(fc1.weight.shape[0], c)
    w2 = fc2.weight.reshape(c, -1)
    hidden = w1.shape[0]
    if dw is not None:  # the depth-wise conv needs the whole grid
        h = F.linear(F.layer_norm(out, (c,), norm.weight, norm.bias, norm.eps), w1, fc1.bias)
        h.add_(_depthwise(h, dw))
        torch.ops.aten.gelu_(h)
        _add_matmul_(out.view(-1, c), h.view(-1, hidden), w2, fc2.bias, gamma)
        return out
    flat = out.view(-1, c)
    rows = flat.shape[0]
    band = max(_MLP_MIN_BAND_ROWS, _MLP_BAND_ELEMS // hidden)
    num_bands = -(-rows // band)
    band = -(-rows // num_bands)
    for start in range(0, rows, band):
        o = flat[start:start + band]
        h = torch.addmm(fc1.bias, F.layer_norm(o, (c,), norm.weight, norm.bias, norm.eps), w1.t())
        torch.ops.aten.gelu_(h)
        _add_matmul_(o, h, w2, fc2.bias, gamma)
    return out


@register_notrace_module  # its fast path is Python control flow on the input; FX keeps it a leaf
class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose eval-mode inference on channels-last input is one fused pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training or x.ndim != 4 or not self.track_running_stats or self.running_mean is None
                or not x.is_contiguous(memory_format=torch.channels_last) or not _fast_path(self, x)):
            return super().forward(x)
        scale = torch.rsqrt(self.running_var + self.eps)
        shift = -self.running_mean * scale
        if self.affine:
            scale = scale * self.weight
            shift = shift * self.weight + self.bias
        return _as_nchw(torch.addcmul(shift, _as_nhwc(x), scale))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (timm's ``LayerNorm2d``, eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = LN_EPS) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _as_nchw(F.layer_norm(_as_nhwc(x), self.normalized_shape, self.weight, self.bias, self.eps))


class LayerScale(nn.Module):
    """Per-channel scaling; ``gamma`` is ``(C,)`` or ``(1, C, 1, 1)`` as in the official weights."""

    def __init__(self, dim: int, init_value: float, nchw_param: bool) -> None:
        super().__init__()
        shape = (1, dim, 1, 1) if nchw_param else (dim,)
        self.gamma = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x_last: torch.Tensor) -> torch.Tensor:
        """Scale a channels-last tensor."""
        return x_last * self.gamma.reshape(-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, L, C) -> (B, L, C)."""
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


def _identity_or(module: nn.Module | None) -> nn.Module:
    return module if module is not None else nn.Identity()


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


def _conv_mlp(dim: int, mlp_ratio: float, mlp_dw: bool) -> nn.Sequential:
    """The MLP with the official indices: ``0`` 1x1, ``1`` residual dw 3x3 (or Identity), ``2`` GELU, ``3`` 1x1."""
    hidden = int(mlp_ratio * dim)
    return nn.Sequential(
        nn.Conv2d(dim, hidden, 1),
        nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden) if mlp_dw else nn.Identity(),
        nn.GELU(),
        nn.Conv2d(hidden, dim, 1),
    )


def _conv_or_none(m: nn.Module) -> nn.Conv2d | None:
    return m if isinstance(m, nn.Conv2d) else None


def _run_conv_mlp(mlp: nn.Sequential, x_nhwc: torch.Tensor) -> torch.Tensor:
    x = _pointwise(x_nhwc, mlp[0])
    if isinstance(mlp[1], nn.Conv2d):
        x = x + _depthwise(x, mlp[1])
    return _pointwise(mlp[2](x), mlp[3])


def _attention_residual_(attn: torch.Tensor, shortcut: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
    """``shortcut + gamma * attn`` written into ``attn`` (a fresh, contiguous output)."""
    if gamma is not None:
        attn.mul_(gamma)
    return attn.add_(shortcut)


# --------------------------------------------------------------------------------------------
# blocks: every block maps an NCHW tensor to an NCHW tensor
# --------------------------------------------------------------------------------------------
@register_notrace_module  # see _FX_NOTE
class GLMixBlock(nn.Module):
    """Local convolutions on the grid + global attention among soft-clustered slots."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_slots: int = 64,
        slot_init: str = "ada_avgpool",
        local_dw_ks: int = 5,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        cpe_ks: int = 0,
        mlp_dw: bool = False,
        layerscale: float = -1.0,
    ) -> None:
        super().__init__()
        if slot_init not in ("param", "ada_avgpool"):
            raise ValueError(f"slot_init must be 'param' or 'ada_avgpool', got {slot_init!r}")
        self.dim = dim
        self.num_slots = num_slots
        self.slot_init = slot_init
        self.slot_scale = nn.Parameter(torch.tensor(dim**-0.5))
        self.pos_conv = nn.Conv2d(dim, dim, cpe_ks, padding=cpe_ks // 2, groups=dim) if cpe_ks > 0 else None
        if slot_init == "param":
            self.init_slots = nn.Parameter(torch.empty(1, num_slots, dim))
            nn.init.normal_(self.init_slots, std=0.02)
        else:
            self.pool_size = math.isqrt(num_slots)
            if self.pool_size**2 != num_slots:
                raise ValueError(f"slot_init='ada_avgpool' needs a square number of slots, got {num_slots}")
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.relation_mha = SelfAttention(dim, num_heads)
        self.feature_conv = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.Conv2d(dim, dim, local_dw_ks, padding=local_dw_ks // 2, groups=dim),
            nn.Conv2d(dim, dim, 1),
        ) if local_dw_ks > 0 else None
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = _conv_mlp(dim, mlp_ratio, mlp_dw)
        self.drop_path = _drop_path(drop_path)
        self.ls1 = LayerScale(dim, layerscale, nchw_param=True) if layerscale > 0 else nn.Identity()
        self.ls2 = LayerScale(dim, layerscale, nchw_param=True) if layerscale > 0 else nn.Identity()

    def _initial_slots(self, x: torch.Tensor) -> torch.Tensor:
        if self.slot_init == "param":
            return self.init_slots.expand(x.shape[0], -1, -1)
        pooled = F.adaptive_avg_pool2d(x, self.pool_size)  # (B, C, p, p)
        return pooled.flatten(2).transpose(1, 2)

    def _assign_logits(self, init_slots: torch.Tensor, y_flat: torch.Tensor, fast: bool) -> torch.Tensor:
        """``slot_scale * cos(slot_s, pixel_p)`` as (B, S, h*w).

        The authors normalise every pixel feature before the product; dividing the (S, h*w)
        product by the pixel norms afterwards is the same up to rounding and never builds a
        normalised copy of the feature map.
        """
        slots = F.normalize(init_slots, dim=-1) * self.slot_scale
        pixel_norms = torch.linalg.vector_norm(y_flat, dim=-1).clamp_min(1e-12).unsqueeze(1)  # F.normalize's eps
        logits = slots @ y_flat.transpose(1, 2)
        return logits.div_(pixel_norms) if fast else logits / pixel_norms

    def _mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the block output (NCHW), the assignment logits (B, S, h*w) and the slots."""
        fast = _fast_path(self, x)
        init_slots = self._initial_slots(x)  # from the block input, before the position conv
        if self.pos_conv is not None:
            x = x + self.pos_conv(x)
        b, c, h, w = x.shape
        shortcut = _as_nhwc(x)
        y = F.layer_norm(shortcut, (c,), self.norm1.weight, self.norm1.bias, self.norm1.eps)
        y_flat = y.reshape(b, h * w, c)

        # soft clustering: grouping (softmax over pixels) pools pixels into slots, the slots
        # attend to each other, dispatch (softmax over slots) moves them back to the pixels
        logits = self._assign_logits(init_slots, y_flat, fast)
        slots = self.relation_mha(logits.softmax(dim=-1) @ y_flat)  # (B, S, C)
        dispatch = logits.softmax(dim=1).transpose(1, 2)  # (B, h*w, S)
        local = None
        if self.feature_conv is not None:
            local = _pointwise(y, self.feature_conv[0])
            local = _pointwise(_depthwise(local, self.feature_conv[1]), self.feature_conv[2])

        if fast:
            if local is None:
                mixed = torch.bmm(dispatch, slots)
            else:
                mixed = local.reshape(b, h * w, c).baddbmm_(dispatch, slots)
            gamma = _gamma(self.ls1)
            if gamma is not None:
                mixed.mul_(gamma)
            out = mixed.add_(shortcut.reshape(b, h * w, c)).view(b, h, w, c)
            _mlp_residual_(out, self.norm2, self.mlp[0], _conv_or_none(self.mlp[1]), self.mlp[3],
                           _gamma(self.ls2))
            return _as_nchw(out), logits, slots

        mixed = (dispatch @ slots).reshape(b, h, w, c)
        if local is not None:
            mixed = mixed + local
        out = shortcut + self.drop_path(self.ls1(mixed))
        z = F.layer_norm(out, (c,), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        out = out + self.drop_path(self.ls2(_run_conv_mlp(self.mlp, z)))
        return _as_nchw(out), logits, slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x)[0]

    def forward_with_slots(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like ``forward`` and also returns ``(assign_logits (B, S, h*w), slots (B, S, C))``."""
        return self._mix(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_slots={self.num_slots}, slot_init={self.slot_init}"


@register_notrace_module  # see _FX_NOTE
class MHSABlock(nn.Module):
    """Pre-norm transformer block on tokens (the official ``mha`` stages), (B, L, C) in and out."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layerscale: float = -1.0) -> None:
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mha_op = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = _drop_path(drop_path)
        self.ls1 = LayerScale(dim, layerscale, nchw_param=False) if layerscale > 0 else nn.Identity()
        self.ls2 = LayerScale(dim, layerscale, nchw_param=False) if layerscale > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_path(self, x):
            out = _attention_residual_(self.mha_op(self.norm1(x)), x, _gamma(self.ls1))
            return _mlp_residual_(out, self.norm2, self.mlp[0], None, self.mlp[2], _gamma(self.ls2))
        x = x + self.drop_path(self.ls1(self.mha_op(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


@register_notrace_module  # see _FX_NOTE
class MHSANCHWBlock(nn.Module):
    """Conv position embedding + attention over all pixels + convolutional MLP (``mha_nchw``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 cpe_ks: int = 0, mlp_dw: bool = False, layerscale: float = -1.0) -> None:
        super().__init__()
        self.pos_conv = nn.Conv2d(dim, dim, cpe_ks, padding=cpe_ks // 2, groups=dim) if cpe_ks > 0 else None
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mha_op = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = _conv_mlp(dim, mlp_ratio, mlp_dw)
        self.drop_path = _drop_path(drop_path)
        self.ls1 = LayerScale(dim, layerscale, nchw_param=False) if layerscale > 0 else nn.Identity()
        self.ls2 = LayerScale(dim, layerscale, nchw_param=True) if layerscale > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_conv is not None:
            x = x + self.pos_conv(x)
        b, c, h, w = x.shape
        t = _as_nhwc(x).reshape(b, h * w, c)
        if _fast_path(self, x):
            out = _attention_residual_(self.mha_op(self.norm1(t)), t, _gamma(self.ls1)).view(b, h, w, c)
            out = _mlp_residual_(out, self.norm2, self.mlp[0], _conv_or_none(self.mlp[1]), self.mlp[3],
                                 _gamma(self.ls2))
            return _as_nchw(out)
        t = t + self.drop_path(self.ls1(self.mha_op(self.norm1(t))))
        t = t.reshape(b, h, w, c)
        z = F.layer_norm(t, (c,), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        t = t + self.drop_path(self.ls2(_run_conv_mlp(self.mlp, z)))
        return _as_nchw(t)


class GLNetStage(nn.Module):
    """The blocks of one resolution stage (``stages.<i>.blocks.<j>``)."""

    def __init__(self, blocks: Sequence[nn.Module], stage_index: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.stage_index = stage_index
        self.grad_checkpointing = False

    def _run(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(blk, MHSABlock):
            b, c, h, w = x.shape
            t = _as_nhwc(x).reshape(b, h * w, c)
            return _as_nchw(blk(t).reshape(b, h, w, c))
        return blk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting() and self.training:
                x = torch.utils.checkpoint.checkpoint(self._run, blk, x, use_reentrant=False)
            else:
                x = self._run(blk, x)
        return x

    def forward_slots(self, x: torch.Tensor, input_size: tuple[int, int]) -> tuple[torch.Tensor, list[SlotMap]]:
        maps: list[SlotMap] = []
        for j, blk in enumerate(self.blocks):
            if isinstance(blk, GLMixBlock):
                grid = (x.shape[2], x.shape[3])
                x, logits, slots = blk.forward_with_slots(x)
                maps.append(SlotMap(self.stage_index, j, grid, logits, slots, input_size))
            else:
                x = self._run(blk, x)
        return x, maps


# --------------------------------------------------------------------------------------------
# down-sampling layers (``downsample_layers.<i>``)
# --------------------------------------------------------------------------------------------
def _non_overlapping_downsamples(dims: Sequence[int], in_chans: int, layout: str,
                                 norm_layer: Callable[[int], nn.Module]) -> nn.ModuleList:
    layers = [nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stride=4), norm_layer(dims[0]))]
    for i in range(3):
        conv = nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)
        if layout == "norm.proj":
            layers.append(nn.Sequential(norm_layer(dims[i]), conv))
        else:
            layers.append(nn.Sequential(conv, norm_layer(dims[i + 1])))
    return nn.ModuleList(layers)


def _overlapping_downsamples(dims: Sequence[int], in_chans: int, layout: str,
                             norm_layer: Callable[[int], nn.Module]) -> nn.ModuleList:
    half = dims[0] // 2
    stem = nn.Sequential(
        nn.Identity(),  # the authors' optional input LayerNorm ("dual patch norm"), unused
        nn.Conv2d(in_chans, half, 3, stride=2, padding=1),
        norm_layer(half),
        nn.GELU(),
        nn.Conv2d(half, dims[0], 3, stride=2, padding=1),
        norm_layer(dims[0]),
    )
    layers = [stem]
    for i in range(3):
        conv = nn.Conv2d(dims[i], dims[i + 1], 3, stride=2, padding=1)
        if layout == "norm.proj":
            layers.append(nn.Sequential(norm_layer(dims[i]), conv))
        else:
            layers.append(nn.Sequential(conv, norm_layer(dims[i + 1])))
    return nn.ModuleList(layers)


NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": BatchNorm2d,
    "layernorm": LayerNorm2d,
}


def _resolve_norm(norm_layer: str | Callable[[int], nn.Module] | None) -> Callable[[int], nn.Module]:
    if norm_layer is None:
        return LayerNorm2d
    if isinstance(norm_layer, str):
        key = norm_layer.lower().replace("_", "").replace("2d", "")
        if key not in NORM_LAYERS:
            raise ValueError(f"norm_layer must be one of {sorted(NORM_LAYERS)} or a callable, got {norm_layer!r}")
        return NORM_LAYERS[key]
    return norm_layer


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------
class GLNet(nn.Module):
    """The GLNet family. Keyword arguments are those of the authors' ``GLNet`` constructor.

    ``norm_layer`` is the norm of the down-sampling layers and of the final norm: a module
    class, or ``"batchnorm"`` (all official variants) / ``"layernorm"``.
    ``token_labeling=True`` adds the dense ``tklb_aux_head`` of the ``*_tklb`` models; their
    eval logits are ``cls_logits + 0.5 * max over locations of token_logits``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depth: Sequence[int] = (2, 2, 6, 2),
        embed_dim: Sequence[int] = (96, 192, 384, 768),
        head_dim: int = 32,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        norm_layer: str | Callable[[int], nn.Module] | None = "batchnorm",
        pre_head_norm_layer: str | Callable[[int], nn.Module] | None = None,
        mixing_modes: Sequence[str] = ("glmix", "glmix", "glmix", "mha"),
        local_dw_ks: int | Sequence[int] = 5,
        slot_init: str = "param",
        num_slots: int = 64,
        cpe_ks: int = 0,
        downsample_style: str = "non_ovlp",
        transition_layout: str = "proj.norm",
        mlp_dw: bool = False,
        layerscale: float = -1.0,
        token_labeling: bool = False,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        ignored = set(unused) - {"qk_scale", "use_checkpoint_stages", "dual_patch_norm", "pretrained_cfg",
                                 "pretrained_cfg_overlay", "seed"}
        if ignored:
            raise TypeError(f"GLNet got unexpected keyword arguments: {sorted(ignored)}")
        if unused.get("dual_patch_norm"):
            raise NotImplementedError("dual_patch_norm=True is not used by any official GLNet variant")
        if len(depth) != 4 or len(embed_dim) != 4 or len(mixing_modes) != 4 or len(mlp_ratios) != 4:
            raise ValueError("depth, embed_dim, mlp_ratios and mixing_modes need one entry per stage (4)")
        for mode in mixing_modes:
            if mode not in MIXING_MODES:
                raise ValueError(f"unknown mixing mode {mode!r}; expected one of {MIXING_MODES}")
        if downsample_style not in ("non_ovlp", "ovlp"):
            raise ValueError(f"downsample_style must be 'non_ovlp' or 'ovlp', got {downsample_style!r}")
        if transition_layout not in ("norm.proj", "proj.norm"):
            raise ValueError(f"transition_layout must be 'norm.proj' or 'proj.norm', got {transition_layout!r}")

        norm = _resolve_norm(norm_layer)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dims = list(embed_dim)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.token_labeling = token_labeling
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        make_downsamples = _overlapping_downsamples if downsample_style == "ovlp" else _non_overlapping_downsamples
        self.downsample_layers = make_downsamples(embed_dim, in_chans, transition_layout, norm)

        total = sum(depth)  # stochastic depth grows linearly with block index, as torch.linspace(0, rate, total)
        dp_rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        dw_ks = [local_dw_ks] * 4 if isinstance(local_dw_ks, int) else list(local_dw_ks)
        stages = []
        cursor = 0
        reduction = 4
        self.feature_info = []
        for i in range(4):
            dim, heads = embed_dim[i], embed_dim[i] // head_dim
            blocks = []
            for j in range(depth[i]):
                dp = dp_rates[cursor + j]
                mode = mixing_modes[i]
                if mode == "glmix.mha_nchw":
                    mode = "glmix" if j % 2 == 0 else "mha_nchw"
                if mode == "glmix":
                    blocks.append(GLMixBlock(dim, heads, num_slots=num_slots, slot_init=slot_init,
                                             local_dw_ks=dw_ks[i], mlp_ratio=mlp_ratios[i], drop_path=dp,
                                             cpe_ks=cpe_ks, mlp_dw=mlp_dw, layerscale=layerscale))
                elif mode == "mha":
                    blocks.append(MHSABlock(dim, heads, mlp_ratio=mlp_ratios[i], drop_path=dp,
                                            layerscale=layerscale))
                else:
                    blocks.append(MHSANCHWBlock(dim, heads, mlp_ratio=mlp_ratios[i], drop_path=dp,
                                                cpe_ks=cpe_ks, mlp_dw=mlp_dw, layerscale=layerscale))
            cursor += depth[i]
            stages.append(GLNetStage(blocks, i))
            if i > 0:
                reduction *= 2
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.ModuleList(stages)

        self.norm = _resolve_norm(pre_head_norm_layer)(embed_dim[-1]) if pre_head_norm_layer else norm(embed_dim[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        if token_labeling:
            self.tklb_aux_head = nn.Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        if device is not None or dtype is not None:  # timm's factory arguments
            self.to(device=device, dtype=dtype)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- timm conventions
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(("slot_scale", "init_slots", "gamma"))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^downsample_layers\.0", blocks=r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.blocks\.(\d+)", None), (r"^downsample_layers\.(\d+)", (0,)), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (and the token-labeling head) with fresh ``num_classes`` heads."""
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"GLNet supports global_pool 'avg' or '' (none), got {global_pool!r}")
            self.global_pool = global_pool
        like = next(self.parameters())  # new heads take the model's device and dtype
        factory = dict(device=like.device, dtype=like.dtype)
        self.head = nn.Linear(self.num_features, num_classes, **factory) if num_classes > 0 else nn.Identity()
        if self.token_labeling:
            self.tklb_aux_head = (nn.Linear(self.num_features, num_classes, **factory)
                                  if num_classes > 0 else nn.Identity())
        for m in (self.head, getattr(self, "tklb_aux_head", None)):
            if isinstance(m, nn.Linear):
                if not like.is_meta:
                    self._init_weights(m)
                m.train(self.training)

    def load_pretrained(self, checkpoint_path: str, prefix: str = "") -> None:
        """timm's ``custom_load`` hook (``pretrained=True``): read the file safely and load it,
        adapting the stem to ``in_chans`` and re-initialising a classifier of another size."""
        from .checkpoints import load_pretrained_weights

        cfg = getattr(self, "pretrained_cfg", None) or {}
        self.checkpoint_report = load_pretrained_weights(self, checkpoint_path, variant=cfg.get("architecture"),
                                                         first_conv=cfg.get("first_conv"))

    @property
    def num_glmix_blocks(self) -> int:
        return sum(isinstance(b, GLMixBlock) for s in self.stages for b in s.blocks)

    # ---------------------------------------------------------------- forward passes
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = channels_last_batch(x)
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x)

    def _token_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.tklb_aux_head(features.flatten(2).transpose(1, 2))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the final features and apply the classifier (token-labeling models add the
        best dense-head score per class, as the authors do at inference)."""
        pooled = x.mean((2, 3)) if self.global_pool == "avg" else x
        pooled = self.head_drop(pooled)
        if pre_logits:
            return pooled
        logits = self.head(pooled)
        if self.token_labeling and self.num_classes > 0 and self.global_pool == "avg":
            logits = logits + 0.5 * self._token_logits(x).amax(dim=1)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_slots(self, x: torch.Tensor) -> SlotOutput:
        """Forward pass that also returns every GLMix block's slot assignment (see :class:`SlotOutput`)."""
        input_size = (x.shape[-2], x.shape[-1])
        x = channels_last_batch(x)
        maps: list[SlotMap] = []
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x, stage_maps = stage.forward_slots(downsample(x), input_size)
            maps.extend(stage_maps)
        features = self.norm(x)
        pooled = features.mean((2, 3))
        if self.num_classes == 0:
            return SlotOutput(logits=pooled, features=features, maps=maps)
        cls_logits = self.head(pooled)
        if not self.token_labeling:
            return SlotOutput(logits=cls_logits, features=features, maps=maps)
        token_logits = self._token_logits(features)
        return SlotOutput(logits=cls_logits + 0.5 * token_logits.amax(dim=1), features=features, maps=maps,
                          cls_logits=cls_logits, token_logits=token_logits)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's dense-backbone API: the output of each stage in ``indices`` (NCHW).

        ``norm`` is accepted for API compatibility; GLNet has no per-stage norms. The first
        return value is the final (normed) features, or with ``stop_early`` the un-normed output
        of the last stage taken when that is not the last stage.
        """
        if output_fmt != "NCHW":
            raise ValueError("GLNet's intermediates are NCHW only")
        take, max_index = _take_indices(len(self.stages), indices)
        x = channels_last_batch(x)
        intermediates = []
        last = max_index if (stop_early or intermediates_only) else len(self.stages) - 1
        for i in range(last + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in take:
                intermediates.append(x.contiguous())
        if intermediates_only:
            return intermediates
        if last < len(self.stages) - 1:  # stopped early: the final norm belongs to the last stage only
            return x, intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take, max_index = _take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        self.downsample_layers = self.downsample_layers[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


def _take_indices(num_stages: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's convention: an int ``n`` means the last ``n`` stages; a sequence lists stage indices."""
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f"indices={indices} must be in 1..{num_stages}")
        take = list(range(num_stages - indices, num_stages))
    else:
        take = [num_stages + i if i < 0 else i for i in indices]
        if any(not 0 <= i < num_stages for i in take):
            raise ValueError(f"stage indices {list(indices)} out of range for {num_stages} stages")
    return take, max(take)


# --------------------------------------------------------------------------------------------
# registered variants
# --------------------------------------------------------------------------------------------
_STL = dict(depth=(2, 2, 6, 2), embed_dim=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 4), head_dim=32,
            norm_layer="batchnorm", mixing_modes=("glmix", "glmix", "glmix", "mha"), local_dw_ks=5,
            slot_init="ada_avgpool", num_slots=64, transition_layout="norm.proj", downsample_style="non_ovlp")
_HYBRID = dict(depth=(4, 4, 18, 4), mlp_ratios=(3, 3, 3, 3), head_dim=32, norm_layer="batchnorm",
               mixing_modes=("glmix", "glmix", "glmix.mha_nchw", "mha_nchw"), local_dw_ks=5,
               slot_init="ada_avgpool", num_slots=64, cpe_ks=3, downsample_style="ovlp",
               transition_layout="proj.norm", mlp_dw=True)

#: Architecture of every registered variant (official ones first). ``glnet_nano`` and
#: ``glnet_micro`` are ours: small hybrids for CPU training and demos. Parameter counts
#: (measured; checked by tests/test_backbone_api.py):
#:
#: ============ ============ ==================== ==============================
#: variant      backbone     + 1000-class head    as registered
#: ============ ============ ==================== ==============================
#: glnet_nano   1,716,100    1,973,100            1,717,385 (5-class ``scenes`` head)
#: glnet_micro  5,846,214    6,231,214            6,231,214
#: ============ ============ ==================== ==============================
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "glnet_stl": dict(_STL),
    "glnet_stl_paramslot": dict(_STL, slot_init="param"),
    "glnet_4g": dict(_HYBRID, embed_dim=(64, 128, 256, 512)),
    "glnet_9g": dict(_HYBRID, embed_dim=(96, 192, 384, 768)),
    "glnet_16g": dict(_HYBRID, embed_dim=(128, 256, 512, 1024), layerscale=1e-4),
    "glnet_4g_tklb": dict(_HYBRID, embed_dim=(64, 128, 256, 512), token_labeling=True),
    "glnet_9g_tklb": dict(_HYBRID, embed_dim=(96, 192, 384, 768), token_labeling=True),
    # ours (parameter counts in the table above)
    "glnet_nano": dict(_HYBRID, depth=(1, 1, 3, 1), embed_dim=(32, 64, 128, 256), num_slots=16),
    "glnet_micro": dict(_HYBRID, depth=(2, 2, 4, 2), embed_dim=(48, 96, 192, 384), num_slots=36),
}
OFFICIAL_VARIANTS = ("glnet_stl", "glnet_stl_paramslot", "glnet_4g", "glnet_9g", "glnet_16g",
                     "glnet_4g_tklb", "glnet_9g_tklb")


def _cfg(**kwargs: Any) -> dict[str, Any]:
    cfg = dict(url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.9,
               interpolation="bicubic", mean=GLNET_MEAN, std=GLNET_STD, first_conv="downsample_layers.0.0",
               classifier="head", license="mit", paper_ids="arXiv:2411.14429", custom_load=True)
    cfg.update(kwargs)
    return cfg


def _official(variant: str, **kwargs: Any) -> dict[str, Any]:
    """An official ImageNet-1k checkpoint: the authors publish it (``origin_url``) and the user puts
    it in ``$GLMIX_CHECKPOINT_DIR`` as ``<variant>.pth``; ``file`` is that name, so timm lists the
    variant as pretrained and never reaches for a download."""
    return _cfg(file=f"{variant}.pth", origin_url="https://github.com/rayleizhu/GLMix", **kwargs)


_HYBRID_STEM = "downsample_layers.0.1"
default_cfgs = generate_default_cfgs({
    "glnet_stl.in1k": _official("glnet_stl"),
    "glnet_stl_paramslot.in1k": _official("glnet_stl_paramslot"),
    "glnet_4g.in1k": _official("glnet_4g", first_conv=_HYBRID_STEM),
    "glnet_9g.in1k": _official("glnet_9g", first_conv=_HYBRID_STEM),
    "glnet_16g.in1k": _official("glnet_16g", first_conv=_HYBRID_STEM),
    "glnet_4g_tklb.in1k": _official("glnet_4g_tklb", first_conv=_HYBRID_STEM, crop_pct=1.0),
    "glnet_9g_tklb.in1k": _official("glnet_9g_tklb", first_conv=_HYBRID_STEM, crop_pct=1.0),
    # the bundled demo model (package data); 160 px in, stride 32: a 5x5 final grid
    "glnet_nano.scenes": _cfg(file=DEFAULT_CHECKPOINT_NAME, first_conv=_HYBRID_STEM, num_classes=5,
                              input_size=(3, 160, 160), pool_size=(5, 5), crop_pct=1.0),
    "glnet_micro.untrained": _cfg(first_conv=_HYBRID_STEM),
})


def _create(variant: str, pretrained: bool = False, pretrained_cfg: Any = None,
            pretrained_cfg_overlay: dict[str, Any] | None = None, **kwargs: Any) -> GLNet:
    """Build a variant with timm's builder; ``pretrained=True`` loads the weights *before* timm wraps
    the model (``features_only``), through :meth:`GLNet.load_pretrained` (no hub, no unpickling).

    Where the weights come from: ``pretrained_cfg_overlay=dict(file=PATH)`` if given (it must
    exist), else ``<variant>.safetensors`` / ``.pth`` in ``$GLMIX_CHECKPOINT_DIR``, else the
    package's bundled file for the demo model.
    """
    config = dict(MODEL_CONFIGS[variant])
    config.update(kwargs)
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay)
    if pretrained:
        from .checkpoints import locate_pretrained

        user_file = (pretrained_cfg_overlay or {}).get("file")
        if user_file is None and isinstance(pretrained_cfg, dict):
            user_file = pretrained_cfg.get("file")
        bundled = cfg.file if cfg.file == DEFAULT_CHECKPOINT_NAME else None
        path = locate_pretrained(variant, user_file=user_file, bundled=bundled)
        cfg = dataclasses.replace(cfg, file=str(path), custom_load=True)
    return build_model_with_cfg(
        GLNet, variant, pretrained=pretrained, pretrained_cfg=cfg,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        **config,
    )


@register_model
def glnet_stl(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_stl", pretrained, **kwargs)


@register_model
def glnet_stl_paramslot(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_stl_paramslot", pretrained, **kwargs)


@register_model
def glnet_4g(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_4g", pretrained, **kwargs)


@register_model
def glnet_9g(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_9g", pretrained, **kwargs)


@register_model
def glnet_16g(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_16g", pretrained, **kwargs)


@register_model
def glnet_4g_tklb(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_4g_tklb", pretrained, **kwargs)


@register_model
def glnet_9g_tklb(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_9g_tklb", pretrained, **kwargs)


@register_model
def glnet_nano(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_nano", pretrained, **kwargs)


@register_model
def glnet_micro(pretrained: bool = False, **kwargs: Any) -> GLNet:
    return _create("glnet_micro", pretrained, **kwargs)
