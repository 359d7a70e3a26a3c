"""glmix-vis: slot assignment maps, weakly-supervised segmentation and figures for GLNet (GLMix).

The public names load their module (and torch) on first use (PEP 562), so ``import glmix_vis``
and every command's argument parsing stay light. ``import glmix_vis.models`` (or the first use of
a model name here) registers the GLNet family in timm.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the submodule that defines it (imported on first access).
_LAZY = {
    **dict.fromkeys(("GLNet", "SlotMap", "SlotOutput", "create_model", "load_checkpoint", "read_checkpoint_meta",
                     "detect_variant", "resolve_checkpoint", "CheckpointError"), "models"),
    **dict.fromkeys(("ModelInfo", "load_model"), "loading"),
    "SlotPredictor": "predictor",
    "gradcam_targets": "wsss.evidence.grad_cam",
}

__all__ = ["GLNet", "SlotMap", "SlotOutput", "create_model", "load_checkpoint", "read_checkpoint_meta",
           "detect_variant", "resolve_checkpoint", "CheckpointError", "ModelInfo", "load_model", "SlotPredictor",
           "gradcam_targets", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
