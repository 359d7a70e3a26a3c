"""Which registered GLNet variant a state dict is: key/shape signatures and detection.

Apart from :mod:`.checkpoints` (file I/O) so that reading files never needs the model file, and
apart from :mod:`.glnet` so that nothing imports back into the model file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import torch

from .checkpoints import Checkpoint, CheckpointError, Detection, compare_signature, shape_of, strip_prefixes
from .glnet import MODEL_CONFIGS, GLNet

__all__ = ["variant_signature", "variant_buffers", "detect_variant", "checkpoint_variant"]


@cache
def _variant_layout(name: str) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], frozenset[str]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = GLNet(**MODEL_CONFIGS[name])
    signature = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return signature, frozenset(k for k, _ in model.named_buffers())


def variant_signature(name: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a registered variant's state dict (1000-class head)."""
    return dict(_variant_layout(name)[0])


def variant_buffers(name: str) -> frozenset[str]:
    """State-dict keys of a variant that are buffers (BatchNorm statistics, ``slot_scale``), not parameters."""
    return _variant_layout(name)[1]


def detect_variant(state_dict: Mapping[str, Any], *, require_exact: bool = True,
                   candidates: Iterable[str] | None = None) -> Detection:
    """Which registered GLNet variant a state dict (tensors or shapes) belongs to, by key/shape signature.

    The classifier's class count is ignored (fine-tuned heads still match) and reported as
    ``num_classes``. With ``require_exact`` a state dict that fits no variant raises
    :class:`CheckpointError` naming the closest variant and the keys that differ.
    """
    given = {k: shape_of(v) for k, v in strip_prefixes(state_dict).items()}
    names = list(candidates) if candidates is not None else list(MODEL_CONFIGS)
    if not names:
        raise ValueError("no candidate variants")
    results = [compare_signature(given, variant_signature(n), n) for n in names]
    best = max(results, key=lambda d: d.score)  # first (official) variant wins ties
    if require_exact and not best.exact:
        raise CheckpointError(f"the weights fit no known GLNet variant; closest is {best.name} "
                              f"({best.score:.0%} of keys agree): {best.describe_differences()}")
    return best


def checkpoint_variant(ckpt: Checkpoint) -> str:
    """The variant a checkpoint was saved from: its metadata (or saved config) if that names a
    registered variant, else the variant its weights fit exactly."""
    named = ckpt.meta.get("model")
    if isinstance(named, str) and named in MODEL_CONFIGS:
        return named
    _, state_dict = ckpt.select()
    return detect_variant(state_dict).name
