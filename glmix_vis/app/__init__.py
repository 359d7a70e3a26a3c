"""The web demo: upload or pick an image and see what every GLMix block did with it.

* :mod:`.settings`: the defaults (host, port, upload limits, view sizes), importable without
  gradio: ``glmix-vis app``'s parser reads them from here;
* :mod:`.serving`: what a visitor may load, gallery files, glibc heap settings, gradio's queue
  and launch options;
* :mod:`.backend`: the callbacks on plain values (:class:`SlotApp`), the model cache and the
  per-image :class:`Analysis`; the model work is :class:`glmix_vis.predictor.SlotPredictor`'s and
  every picture is drawn by :mod:`glmix_vis.figures`;
* :mod:`.page`: the Gradio layout and :func:`launch` (a taken port or an unusable checkpoint is
  a one-line :class:`ServeError`).

Only the settings are imported with this package; the other names load their module (and torch,
gradio) on first use, so ``import glmix_vis.app.settings`` never imports gradio.

>>> from glmix_vis.app import launch
>>> launch()                       # http://127.0.0.1:7860 on the bundled demo model
"""

from __future__ import annotations

import importlib
from typing import Any

from . import settings
from .settings import *  # noqa: F403  the gradio-free defaults, the only names imported with the package

#: Public name -> the submodule that defines it (imported on first access).
_LAZY = {
    **dict.fromkeys(("Analysis", "AppError", "LoadedModel", "ModelCache", "SlotApp", "default_blocks",
                     "describe_model"), "backend"),
    **dict.fromkeys(("ARENA_MAX", "MMAP_THRESHOLD", "SCRATCH_PREFIX", "PictureFiles", "ServeError", "ServerScratch",
                     "address_problem",
                     "discover_checkpoints", "encode_jpeg", "example_files", "launch_options",
                     "limit_heap_fragmentation", "queue_options"), "serving"),
    **dict.fromkeys(("INTRO", "UploadImage", "build_app", "class_colors", "colorbar_html", "launch"), "page"),
}
#: Re-exported for code written against the single-module app (not part of ``__all__``).
_COMPAT = {"ModelInfo": "glmix_vis.loading", "load_model": "glmix_vis.loading",
           "SlotPredictor": "glmix_vis.predictor"}

__all__ = [*settings.__all__, *_LAZY]


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
