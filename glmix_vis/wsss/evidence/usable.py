"""Which evidence methods can serve a model: the one rule that ``glmix-wsss eval`` (before it
creates its output folder) and the web app (when it lists a model's methods) both apply.

A method serves a model when :meth:`EvidenceMethod.check` accepts the model's forward pass of a
small blank image (:func:`probe_slots`, run through the network runner in the caller's precision):
``token`` needs a token-labeling head, a method option may name a GLMix block the model lacks, ...

>>> usable_methods(model, available_evidence_methods(), class_map=info.class_map)
['cam', 'eigencam', ..., 'slot-cam', 'xgradcam']
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from ...models.slots import SlotOutput, run_slots
from .base import ClassMap, EvidenceMethod, get_evidence_method

__all__ = ["PROBE_SIDE", "REFUSALS", "check_method", "probe_slots", "usable_methods"]

#: Side of the blank probe image: small enough to cost nothing, large enough for every GLMix block.
PROBE_SIDE = 64
#: What a method's check raises when it cannot serve a model (anything else is a bug, not a refusal).
REFUSALS = (ValueError, RuntimeError, KeyError, TypeError, AttributeError)


@torch.no_grad()
def probe_slots(model: nn.Module) -> SlotOutput:
    """The model's forward pass of a blank ``PROBE_SIDE`` image through the network runner (in the
    enclosing :func:`~glmix_vis.devices.inference_precision`), on the model's device."""
    device = next(model.parameters()).device
    return run_slots(model, torch.zeros(1, 3, PROBE_SIDE, PROBE_SIDE, device=device))


def check_method(model: nn.Module, method: EvidenceMethod, probe: SlotOutput | None = None) -> None:
    """Raise (one of :data:`REFUSALS`, with the reason) unless ``method`` can serve ``model``;
    ``probe`` is :func:`probe_slots`'s pass when the caller has it already."""
    method.check(model, probe if probe is not None else probe_slots(model))


def usable_methods(model: nn.Module, names: Iterable[str], *, class_map: ClassMap | None = None,
                   probe: SlotOutput | None = None) -> list[str]:
    """The ``names`` (in their order) whose evidence method, built with ``class_map``, can serve
    ``model``; one probe pass serves every check."""
    probe = probe if probe is not None else probe_slots(model)
    usable = []
    for name in names:
        try:
            check_method(model, get_evidence_method(name, class_map=class_map), probe)
        except REFUSALS:
            continue
        usable.append(name)
    return usable
