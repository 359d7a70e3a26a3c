"""Training-free refinements of a pseudo-mask's class evidence, before the threshold and any CRF.

    (K, H, W) evidence in [0, 1] ─► refinement ─► refined evidence ─► background threshold ─► mask

* ``none``: the evidence as it is;
* ``par``: PAR, AFA's pixel-adaptive refinement along the image's colours (:mod:`.par`);
* ``slot-walk``: the slot random walk along the image's GLMix dispatch maps (ours, :mod:`.slot_walk`).

Both propagate the class planes by a row-stochastic (averaging) operator, as AFA's PAR refines its
CAMs beside a constant background plane: an averaging operator leaves a constant plane as it is, so
refining the evidence and then comparing it with the background threshold is the same as refining
the stack ``[threshold, evidence]``, and a background-threshold sweep refines each image once.

:func:`get_refinement` builds one from its name and options (validating them); its
:meth:`~Refinement.prepare` gives the :class:`Refiner` of one image: the image's affinities,
computed once. The rules every refinement keeps, here only: planes of classes outside the image's
labels are never propagated and stay 0; the result is clamped to [0, 1], the evidence's range.
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

__all__ = ["REFINEMENTS", "Refinement", "Refiner", "get_refinement", "refinement_option_defaults"]

#: The refinement names, ``none`` first.
REFINEMENTS = ("none", "par", "slot-walk")

Propagate = Callable[[torch.Tensor], torch.Tensor]  # (C, H, W) -> (C, H, W), linear in the planes


def _float32(device: torch.device) -> torch.autocast:
    """No autocast: a caller's reduced inference precision stays out of the refinement's float32 sums."""
    return torch.autocast(device_type=device.type, enabled=False)


def _label_planes(labels: np.ndarray | Sequence[float], classes: int) -> np.ndarray:
    """Indices of the evidence planes a refinement propagates: the image's classes."""
    lab = np.asarray(labels).astype(bool).reshape(-1)
    if lab.size != classes:
        raise ValueError(f"labels must be multi-hot over the {classes} classes, got shape {lab.shape}")
    return np.flatnonzero(lab)


@dataclass(frozen=True)
class Refiner:
    """One image's refinement, ready to apply (``propagate`` None: the identity)."""

    propagate: Propagate | None
    device: torch.device

    def __call__(self, scores: np.ndarray, labels: np.ndarray | Sequence[float]) -> np.ndarray:
        """Refined float32 ``(K, H, W)`` evidence: the image's classes propagated, the others 0."""
        s = np.asarray(scores, dtype=np.float32)
        if s.ndim != 3:
            raise ValueError(f"evidence must be (K, H, W), got shape {s.shape}")
        keep = _label_planes(labels, s.shape[0])
        out = np.zeros_like(s)
        if keep.size == 0:
            return out
        x = torch.from_numpy(np.ascontiguousarray(s[keep])).to(self.device)
        if self.propagate is not None:
            with _float32(self.device):
                x = self.propagate(x)
        out[keep] = x.clamp(0.0, 1.0).cpu().numpy()
        return out


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
        """The :class:`Refiner` of one image's evidence at ``size`` ``(H, W)``: ``image`` is its
        ``(H, W, 3)`` RGB (PAR), ``slots`` the image's scale-1 forward pass (the slot walk)."""
        device = torch.device(device)
        size = (int(size[0]), int(size[1]))
        if isinstance(self.params, PARParams):
            if image is None:
                raise ValueError("par refines along the image's colours: pass the RGB image")
            if tuple(np.shape(image)[:2]) != size:
                raise ValueError(f"the image is {np.shape(image)[:2]} but the evidence is {size}")
            with _float32(device):
                return Refiner(par_operator(image, self.params, device), device)
        if isinstance(self.params, SlotWalkConfig):
            if slots is None:
                raise ValueError("slot-walk walks along the image's slot maps: pass its forward pass (SlotOutput)")
            with _float32(device):
                return Refiner(walk_operator(slots, size, self.params, device), device)
        return Refiner(None, device)

    def __call__(self, scores: np.ndarray, labels: np.ndarray | Sequence[float], *,
                 image: np.ndarray | None = None, slots: SlotOutput | None = None) -> np.ndarray:
        """Refined ``(K, H, W)`` evidence of one image (see the module docstring's rules)."""
        s = np.asarray(scores)
        return self.prepare(size=s.shape[-2:], image=image, slots=slots)(s, labels)

    def __repr__(self) -> str:
        return f"Refinement({self.name!r}, {self.settings()})"


_PARAMS: dict[str, type[PARParams] | type[SlotWalkConfig]] = {"par": PARParams, "slot-walk": SlotWalkConfig}


def refinement_option_defaults(name: str) -> dict[str, Any]:
    """The options refinement ``name`` takes, with their defaults (none for ``none``)."""
    if name not in REFINEMENTS:
        raise ValueError(f"refinement must be one of {', '.join(REFINEMENTS)}; got {name!r}")
    if name == "none":
        return {}
    base = DEFAULT_SLOT_WALK if _PARAMS[name] is SlotWalkConfig else PARParams()
    return {f.name: getattr(base, f.name) for f in fields(base)}


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
