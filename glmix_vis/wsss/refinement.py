"""Training-free refinements of a pseudo-mask's class probabilities, before the argmax and any CRF.

    (K+1, H, W) probabilities (plane 0 background) ─► refinement ─► refined probabilities ─► mask

* ``none``: the probabilities as they are;
* ``par``: PAR, AFA's pixel-adaptive refinement along the image's colours (:mod:`.par`);
* ``slot-walk``: the slot random walk along the image's GLMix dispatch maps (ours, :mod:`.slot_walk`).

:func:`get_refinement` builds one from its name and options (validating them); its
:meth:`~Refinement.prepare` gives the :class:`Refiner` of one image: the image's affinities,
computed once, applied to one probability stack or to many (a background-threshold sweep refines
every threshold's probabilities, since the background plane is the threshold).

The rules every refinement keeps, here only: planes of classes outside the image's labels are
never propagated and stay 0; the result is clamped at 0 and renormalised to sum to 1 at every
pixel; the mask (:func:`refined_mask`) is the argmax over background and the image's classes,
ties to the lower label (background first), as :func:`~glmix_vis.wsss.masks.scores_to_mask`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from ..models.slots import SlotOutput
from .par import PARParams, par_operator
from .slot_walk import DEFAULT_SLOT_WALK, SlotWalkConfig, walk_operator

__all__ = ["REFINEMENTS", "Refinement", "Refiner", "get_refinement", "refined_mask"]

#: The refinement names, ``none`` first.
REFINEMENTS = ("none", "par", "slot-walk")

Propagate = Callable[[torch.Tensor], torch.Tensor]  # (C, H, W) -> (C, H, W), linear in the planes


def _float32(device: torch.device) -> torch.autocast:
    """No autocast: a caller's reduced inference precision stays out of the refinement's float32 sums."""
    return torch.autocast(device_type=device.type, enabled=False)


def _label_planes(labels: np.ndarray | Sequence[float], planes: int) -> np.ndarray:
    """Indices of the planes a mask may use: background and the image's classes."""
    lab = np.asarray(labels).astype(bool).reshape(-1)
    if lab.size != planes - 1:
        raise ValueError(f"labels must be multi-hot over the {planes - 1} classes, got shape {lab.shape}")
    return np.concatenate([[0], np.flatnonzero(lab) + 1])


def refined_mask(probabilities: np.ndarray, labels: np.ndarray | Sequence[float]) -> np.ndarray:
    """``(H, W)`` (or ``(T, H, W)`` for a ``(T, K+1, H, W)`` stack) int64 labels: the argmax over
    background and the image's classes, ties to the lower label."""
    p = np.asarray(probabilities)
    allowed = np.zeros(p.shape[-3], bool)
    allowed[_label_planes(labels, p.shape[-3])] = True
    return np.where(allowed[:, None, None], p, -np.inf).argmax(axis=-3)


@dataclass(frozen=True)
class Refiner:
    """One image's refinement, ready to apply (``propagate`` None: the identity)."""

    propagate: Propagate | None
    device: torch.device

    def __call__(self, probabilities: np.ndarray, labels: np.ndarray | Sequence[float]) -> np.ndarray:
        """Refined float32 probabilities of a ``(K+1, H, W)`` stack, or of ``(T, K+1, H, W)`` stacks."""
        p = np.asarray(probabilities, dtype=np.float32)
        if p.ndim not in (3, 4):
            raise ValueError(f"probabilities must be (K+1, H, W) or (T, K+1, H, W), got shape {p.shape}")
        stack = p if p.ndim == 4 else p[None]
        keep = _label_planes(labels, stack.shape[1])
        x = torch.from_numpy(np.ascontiguousarray(stack[:, keep])).to(self.device)
        t, c, h, w = x.shape
        if self.propagate is not None:
            with _float32(self.device):
                x = self.propagate(x.reshape(t * c, h, w)).reshape(t, c, h, w)
        x = x.clamp_min(0)
        total = x.sum(dim=1, keepdim=True)
        x[:, :1] = torch.where(total > 0, x[:, :1], torch.ones_like(x[:, :1]))  # nothing anywhere: background
        x = x / x.sum(dim=1, keepdim=True)
        out = np.zeros_like(stack)
        out[:, keep] = x.cpu().numpy()
        return out if p.ndim == 4 else out[0]


class Refinement:
    """A named refinement with its validated options (build it with :func:`get_refinement`)."""

    def __init__(self, name: str, params: PARParams | SlotWalkConfig | None = None) -> None:
        if name not in REFINEMENTS:
            raise ValueError(f"refinement must be one of {', '.join(REFINEMENTS)}; got {name!r}")
        self.name, self.params = name, params

    @property
    def is_identity(self) -> bool:
        return self.name == "none"

    @property
    def needs_image(self) -> bool:
        return self.name == "par"

    @property
    def needs_slots(self) -> bool:
        return self.name == "slot-walk"

    def settings(self) -> dict[str, Any]:
        """Every option, defaults included (what a saved run records)."""
        if self.params is None:
            return {}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.params).items()}

    def check(self, num_glmix_blocks: int) -> None:
        """Stop with a clear error when a model with ``num_glmix_blocks`` cannot serve the options."""
        if isinstance(self.params, SlotWalkConfig):
            if num_glmix_blocks == 0:
                raise ValueError("the slot walk needs a model with GLMix blocks")
            self.params.block_indices(num_glmix_blocks)

    def prepare(self, *, size: Sequence[int], image: np.ndarray | None = None, slots: SlotOutput | None = None,
                device: torch.device | str = "cpu") -> Refiner:
        """The :class:`Refiner` of one image at ``size`` ``(H, W)``: ``image`` is its ``(H, W, 3)`` RGB
        (PAR), ``slots`` the image's scale-1 forward pass (the slot walk)."""
        device = torch.device(device)
        size = (int(size[0]), int(size[1]))
        if isinstance(self.params, PARParams):
            if image is None:
                raise ValueError("par refines along the image's colours: pass the RGB image")
            if tuple(np.shape(image)[:2]) != size:
                raise ValueError(f"the image is {np.shape(image)[:2]} but the probabilities are {size}")
            with _float32(device):
                return Refiner(par_operator(image, self.params, device), device)
        if isinstance(self.params, SlotWalkConfig):
            if slots is None:
                raise ValueError("slot-walk walks along the image's slot maps: pass its forward pass (SlotOutput)")
            with _float32(device):
                return Refiner(walk_operator(slots, size, self.params, device), device)
        return Refiner(None, device)

    def __call__(self, probabilities: np.ndarray, labels: np.ndarray | Sequence[float], *,
                 image: np.ndarray | None = None, slots: SlotOutput | None = None) -> np.ndarray:
        """Refined ``(K+1, H, W)`` probabilities of one image (see the module docstring's rules)."""
        p = np.asarray(probabilities)
        return self.prepare(size=p.shape[-2:], image=image, slots=slots)(p, labels)

    def __repr__(self) -> str:
        return f"Refinement({self.name!r}, {self.settings()})"


_PARAMS: dict[str, type[PARParams] | type[SlotWalkConfig]] = {"par": PARParams, "slot-walk": SlotWalkConfig}


def get_refinement(name: str = "none", options: Mapping[str, Any] | None = None) -> Refinement:
    """The refinement ``name`` with ``options`` (field names of :class:`~glmix_vis.wsss.par.PARParams`
    or :class:`~glmix_vis.wsss.slot_walk.SlotWalkConfig`; the slot walk's defaults are
    :data:`~glmix_vis.wsss.slot_walk.DEFAULT_SLOT_WALK`), or a clear ``ValueError``."""
    options = dict(options or {})
    if name not in REFINEMENTS:
        raise ValueError(f"refinement must be one of {', '.join(REFINEMENTS)}; got {name!r}")
    if name == "none":
        if options:
            raise ValueError(f"refinement 'none' takes no options, got {sorted(options)}")
        return Refinement(name)
    kind = _PARAMS[name]
    known = [f.name for f in fields(kind)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} options {unknown}; expected some of {known}")
    base = DEFAULT_SLOT_WALK if kind is SlotWalkConfig else PARParams()
    return Refinement(name, kind(**{**asdict(base), **options}))
