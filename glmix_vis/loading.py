"""Loading a model for inference: the model in eval mode and what it predicts (:class:`ModelInfo`).

What the classes are is one value, :class:`~glmix_vis.data.labels.LabelSpace`, built by its one
rule from the checkpoint's metadata and head size; :class:`ModelInfo` carries it
(:attr:`ModelInfo.labels`) with the input settings and reads its names from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .data.labels import LabelSpace
from .devices import DEFAULT_PRECISION, precision_name, resolve_device, resolve_precision
from .models.glnet import GLNET_MEAN, GLNET_STD
from .models.meta import CheckpointMeta

__all__ = ["HeadPrediction", "ModelInfo", "checkpoint_line", "load_model"]


@dataclass(frozen=True)
class HeadPrediction:
    """One classifier output as a person reads it: its own name (an ImageNet class for an
    official head), its probability, and the segmentation class it counts toward (``None``:
    an ImageNet class outside the VOC map)."""

    name: str
    score: float
    feeds: str | None

    def __str__(self) -> str:
        if self.feeds == self.name:
            return f"{self.name} {self.score:.2f}"
        return f"{self.name} {self.score:.2f} (-> {self.feeds or 'no VOC class'})"


@dataclass
class ModelInfo:
    """What a model predicts and how it wants its input.

    ``labels`` says what the classes are (:class:`~glmix_vis.data.labels.LabelSpace`);
    ``class_names`` (background first), ``class_map``, ``head_names`` and ``multilabel`` read it.
    The model's head scores the foreground classes directly (``class_map`` None, our trained
    checkpoints) or through ``class_map`` groups of head outputs (an ImageNet head read as VOC
    classes); ``head_names`` then names the head's own outputs (the ImageNet classes).
    """

    name: str
    labels: LabelSpace
    mean: tuple[float, ...] = GLNET_MEAN
    std: tuple[float, ...] = GLNET_STD
    input_size: int = 224
    checkpoint: str | None = None
    meta: CheckpointMeta = field(default_factory=CheckpointMeta)
    #: The dtype its forward passes run in (``--precision`` resolved for the device; the weights stay float32).
    precision: torch.dtype = torch.float32

    @property
    def class_names(self) -> list[str]:
        """The segmentation classes, background first."""
        return list(self.labels.class_names)

    @property
    def foreground_names(self) -> list[str]:
        return list(self.labels.foreground_names)

    @property
    def class_map(self) -> list[list[int]] | None:
        """Groups of head outputs, one per foreground class (None: one output each)."""
        groups = self.labels.class_map
        return None if groups is None else [list(g) for g in groups]

    @property
    def head_names(self) -> list[str] | None:
        """The head's own output names when a ``class_map`` groups them (an ImageNet head), else None."""
        names = self.labels.head_names
        return None if names is None else list(names)

    @property
    def multilabel(self) -> bool:
        """Sigmoid per class (True) or a softmax over the head (False)."""
        return self.labels.multilabel

    @property
    def named(self) -> bool:
        """Whether the classes have real names (not ``class_0`` ... made up for an unnamed head)."""
        return self.labels.named

    @property
    def precision_name(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``: :attr:`precision` as the outputs record it."""
        return precision_name(self.precision)

    @property
    def is_demo(self) -> bool:
        """Whether this is the bundled demo model (trained on generated shapes, not photos)."""
        from .assets import default_checkpoint

        try:
            return self.checkpoint is not None and os.path.samefile(self.checkpoint, default_checkpoint())
        except OSError:
            return False

    def knowledge_note(self) -> str:
        """One line saying what the model can recognise, plainly (shown by ``slots``, ``figure``
        and the app): the demo model knows only its generated shapes."""
        if self.labels.source == "imagenet":
            return (f"{self.name}: an ImageNet-1k head, read as the {len(self.foreground_names)} PASCAL VOC "
                    "classes through the ImageNet-to-VOC map")
        names = ", ".join(self.foreground_names) or "none (no classifier head)"
        if self.is_demo:
            return (f"bundled demo model ({self.name} trained on generated scenes): it knows only {names}, "
                    "so its classes mean nothing on photos; for photos load an official checkpoint "
                    "(--checkpoint glnet_4g, see the README)")
        return f"{self.name}: knows {len(self.foreground_names)} classes: {names}"

    def head_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N,)`` probabilities of the head's outputs: sigmoid (multi-label) or softmax."""
        logits = logits.float()
        return logits.sigmoid() if self.multilabel else logits.softmax(-1)

    def class_scores(self, logits: torch.Tensor) -> np.ndarray:
        """``(K,)`` score of each foreground class from one image's head logits (for an ImageNet
        head, the softmax mass of the ImageNet classes mapped to each target class)."""
        probs = self.head_probabilities(logits).cpu().numpy()
        if self.class_map is None:
            return probs
        return np.array([probs[group].sum() for group in self.class_map], dtype=np.float32)

    def top_predictions(self, logits: torch.Tensor, k: int = 5, min_score: float = 0.0) -> list[HeadPrediction]:
        """The ``k`` most probable head outputs, each with the segmentation class it feeds (the
        first always, the others only from ``min_score`` on)."""
        probs = self.head_probabilities(logits).cpu().numpy()
        names = self.head_names or self.foreground_names
        if self.class_map is None:
            feeds: dict[int, str] = dict(enumerate(self.foreground_names))
        else:
            feeds = {i: self.foreground_names[c] for c, group in enumerate(self.class_map) for i in group}
        order = np.argsort(-probs, kind="stable")[:k]
        return [HeadPrediction(names[i] if i < len(names) else f"output {i}", float(probs[i]), feeds.get(int(i)))
                for rank, i in enumerate(order) if rank == 0 or probs[i] >= min_score]


def checkpoint_line(loaded: str | None, requested: str | os.PathLike[str] | None, *, markdown: bool = False) -> str:
    """Which file a command loaded, said once: the file (absolute), and any other file the same name
    stands for that was passed over (``glnet_4g.pth`` beside ``glnet_4g.safetensors``). ``markdown``
    puts the paths in code spans (the app)."""
    from .models.checkpoints import checkpoint_candidates, looks_like_path

    def show(path: str | os.PathLike[str]) -> str:
        return f"`{path}`" if markdown else str(path)

    if loaded is not None:  # absolute: which of two files of one name is meant, wherever the command ran
        loaded = str(Path(loaded).resolve())
    if requested is None:
        return f"checkpoint: {show(loaded)} (the bundled demo model)"
    requested = os.fspath(requested)
    if Path(requested).expanduser().is_file() or looks_like_path(requested):  # resolve_checkpoint's order: a file
        return f"checkpoint: {show(loaded)}"
    passed_over = [show(p.resolve()) for p in checkpoint_candidates(requested)[1:]]
    if not passed_over:
        return f"checkpoint: {show(loaded)} (found by the name {requested!r})"
    return (f"checkpoint: {show(loaded)} (found by the name {requested!r}; also named so and not used: "
            f"{', '.join(passed_over)}: give the file's path to use another)")


def load_model(checkpoint: str | os.PathLike[str] | None = None, *, model_name: str | None = None,
               device: str | torch.device = "auto",
               precision: str | torch.dtype = DEFAULT_PRECISION) -> tuple[nn.Module, ModelInfo]:
    """A model in eval mode and its :class:`ModelInfo`, from a checkpoint file or name: what the
    predictor, eval and the app use. For the network alone (another head size, timm keywords,
    training) use :func:`glmix_vis.create_model`, which this calls.

    ``None`` loads the bundled demo checkpoint. Checkpoints written by ``glmix-wsss train`` or
    ``glmix-vis checkpoint convert`` carry their classes and input size; a 1000-class official
    checkpoint is read through the ImageNet-to-VOC class mapping. ``precision`` (``fp32``,
    ``bf16``, ``fp16``, ``auto``: :func:`glmix_vis.devices.resolve_precision`) is resolved for
    the device, checked before the weights are read and kept in :attr:`ModelInfo.precision`.
    """
    dtype = resolve_precision(precision, device)
    from .assets import default_checkpoint
    from .models.checkpoints import read_checkpoint_meta, resolve_checkpoint
    from .models.factory import create_model

    path = default_checkpoint() if checkpoint is None else resolve_checkpoint(checkpoint)
    meta = CheckpointMeta.from_mapping(read_checkpoint_meta(path))
    model = create_model(model_name or meta.model, checkpoint=path)
    try:
        labels = LabelSpace.from_checkpoint(meta, getattr(model, "num_classes", 0))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    model = model.to(resolve_device(device)).eval()
    # create_model recorded the file's input settings (or the variant's defaults) in timm's pretrained_cfg.
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    name = meta.model or model_name or cfg.get("architecture", "glnet")
    info = ModelInfo(name=str(name), labels=labels, mean=tuple(cfg.get("mean", GLNET_MEAN)),
                     std=tuple(cfg.get("std", GLNET_STD)),
                     input_size=int(min(cfg.get("input_size", (3, 224, 224))[-2:])),
                     checkpoint=str(path), meta=meta, precision=dtype)
    return model, info
