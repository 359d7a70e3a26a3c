"""The checkpoint metadata schema: the one writer and reader of its fields.

Our ``.safetensors`` files carry it in their header (each value JSON-encoded), our ``.pth`` files
in a ``meta`` entry; official training checkpoints have none, and :mod:`.checkpoints` fills
``model`` and ``input_size`` from their saved config. Every command that writes metadata
(training, ``checkpoint convert``, threshold tuning) builds a :class:`CheckpointMeta` and every
reader (loading a model, timm's ``pretrained_cfg``, ``checkpoint inspect``) parses one, so a field
means one thing everywhere. What the class names then mean for a head of a given size (ImageNet
heads, unnamed heads) is :meth:`glmix_vis.data.labels.LabelSpace.from_checkpoint`'s rule.

Fields (schema version 1):

=================  ===========================================================================
``model``          registered variant name (``glnet_4g``)
``classes``        class names; what they name depends on ``head``
``head``           ``"foreground"``: ``classes`` lists background first and the head predicts the
                   rest (our WSSS training); ``"all"``: one name per head output (``convert``);
                   ``"segmentation"``: a segmenter (``train-seg``) whose per-pixel head scores every
                   class of ``classes``, background first (its decoder in ``extra["decoder"]``)
``input_size``     ``[H, W]`` the model was trained at
``mean``, ``std``  input normalisation, three values each
``bg_thresholds``  background threshold per evidence method, tuned on a training split
``schema``         this version; files without it are read as version 1
=================  ===========================================================================

Anything else (``epoch``, ``val_map``, ``dataset``, ``source``, ...) is kept as it is in
``extra`` and written back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEMA_VERSION", "HEAD_FOREGROUND", "HEAD_ALL", "HEAD_SEGMENTATION", "BACKGROUND", "CheckpointMeta"]

SCHEMA_VERSION = 1
HEAD_FOREGROUND = "foreground"
HEAD_ALL = "all"
HEAD_SEGMENTATION = "segmentation"
_HEADS = (HEAD_FOREGROUND, HEAD_ALL, HEAD_SEGMENTATION)
BACKGROUND = "background"
_KNOWN = ("model", "classes", "head", "input_size", "mean", "std", "bg_thresholds", "schema")


def _names(value: Any) -> list[str] | None:
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (isinstance(value, list | tuple) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return (int(value[0]), int(value[1]))
    return None


def _triple(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 3 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return (float(value[0]), float(value[1]), float(value[2]))
    return None


def _thresholds(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0}


@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself. Unknown or malformed values read as absent."""

    model: str | None = None
    classes: list[str] | None = None
    head: str = HEAD_ALL
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    bg_thresholds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> CheckpointMeta:
        raw = dict(raw or {})
        model = raw.get("model")
        head = raw.get("head")
        return cls(
            model=model if isinstance(model, str) else None,
            classes=_names(raw.get("classes")),
            head=head if head in _HEADS else HEAD_ALL,
            input_size=_size(raw.get("input_size")),
            mean=_triple(raw.get("mean")),
            std=_triple(raw.get("std")),
            bg_thresholds=_thresholds(raw.get("bg_thresholds")),
            extra={k: v for k, v in raw.items() if k not in _KNOWN},
        )

    @property
    def lists_background(self) -> bool:
        """Whether ``classes`` lists background first (``head="foreground"`` or ``"segmentation"``)."""
        return self.head in (HEAD_FOREGROUND, HEAD_SEGMENTATION)

    @property
    def is_segmentation(self) -> bool:
        """Whether the checkpoint is a segmenter (``head="segmentation"``)."""
        return self.head == HEAD_SEGMENTATION

    def head_class_names(self, num_outputs: int) -> list[str] | None:
        """One name per head output, if the metadata names them all."""
        if self.classes is None:
            return None
        names = self.classes
        if self.head == HEAD_FOREGROUND and len(names) == num_outputs + 1:
            names = names[1:]
        return list(names) if len(names) == num_outputs else None

    def segmentation_classes(self, num_outputs: int) -> list[str] | None:
        """The segmentation classes, background first, for a head of ``num_outputs`` classes.

        ``head="foreground"`` files list background themselves; files that name every output
        (``checkpoint convert --classes``) get ``background`` put in front, unless their first
        name already is background and the rest match the head.
        """
        if self.classes is None:
            return None
        names = self.classes
        if self.head == HEAD_SEGMENTATION:
            return list(names) if len(names) == num_outputs else None
        if self.head == HEAD_FOREGROUND:
            return list(names) if len(names) == num_outputs + 1 else None
        if len(names) == num_outputs + 1 and names[0] == BACKGROUND:
            return list(names)
        return [BACKGROUND, *names] if len(names) == num_outputs else None

    def tuned_bg_threshold(self, method: str) -> float | None:
        """The background threshold tuned for ``method`` on a training split, if recorded."""
        return self.bg_thresholds.get(method)

    # ------------------------------------------------------------------ writing
    def to_mapping(self) -> dict[str, Any]:
        """The JSON-ready fields to store (absent values are left out)."""
        out: dict[str, Any] = dict(self.extra)
        out["schema"] = SCHEMA_VERSION
        if self.model is not None:
            out["model"] = self.model
        if self.classes is not None:
            out["classes"] = list(self.classes)
            out["head"] = self.head
        if self.input_size is not None:
            out["input_size"] = list(self.input_size)
        if self.mean is not None:
            out["mean"] = list(self.mean)
        if self.std is not None:
            out["std"] = list(self.std)
        if self.bg_thresholds:
            out["bg_thresholds"] = dict(self.bg_thresholds)
        return out
