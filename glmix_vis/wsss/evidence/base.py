"""Class evidence: per-class score maps at the input size, the raw material of WSSS pseudo-masks.

An :class:`EvidenceMethod` turns a GLNet forward pass (a :class:`SlotOutput`, or an image batch
it runs the model on) into ``(B, K, H, W)`` float32 maps, one per requested target class. The
public call returns them normalised the way CAM-based WSSS does (IRN, Ahn et al. 2019): ReLU,
then divide each map by its own maximum (+1e-5), so every class map lies in [0, 1] and a single
background threshold applies to all classes.

Target classes are the head's classes, or, with ``class_map``, groups of head classes merged
into one target (e.g. the ImageNet classes that depict each VOC class, see
:mod:`glmix_vis.data.imagenet_voc`). Groups are merged on the dense logits, before the ReLU:
``max`` (default) or ``logsumexp`` over the group.

Methods register themselves by name; :func:`get_evidence_method` builds one from its name and
options, so the evaluation loop and the CLI can select them with a string.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...models.slots import SlotOutput, input_size_of, run_slots

__all__ = [
    "EvidenceMethod", "EvidenceInput", "ClassMap", "CLASS_REDUCTIONS", "NORM_EPS",
    "register_evidence", "evidence_class", "get_evidence_method", "available_evidence_methods",
    "aggregate_classes", "normalize_per_class", "resize_maps",
]

EvidenceInput = SlotOutput | torch.Tensor
ClassMap = Sequence[Sequence[int]]
CLASS_REDUCTIONS = ("max", "logsumexp")
NORM_EPS = 1e-5  # IRN's epsilon in ``cam / (max + 1e-5)``

_REGISTRY: dict[str, type[EvidenceMethod]] = {}


# --------------------------------------------------------------------------------------------
# tensor helpers shared by the methods
# --------------------------------------------------------------------------------------------
def aggregate_classes(scores: torch.Tensor, class_map: ClassMap | None, reduce: str = "max",
                      dim: int = 1) -> torch.Tensor:
    """Merge groups of source classes along ``dim`` into target classes (one per group)."""
    if class_map is None:
        return scores
    if reduce not in CLASS_REDUCTIONS:
        raise ValueError(f"class_reduce must be one of {CLASS_REDUCTIONS}, got {reduce!r}")
    n = scores.shape[dim]
    merged = []
    for t, group in enumerate(class_map):
        idx = torch.as_tensor(list(group), dtype=torch.long, device=scores.device)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= n:
            raise ValueError(f"class_map[{t}] = {list(group)} must be non-empty indices in 0..{n - 1}")
        part = scores.index_select(dim, idx)
        merged.append(part.amax(dim) if reduce == "max" else part.logsumexp(dim))
    return torch.stack(merged, dim)


def normalize_per_class(maps: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """ReLU, then divide every ``(H, W)`` map of a ``(B, K, H, W)`` batch by its maximum."""
    maps = maps.float().clamp_min(0)
    peak = maps.flatten(2).amax(dim=-1)[..., None, None]
    return maps / (peak + eps)


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``(B, K, h, w)`` maps (``align_corners=False``, as IRN)."""
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def linear_head(model: nn.Module, attr: str = "head") -> nn.Linear:
    head = getattr(model, attr, None)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{type(model).__name__}.{attr} is not a linear classifier "
                         "(a model built with num_classes=0 has no class evidence)")
    return head


def apply_linear(x: torch.Tensor, head: nn.Linear, bias: bool = True) -> torch.Tensor:
    """``head`` on the last dimension of ``x``, in float32 whatever the model's dtype."""
    b = head.bias.float() if (bias and head.bias is not None) else None
    return F.linear(x.float(), head.weight.float(), b)


# --------------------------------------------------------------------------------------------
# the base class and the registry
# --------------------------------------------------------------------------------------------
class EvidenceMethod(ABC):
    """Per-class evidence maps from a GLNet.

    Args:
        class_map: optional groups of head classes, one group per target class.
        class_reduce: how a group is merged: ``"max"`` or ``"logsumexp"`` of the dense logits.

    Subclasses implement :meth:`raw`. Call the instance for normalised maps.
    """

    name: ClassVar[str] = ""
    #: True for a method that runs the model itself (gradients, masked copies): it takes the
    #: image batch, never a :class:`SlotOutput` already computed.
    needs_images: ClassVar[bool] = False
    #: What a person choosing the method should know of its cost (the app's method list shows it);
    #: ``None``: about one forward pass.
    cost_note: ClassVar[str | None] = None
    #: True for a method whose maps are class probabilities over every class, background the rest
    #: (a segmenter's, ``seg``): used as they are, never normalised per class; its mask is their
    #: argmax over all classes, with no image labels and no background threshold.
    probabilities: ClassVar[bool] = False

    def __init__(self, class_map: ClassMap | None = None, class_reduce: str = "max") -> None:
        if class_reduce not in CLASS_REDUCTIONS:
            raise ValueError(f"class_reduce must be one of {CLASS_REDUCTIONS}, got {class_reduce!r}")
        if class_map is not None:
            class_map = [list(map(int, g)) for g in class_map]
            if not class_map or any(not g for g in class_map):
                raise ValueError("class_map must be a non-empty list of non-empty class-index lists")
        self.class_map: list[list[int]] | None = class_map
        self.class_reduce = class_reduce

    #: Constructor parameters that are not options a recipe sets (the class map comes from the model).
    NOT_OPTIONS: ClassVar[tuple[str, ...]] = ("self", "class_map", "config")

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The options this method takes by name, with their defaults: what a
        :class:`~glmix_vis.wsss.recipe.MaskRecipe`'s ``method_options`` may set (the keyword
        parameters of ``__init__``; a method with a settings dataclass adds its fields)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params
                if p.name not in cls.NOT_OPTIONS and p.default is not p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def __call__(self, model: nn.Module, inputs: EvidenceInput, classes: Sequence[int] | None = None,
                 size: Sequence[int] | None = None) -> torch.Tensor:
        """``(B, len(classes) or K, H, W)`` maps in [0, 1], float32, at the input size (or ``size``)."""
        maps = self.compute(model, inputs, classes, size)
        return maps.float() if self.probabilities else normalize_per_class(maps)

    def compute(self, model: nn.Module, inputs: EvidenceInput, classes: Sequence[int] | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        """Unnormalised, non-negative maps (what test-time augmentation sums before normalising)."""
        out = run_slots(model, inputs) if isinstance(inputs, torch.Tensor) else inputs
        if size is None:
            size = inputs.shape[-2:] if isinstance(inputs, torch.Tensor) else input_size_of(out)
        cls = None if classes is None else [int(c) for c in classes]
        with torch.no_grad():
            return self.raw(model, out, cls, (int(size[0]), int(size[1])))

    def augmented(self, model: nn.Module, images: torch.Tensor, classes: list[int] | None,
                  scales: Sequence[float], flip: bool, size: tuple[int, int]) -> torch.Tensor | None:
        """Unnormalised maps under test-time augmentation, for methods that augment only part of
        their computation; ``None`` (the default) lets :func:`~glmix_vis.wsss.evidence.tta.tta_evidence`
        average whole :meth:`compute` maps over the scales and flips."""
        return None

    def check(self, model: nn.Module, out: SlotOutput) -> None:
        """Raise (``ValueError``, ``TypeError``, ...) when this method cannot serve ``model``; ``out``
        is its forward pass of a small image. Default: compute one class's maps from ``out``.
        Methods that run the network themselves check what they need without running it."""
        self(model, out, classes=[0], size=input_size_of(out))

    @abstractmethod
    def raw(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
            size: tuple[int, int]) -> torch.Tensor:
        """``(B, K', H, W)`` non-negative float32 maps at ``size`` for the target ``classes``."""

    # shared step: head classes -> target classes -> requested subset
    def select_targets(self, scores: torch.Tensor, classes: list[int] | None, dim: int = 1) -> torch.Tensor:
        """Merge ``class_map`` groups and keep the requested target classes, along ``dim``."""
        scores = aggregate_classes(scores, self.class_map, self.class_reduce, dim)
        if classes is None:
            return scores
        k = scores.shape[dim]
        if any(not 0 <= c < k for c in classes):
            raise ValueError(f"requested classes {classes} out of range for {k} target classes")
        return scores.index_select(dim, torch.as_tensor(classes, dtype=torch.long, device=scores.device))

    def __repr__(self) -> str:
        groups = "" if self.class_map is None else f", class_map={len(self.class_map)} groups"
        return f"{type(self).__name__}(name={self.name!r}{groups}, class_reduce={self.class_reduce!r})"


def register_evidence(name: str) -> Callable[[type[EvidenceMethod]], type[EvidenceMethod]]:
    """Class decorator: make an :class:`EvidenceMethod` selectable by ``name``."""

    def wrap(cls: type[EvidenceMethod]) -> type[EvidenceMethod]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"evidence method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_evidence_methods() -> list[str]:
    return sorted(_REGISTRY)


def evidence_class(name: str) -> type[EvidenceMethod]:
    """The class registered as ``name`` (``"cam"``, ``"token"``, ``"slot-cam"``, ...), or a clear ``ValueError``."""
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown evidence method {name!r}; choose one of {available_evidence_methods()}")
    return _REGISTRY[key]


def get_evidence_method(name: str, **opts: object) -> EvidenceMethod:
    """Build the evidence method registered as ``name`` (``"cam"``, ``"token"``, ``"slot-cam"``)."""
    return evidence_class(name)(**opts)
