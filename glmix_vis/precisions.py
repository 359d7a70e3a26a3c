"""The precision names, importable without torch (argument parsers read them before anything runs);
:mod:`glmix_vis.devices` owns what they mean."""

from __future__ import annotations

__all__ = ["DEFAULT_PRECISION", "PRECISIONS"]

#: The names ``--precision`` takes.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The precision every command and ``load_model`` use unless told otherwise (the one place to change it).
DEFAULT_PRECISION = "fp32"
