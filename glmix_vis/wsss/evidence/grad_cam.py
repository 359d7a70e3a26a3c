"""The gradient and activation CAMs of pytorch-grad-cam as evidence methods.

``gradcam`` (Selvaraju et al., ICCV 2017), ``gradcam++`` (Chattopadhay et al., WACV 2018),
``xgradcam`` (Fu et al., BMVC 2020), ``layercam`` (Jiang et al., TIP 2021), ``eigencam``
(Muhammad & Yeasin, IJCNN 2020) and ``scorecam`` (Wang et al., CVPRW 2020) are computed by
pytorch-grad-cam's own classes (``GradCAM``, ``GradCAMPlusPlus``, ...): their activation
recorder and their ``get_cam_image`` (the per-method channel weighting). This module supplies
what they need from a GLNet and hands back what the WSSS pipeline works with:

* **targets**: one callable per target class, the class's logit, or for a ``class_map`` group
  the max (or logsumexp) of the group's logits (:class:`ClassTarget`);
* **gradients** under the pipeline's ``torch.no_grad()``: the call enables autograd itself and
  takes the gradients with :func:`torch.autograd.grad` with respect to the recorded activations,
  so no parameter's ``.grad`` is written, ``requires_grad`` is never touched, and the backward
  pass stops at the target layers; the hooks pytorch-grad-cam puts on the target layers are
  removed before the call returns (also on error), and the model's train/eval modes (which
  pytorch-grad-cam sets to eval) are restored module by module;
* **raw maps**: pytorch-grad-cam's ``forward`` min-max scales each map and resizes it with
  OpenCV; here each layer's ReLU'd cam is taken before that and resized bilinearly by
  :func:`~glmix_vis.wsss.evidence.base.resize_maps`, so that the pipeline's per-class
  max-normalisation and test-time averaging apply as for every other method. With several
  target layers each layer's map is scaled to a peak of 1 and the layers are averaged, as
  pytorch-grad-cam aggregates them (it also subtracts each map's minimum; a ReLU'd map's
  zero is kept here as "no evidence").

Target layers: module names as in ``model.named_modules()`` (:func:`target_layer_candidates`
lists the valid ones: every module whose output is a ``(B, C, H, W)`` map), default
:data:`DEFAULT_TARGET_LAYERS` per method, chosen by measurement (``eval/RESULTS.md``, "Grad-CAM
target layers"). :func:`gradcam_targets` gives pytorch-grad-cam users the same layers.

Cost: one forward pass per call plus, for the gradient methods, one partial backward per
target class. ``scorecam`` runs the model once per channel of each target layer per image and
target class (768 masked copies of the image per class at ``glnet_stl``'s last stage), in
batches of ``batch_size``: hundreds of times the cost of ``gradcam``; use it on a few images.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn

from ...devices import network_autocast
from ...models.glnet import MHSABlock
from ...models.slots import SlotOutput
from .base import ClassMap, EvidenceInput, EvidenceMethod, linear_head, register_evidence, resize_maps
from .budget import check_budget

__all__ = [
    "GRAD_CAM_METHODS", "DEFAULT_TARGET_LAYERS", "ClassTarget", "PytorchGradCAMEvidence",
    "target_layer_candidates", "default_target_layers", "resolve_target_layers", "gradcam_targets",
]

#: Evidence name -> pytorch-grad-cam class name.
GRAD_CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
    "layercam": "LayerCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
}

#: Default target layers per method, as roles that every GLNet variant resolves
#: (:func:`default_target_layers`): ``"norm"`` (the final norm, what the head pools),
#: ``"last-stage"`` (the last stage's output, i.e. its last block's) and ``"previous-stage"``
#: (the stage before it). Chosen on the generated scenes' train split with the bundled model
#: (``eval/RESULTS.md``, "Grad-CAM target layers (issue 15)").
DEFAULT_TARGET_LAYERS: dict[str, tuple[str, ...]] = {
    "gradcam": ("previous-stage", "norm"), "gradcam++": ("norm",), "xgradcam": ("norm",),
    "layercam": ("previous-stage", "last-stage"), "eigencam": ("last-stage",), "scorecam": ("norm",),
}


# --------------------------------------------------------------------------------------------
# target layers
# --------------------------------------------------------------------------------------------
def _require_glnet(model: nn.Module) -> None:
    if not (hasattr(model, "stages") and hasattr(model, "downsample_layers") and hasattr(model, "norm")):
        raise TypeError(f"{type(model).__name__} is not a GLNet (no stages/downsample_layers/norm)")


def target_layer_candidates(model: nn.Module) -> list[str]:
    """Module names whose output is a ``(B, C, H, W)`` map, in forward order: the valid target
    layers (a token block, ``MHSABlock``, outputs ``(B, N, C)``: its stage's output stands for it)."""
    _require_glnet(model)
    names = []
    for i, stage in enumerate(model.stages):
        names.append(f"downsample_layers.{i}")
        names += [f"stages.{i}.blocks.{j}" for j, blk in enumerate(stage.blocks) if not isinstance(blk, MHSABlock)]
        names.append(f"stages.{i}")
    names.append("norm")
    return names


def default_target_layers(model: nn.Module, method: str = "gradcam") -> list[str]:
    """The default target-layer names of ``method`` on this model (see :data:`DEFAULT_TARGET_LAYERS`)."""
    _require_glnet(model)
    last = len(model.stages) - 1
    names = {"norm": "norm", "last-stage": f"stages.{last}", "previous-stage": f"stages.{max(last - 1, 0)}"}
    return list(dict.fromkeys(names[r] for r in DEFAULT_TARGET_LAYERS[method]))


def _parse_layer_names(names: str | Sequence[str]) -> list[str]:
    items = names.split(",") if isinstance(names, str) else list(names)
    parsed = [str(n).strip() for n in items if str(n).strip()]
    if not parsed:
        raise ValueError("target_layers names no module; e.g. 'norm' or 'stages.3'")
    return parsed


def resolve_target_layers(model: nn.Module, names: str | Sequence[str]) -> list[nn.Module]:
    """The modules named ``names`` (comma-separated string or list), each a valid candidate;
    one ``ValueError`` naming the bad ones and listing :func:`target_layer_candidates` otherwise."""
    parsed = _parse_layer_names(names)
    valid = target_layer_candidates(model)
    bad = [n for n in parsed if n not in valid]
    if bad:
        raise ValueError(f"target layer(s) {', '.join(map(repr, bad))} not valid for {type(model).__name__}; "
                         f"choose from the modules with a (B, C, H, W) output: {', '.join(valid)}")
    modules = dict(model.named_modules())
    return [modules[n] for n in parsed]


def gradcam_targets(model: nn.Module, method: str = "gradcam") -> tuple[list[nn.Module], None]:
    """``(target_layers, reshape_transform)`` for using pytorch-grad-cam directly on a GLNet::

        layers, reshape = glmix_vis.gradcam_targets(model)
        with GradCAM(model, target_layers=layers, reshape_transform=reshape) as cam:
            heat = cam(batch, targets=[ClassifierOutputTarget(3)])

    The layers are this package's measured default for ``method``; GLNet's features are
    ``(B, C, H, W)`` maps, so no reshape transform is needed (``None``)."""
    if method not in DEFAULT_TARGET_LAYERS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(DEFAULT_TARGET_LAYERS)}")
    return resolve_target_layers(model, default_target_layers(model, method)), None


# --------------------------------------------------------------------------------------------
# pytorch-grad-cam glue
# --------------------------------------------------------------------------------------------
class ClassTarget:
    """A pytorch-grad-cam target: the logit of one target class, or the ``max``/``logsumexp``
    of a group of head classes (a ``class_map`` entry), from a ``(N,)`` or ``(B, N)`` output."""

    def __init__(self, group: Sequence[int], reduce: str = "max") -> None:
        self.group = [int(c) for c in group]
        self.reduce = reduce

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        part = output[..., self.group].float()
        return part.amax(-1) if self.reduce == "max" else part.logsumexp(-1)

    def __repr__(self) -> str:
        return f"ClassTarget({self.group}, {self.reduce!r})"


@lru_cache(maxsize=1)
def _recorder_class() -> type:
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    class Recorder(ActivationsAndGradients):
        """pytorch-grad-cam's recorder keeping the live activations (``detach=False``), so that
        their gradients come from :func:`torch.autograd.grad`; deaf to other threads' forward
        passes through the same model (the app serves requests concurrently) and, once
        ``recording`` is off, to Score-CAM's forward passes over masked copies."""

        def __init__(self, model: nn.Module, target_layers: list[nn.Module]) -> None:
            self.owner = threading.get_ident()
            self.recording = True
            super().__init__(model, target_layers, None, detach=False)

        def save_activation(self, module: nn.Module, input: Any, output: Any) -> None:
            if self.recording and threading.get_ident() == self.owner:
                super().save_activation(module, input, output)

        def save_gradient(self, module: nn.Module, input: Any, output: Any) -> None:
            return None  # gradients are taken by torch.autograd.grad on the recorded activations

        def clear(self) -> None:
            # the base detaches in place, which fails on a view (a reshaped block output) and
            # would leave the hooks on: live tensors are simply let go
            self.activations = []
            self.gradients = []

    return Recorder


def _to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().float().cpu().numpy()


def _combine_layers(maps: list[torch.Tensor]) -> torch.Tensor:
    """One layer: as it is. Several: each scaled to a peak of 1 per map, then averaged."""
    if len(maps) == 1:
        return maps[0]
    scaled = [m / (m.flatten(-2).amax(-1)[..., None, None] + 1e-7) for m in maps]
    return torch.stack(scaled).mean(0)


class PytorchGradCAMEvidence(EvidenceMethod):
    """A pytorch-grad-cam method as class evidence (see the module docstring).

    Args:
        class_map, class_reduce: see :class:`~glmix_vis.wsss.evidence.base.EvidenceMethod`.
        target_layers: module names (a list, or one comma-separated string) whose activations
            the method weighs; default :func:`default_target_layers` of the method.
    """

    needs_images: ClassVar[bool] = True
    #: The maps do not depend on the target (EigenCAM): computed once, shared by every class.
    class_agnostic: ClassVar[bool] = False

    def __init__(self, class_map: ClassMap | None = None, class_reduce: str = "max",
                 target_layers: str | Sequence[str] | None = None) -> None:
        super().__init__(class_map, class_reduce)
        self.target_layers = None if target_layers is None else _parse_layer_names(target_layers)

    def cam_class(self) -> type:
        import pytorch_grad_cam

        return getattr(pytorch_grad_cam, GRAD_CAM_METHODS[self.name])

    def layer_names(self, model: nn.Module) -> list[str]:
        return self.target_layers or default_target_layers(model, self.name)

    def targets(self, model: nn.Module, classes: list[int] | None) -> list[ClassTarget]:
        n = linear_head(model).out_features
        groups = self.class_map if self.class_map is not None else [[c] for c in range(n)]
        for t, g in enumerate(groups):
            if min(g) < 0 or max(g) >= n:
                raise ValueError(f"class_map[{t}] = {g} must be non-empty indices in 0..{n - 1}")
        if classes is not None:
            if any(not 0 <= c < len(groups) for c in classes):
                raise ValueError(f"requested classes {classes} out of range for {len(groups)} target classes")
            groups = [groups[c] for c in classes]
        return [ClassTarget(g, self.class_reduce) for g in groups]

    def compute(self, model: nn.Module, inputs: EvidenceInput, classes: Sequence[int] | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        if isinstance(inputs, SlotOutput) or not isinstance(inputs, torch.Tensor):
            raise TypeError(f"{self.name!r} runs the model itself: pass the (B, 3, H, W) image batch, not a "
                            "SlotOutput")
        if inputs.ndim != 4:
            raise ValueError(f"images must be a (B, 3, H, W) batch, got shape {tuple(inputs.shape)}")
        size = tuple(inputs.shape[-2:]) if size is None else size
        cls = None if classes is None else [int(c) for c in classes]
        targets = self.targets(model, cls)
        layers = resolve_target_layers(model, self.layer_names(model))
        if not targets:
            return inputs.new_zeros((inputs.shape[0], 0, int(size[0]), int(size[1])), dtype=torch.float32)
        return self._maps(model, inputs, targets, layers, (int(size[0]), int(size[1])))

    def check(self, model: nn.Module, out: SlotOutput) -> None:
        """A linear head and the target layers are all it needs (no forward and backward passes:
        Score-CAM's would run the network once per channel)."""
        self.targets(model, [0])
        resolve_target_layers(model, self.layer_names(model))

    def raw(self, model: nn.Module, out: SlotOutput, classes: list[int] | None,
            size: tuple[int, int]) -> torch.Tensor:
        raise TypeError(f"{self.name!r} runs the model itself: it needs the image batch, not a SlotOutput")

    def prepare(self, cam: Any) -> None:
        """Set method-specific attributes on the pytorch-grad-cam object."""

    def weigh(self, cam: Any, x: torch.Tensor, layer: nn.Module, targets: list[ClassTarget],
              activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        """``(B, h, w)``: pytorch-grad-cam's cam of one layer for one target per image."""
        return cam.get_cam_image(x, layer, targets, activations, grads, False)

    def _maps(self, model: nn.Module, images: torch.Tensor, targets: list[ClassTarget],
              layers: list[nn.Module], size: tuple[int, int]) -> torch.Tensor:
        modes = [(m, m.training) for m in model.modules()]
        cam = self.cam_class()(model, layers)  # puts the model in eval mode and hooks the layers
        cam.activations_and_grads.release()
        recorder = cam.activations_and_grads = _recorder_class()(model, layers)
        self.prepare(cam)
        try:
            with torch.enable_grad(), network_autocast(images.device):  # the caller's inference precision
                x = images.detach()
                if cam.uses_gradients and not any(p.requires_grad for p in model.parameters()):
                    x = x.clone().requires_grad_(True)  # a frozen model: the graph starts at the input
                logits = recorder(x)
                recorder.recording = False
                acts = list(recorder.activations)
                if len(acts) != len(layers):
                    raise RuntimeError(f"recorded {len(acts)} activations for {len(layers)} target layers "
                                       "(a target layer ran more than once or not at all)")
                for a, name in zip(acts, self.layer_names(model)):
                    if a.ndim != 4:
                        raise ValueError(f"target layer {name!r} outputs shape {tuple(a.shape)}, not (B, C, H, W)")
                acts_np = [_to_numpy(a) for a in acts]
                per_class = []
                for k, target in enumerate(targets):
                    check_budget()  # a caller's deadline or cancel stops here, between classes
                    if self.class_agnostic and per_class:
                        per_class.append(per_class[0])
                        continue
                    grads: Sequence[torch.Tensor | None] = [None] * len(acts)
                    if cam.uses_gradients:
                        loss = target(logits).sum()  # one target per image, as pytorch-grad-cam sums them
                        grads = torch.autograd.grad(loss, acts, retain_graph=k < len(targets) - 1,
                                                    allow_unused=True)
                        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(acts, grads)]
                    layer_maps = []
                    for layer, a_np, g in zip(layers, acts_np, grads):
                        cam_np = self.weigh(cam, x.detach(), layer, [target] * x.shape[0], a_np, _to_numpy(g))
                        layer_map = torch.from_numpy(np.maximum(np.asarray(cam_np, np.float32), 0))
                        layer_maps.append(resize_maps(layer_map[:, None].to(images.device), size)[:, 0])
                    per_class.append(_combine_layers(layer_maps))
            return torch.stack(per_class, 1).float()
        finally:
            recorder.release()
            for m, training in modes:
                m.training = training


@register_evidence("gradcam")
class GradCAMEvidence(PytorchGradCAMEvidence):
    """Grad-CAM: activations weighted by their spatially averaged gradients."""


@register_evidence("gradcam++")
class GradCAMPlusPlusEvidence(PytorchGradCAMEvidence):
    """Grad-CAM++: positive gradients weighted by higher-order terms."""


@register_evidence("xgradcam")
class XGradCAMEvidence(PytorchGradCAMEvidence):
    """XGrad-CAM: gradients weighted by the normalised activations."""


@register_evidence("layercam")
class LayerCAMEvidence(PytorchGradCAMEvidence):
    """LayerCAM: activations weighted location by location by their positive gradients."""


@register_evidence("eigencam")
class EigenCAMEvidence(PytorchGradCAMEvidence):
    """EigenCAM: the activations' first principal component; the same map for every class
    (no gradients, no target; the sign of the component is the SVD's)."""

    class_agnostic = True


class _BudgetedModel:
    """The model as Score-CAM's per-channel loop calls it: :func:`check_budget` before each batch of
    masked copies, so that a deadline or a cancel stops it within one batch."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_budget()
        return self.model(x)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@register_evidence("scorecam")
class ScoreCAMEvidence(PytorchGradCAMEvidence):
    """Score-CAM: each channel, upsampled and min-max scaled, masks the image; the softmax of the
    target's scores of the masked copies weighs the channels. One forward pass per channel of
    each target layer per image and target class, ``batch_size`` copies at a time.

    Args:
        batch_size: masked copies per forward pass (pytorch-grad-cam's ``batch_size``).
    """

    cost_note: ClassVar[str | None] = "slow: one network pass per channel and class"

    def __init__(self, class_map: ClassMap | None = None, class_reduce: str = "max",
                 target_layers: str | Sequence[str] | None = None, batch_size: int = 32) -> None:
        super().__init__(class_map, class_reduce, target_layers)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def prepare(self, cam: Any) -> None:
        cam.batch_size = self.batch_size
        cam.model = _BudgetedModel(cam.model)  # the caller's time budget is checked before every batch

    def weigh(self, cam: Any, x: torch.Tensor, layer: nn.Module, targets: list[ClassTarget],
              activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        # pytorch-grad-cam draws a tqdm bar per image: keep them out of the caller's output
        with contextlib.redirect_stderr(io.StringIO()):
            return super().weigh(cam, x, layer, targets, activations, grads)
