"""The web demo: upload or pick an image and see what every GLMix block did with it.

* :mod:`.settings`: the defaults (host, port, upload limits, view sizes), importable without
  gradio: ``glmix-vis app``'s parser reads them from here;
* :mod:`.serving`: what a visitor may load, gallery files, glibc heap settings, gradio's queue
  and launch options;
* :mod:`.file_cache`: gradio's copies of visitors' files, bounded in number and size
  (:class:`VisitorFileCache`);
* :mod:`.model_cache`: the models served, loaded once per checkpoint, with the evidence methods
  that serve each (the rule ``glmix-wsss eval`` applies);
* :mod:`.views`: one image through one model (:class:`Analysis`) and the pictures each tab shows
  of it, drawn by :mod:`glmix_vis.figures`;
* :mod:`.messages`: every sentence a visitor reads, errors as one line (:class:`AppError`);
* :mod:`.backend`: the callbacks on plain values (:class:`SlotApp`), no gradio; the model work is
  :class:`glmix_vis.predictor.SlotPredictor`'s;
* :mod:`.page`: the Gradio page, one function per tab and the :data:`TABS` table it iterates (a
  new tab is one tab function and one entry), and :func:`launch` (a taken port or an unusable
  checkpoint is a one-line :class:`ServeError`).

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
    "SlotApp": "backend", "AppError": "messages", "Analysis": "views",
    **dict.fromkeys(("LoadedModel", "ModelCache", "describe_model"), "model_cache"),
    **dict.fromkeys(("ARENA_MAX", "MMAP_THRESHOLD", "SCRATCH_PREFIX", "PictureFiles", "ServeError", "ServerScratch",
                     "address_problem",
                     "discover_checkpoints", "encode_jpeg", "example_files", "launch_options",
                     "limit_heap_fragmentation", "queue_options"), "serving"),
    "VisitorFileCache": "file_cache",
    **dict.fromkeys(("INTRO", "UploadImage", "build_app", "class_colors", "colorbar_html", "launch"), "page"),
}

__all__ = [*settings.__all__, *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
