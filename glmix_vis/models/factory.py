"""``create_model``: a GLNet from a variant name and/or a checkpoint file, as timm builds models.

Which to use: :func:`create_model` gives the network alone (any head size, any timm keyword),
for training, fine-tuning, feature extraction or your own code; :func:`glmix_vis.load_model`
gives a model ready for this tool's inference (eval mode on a device, precision) with the
:class:`~glmix_vis.ModelInfo` that says what its classes are and how it wants its input.
"""

from __future__ import annotations

import os
from typing import Any

import timm
import torch
import torch.nn as nn

from .checkpoints import Checkpoint, head_size, load_pretrained_weights, read_checkpoint, resolve_checkpoint
from .glnet import MODEL_CONFIGS, GLNet
from .meta import CheckpointMeta
from .segmenter import DecoderConfig, GLNetSegmenter, segmenter_from_checkpoint
from .variants import checkpoint_variant

__all__ = ["create_model", "create_segmenter"]


def create_model(name: str | None = None, *, checkpoint: str | os.PathLike[str] | None = None,
                 num_classes: int | None = None, ema: bool | None = None, **kwargs: Any) -> nn.Module:
    """Create a registered GLNet variant, optionally with weights from ``checkpoint``: the network
    alone, as ``timm.create_model`` would (for training, fine-tuning, features; for slot maps,
    evidence and masks use :func:`glmix_vis.load_model`, which also names the classes).

    ``checkpoint`` is a file or a name looked up in the checkpoint directory (see
    :func:`resolve_checkpoint`); ``pretrained=True`` means ``checkpoint=name``. Without ``name``
    the variant comes from the checkpoint's metadata or, failing that, from its key/shape
    signature. ``num_classes`` defaults to the checkpoint's classifier size; a different value
    loads everything but the classifier(s) and re-initialises them. ``ema`` picks the EMA
    weights (``None``: the authors' advice per variant). Other keyword arguments go to
    ``timm.create_model``.

    A segmenter's checkpoint (``glmix-wsss train-seg``, metadata ``head="segmentation"``) gives the
    :class:`~glmix_vis.models.segmenter.GLNetSegmenter` it describes.

    The model is returned in eval mode. When weights were loaded, ``model.checkpoint_report``
    (a :class:`LoadReport`) says from where and what was reset, and ``model.pretrained_cfg``
    carries the checkpoint's class names, input size and normalisation when it has them.
    """
    if "num_classes" in kwargs:
        raise TypeError("pass num_classes as the keyword argument of create_model")
    if kwargs.pop("pretrained", False) and checkpoint is None:
        if name is None:
            raise ValueError("pretrained=True needs a model name")
        checkpoint = name
    if checkpoint is None:
        if name is None:
            raise ValueError("give a model name or a checkpoint")
        _check_name(name)
        extra = {} if num_classes is None else {"num_classes": num_classes}
        return timm.create_model(name, **extra, **kwargs).eval()

    path = resolve_checkpoint(checkpoint)
    ckpt = read_checkpoint(path)
    meta = CheckpointMeta.from_mapping(ckpt.meta)
    if meta.is_segmentation:  # a train-seg checkpoint: the segmenter it describes, as saved
        return _segmenter(path, ckpt, meta, name, num_classes)
    name = name or checkpoint_variant(ckpt)
    _check_name(name)
    _, state_dict = ckpt.select(ema, name)
    wanted = head_size(state_dict) if num_classes is None else num_classes

    # Built on the meta device, the model takes the file's mapped tensors as they are: no
    # random initialisation and no second copy of the weights. The weights go through the same
    # loader as timm.create_model(name, pretrained=True).
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=wanted, **kwargs)
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    report = load_pretrained_weights(model, ckpt, variant=name, first_conv=first_conv, ema=ema)
    _check_materialized(model, path)
    _annotate(model, ckpt, wanted)
    model.checkpoint_report = report
    return model.eval()


def create_segmenter(name: str | None, num_classes: int, decoder: DecoderConfig | None = None, *,
                     init: str | os.PathLike[str] | None = None, **kwargs: Any) -> GLNetSegmenter:
    """A segmenter (in training mode) whose backbone is variant ``name`` (``None``: the one ``init``
    holds), its weights from the classification checkpoint ``init`` (classifier left out) or random,
    and a freshly initialised decoder of ``num_classes`` outputs (background included)."""
    if init is not None:
        backbone = create_model(name, checkpoint=init, num_classes=0, **kwargs)
    else:
        if name is None:
            raise ValueError("give a backbone variant or a checkpoint to initialise it from")
        _check_name(name)
        backbone = timm.create_model(name, num_classes=0, **kwargs)
    if not isinstance(backbone, GLNet):
        raise ValueError(f"{init} is a segmenter; initialise a segmenter's backbone from a classification checkpoint")
    return GLNetSegmenter(backbone, num_classes, decoder).train()


def _segmenter(path: os.PathLike[str], ckpt: Checkpoint, meta: CheckpointMeta, name: str | None,
               num_classes: int | None) -> nn.Module:
    if name is not None and name != meta.model:
        raise ValueError(f"{path} is a {meta.model} segmenter, not {name}")
    classes = len(meta.classes or [])
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"{path} is a segmenter of {classes} classes; it cannot be loaded with {num_classes}")
    model = segmenter_from_checkpoint(path, meta, ckpt.select()[1])
    _check_materialized(model, path)
    _annotate(model, ckpt, classes)
    return model.eval()


def _check_name(name: str) -> None:
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_CONFIGS)}")


def _check_materialized(model: nn.Module, path: os.PathLike[str]) -> None:
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{path}: no weights for {', '.join(left[:10])}")


def _annotate(model: nn.Module, ckpt: Checkpoint, num_classes: int) -> None:
    """Record the checkpoint's data settings in timm's ``pretrained_cfg`` (used by timm's transforms)."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(num_classes=num_classes, file=str(ckpt.path))
    meta = CheckpointMeta.from_mapping(ckpt.meta)
    if meta.input_size is not None:
        cfg["input_size"] = (3, *meta.input_size)
    if meta.mean is not None:
        cfg["mean"] = meta.mean
    if meta.std is not None:
        cfg["std"] = meta.std
    classes = meta.head_class_names(num_classes)
    if classes is not None:
        cfg["label_names"] = tuple(classes)
    else:
        cfg.pop("label_names", None)
    model.pretrained_cfg = cfg
    model.default_cfg = cfg
