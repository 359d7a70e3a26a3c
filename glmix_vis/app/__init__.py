"""The web demo: upload or pick an image and see what every GLMix block did with it.

* :mod:`.settings`: the defaults (host, port, upload limits, view sizes), importable without
  gradio: ``glmix-vis app``'s parser reads them from here;
* :mod:`.serving`: what a visitor may load, gallery files, glibc heap settings, gradio's queue
  and launch options;
* :mod:`.backend`: the callbacks on plain values (:class:`SlotApp`), the model cache and the
  per-image :class:`Analysis`; the model work is :class:`glmix_vis.predictor.SlotPredictor`'s and
  every picture is drawn by :mod:`glmix_vis.figures`;
* :mod:`.page`: the Gradio layout and :func:`launch`.

Only the settings are imported with this package; the other names load their module (and torch,
gradio) on first use, so ``import glmix_vis.app.settings`` never imports gradio.

>>> from glmix_vis.app import launch
>>> launch()                       # http://127.0.0.1:7860 on the bundled demo model
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .settings import (  # gradio-free: the only names imported with the package
    CHECKPOINT_SUFFIXES,
    DEFAULT_CONCURRENCY,
    DEFAULT_DEVICE,
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SIDE,
    DEFAULT_METHOD,
    DEFAULT_PORT,
    DEFAULT_QUEUE_SIZE,
    DEMO_LABEL,
    EXAMPLE_PHOTOS,
    INPUT_SIZES,
    JPEG_QUALITY,
    MAX_EVIDENCE_PANELS,
    MAX_FIGURES,
    MIN_DISPLAY_SIDE,
    MODEL_CACHE_SIZE,
    RESULT_CACHE_SIZE,
    SOFT_SIDE,
    TAB_CLASSES,
    TAB_SLOTS,
    TAB_SOFT,
)

if TYPE_CHECKING:
    from ..loading import ModelInfo as ModelInfo
    from ..loading import load_model as load_model
    from ..predictor import SlotPredictor as SlotPredictor
    from .backend import Analysis, AppError, LoadedModel, ModelCache, SlotApp, default_blocks, describe_model
    from .page import INTRO, UploadImage, build_app, class_colors, launch
    from .serving import (
        ARENA_MAX,
        MMAP_THRESHOLD,
        PictureFiles,
        discover_checkpoints,
        encode_jpeg,
        example_files,
        launch_options,
        limit_heap_fragmentation,
        queue_options,
    )

#: Public name -> the submodule that defines it (imported on first access).
_LAZY = {
    **dict.fromkeys(("Analysis", "AppError", "LoadedModel", "ModelCache", "SlotApp", "default_blocks",
                     "describe_model"), "backend"),
    **dict.fromkeys(("ARENA_MAX", "MMAP_THRESHOLD", "PictureFiles", "discover_checkpoints", "encode_jpeg", "example_files", "launch_options",
                     "limit_heap_fragmentation", "queue_options"), "serving"),
    **dict.fromkeys(("INTRO", "UploadImage", "build_app", "class_colors", "launch"), "page"),
}
#: Re-exported for code written against the single-module app (not part of ``__all__``).
_COMPAT = {"ModelInfo": "glmix_vis.loading", "load_model": "glmix_vis.loading",
           "SlotPredictor": "glmix_vis.predictor"}

__all__ = [
    # settings
    "CHECKPOINT_SUFFIXES", "DEFAULT_CONCURRENCY", "DEFAULT_DEVICE", "DEFAULT_HOST", "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_SESSIONS", "DEFAULT_MAX_SIDE", "DEFAULT_METHOD", "DEFAULT_PORT",
    "DEFAULT_QUEUE_SIZE", "DEMO_LABEL", "EXAMPLE_PHOTOS", "INPUT_SIZES", "JPEG_QUALITY", "MAX_EVIDENCE_PANELS",
    "MAX_FIGURES", "MIN_DISPLAY_SIDE", "MODEL_CACHE_SIZE", "RESULT_CACHE_SIZE", "SOFT_SIDE", "TAB_CLASSES",
    "TAB_SLOTS", "TAB_SOFT",
    # backend
    "Analysis", "AppError", "LoadedModel", "ModelCache", "SlotApp", "default_blocks", "describe_model",
    # serving
    "ARENA_MAX", "MMAP_THRESHOLD", "PictureFiles", "discover_checkpoints", "encode_jpeg", "example_files", "launch_options",
    "limit_heap_fragmentation", "queue_options",
    # page
    "INTRO", "UploadImage", "build_app", "class_colors", "launch",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
    elif name in _COMPAT:
        module = importlib.import_module(_COMPAT[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_COMPAT})
