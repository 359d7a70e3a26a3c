"""The models the web app serves: loaded once per checkpoint file and kept in a small LRU, each with
what the page needs to know about it (blocks, slot counts, the evidence methods that serve it).

Which evidence methods serve a model is :func:`glmix_vis.wsss.evidence.usable.usable_methods`'s
rule, the one ``glmix-wsss eval`` applies; its blank forward pass goes through the network runner
in the model's precision, as every other forward pass of the app does.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch

from ..devices import inference_precision
from ..loading import ModelInfo, load_model
from ..models.slots import block_label
from .settings import DEFAULT_DEVICE, MODEL_CACHE_SIZE

__all__ = ["LRU", "LoadedModel", "ModelCache", "describe_model"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used map."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with what the UI needs to know about it."""

    model: torch.nn.Module
    info: ModelInfo
    block_names: list[str]
    num_slots: list[int]
    evidence_methods: list[str]
    #: What a person reads for each block (:func:`glmix_vis.models.slots.block_label`).
    block_labels: list[str] = field(default_factory=list)
    #: The same with each block's module path: ``"block 3 (stage 3) = stages.2.blocks.2"``.
    block_labels_with_path: list[str] = field(default_factory=list)

    @property
    def has_classifier(self) -> bool:
        return bool(self.evidence_methods)


def describe_model(model: torch.nn.Module, info: ModelInfo) -> LoadedModel:
    """Block names, slot counts and the evidence methods that serve the model, from one blank
    forward pass in the model's precision (a head with named classes is needed for any method)."""
    from ..wsss.evidence import available_evidence_methods
    from ..wsss.evidence.usable import probe_slots, usable_methods

    with inference_precision(info.precision):
        probe = probe_slots(model)
        methods = []
        if getattr(model, "num_classes", 0) > 0 and len(info.class_names) > 1:
            methods = usable_methods(model, available_evidence_methods(), class_map=info.class_map, probe=probe)
    return LoadedModel(model, info, [m.name for m in probe.maps], [m.num_slots for m in probe.maps], methods,
                       [block_label(i, m) for i, m in enumerate(probe.maps)],
                       [block_label(i, m, with_path=True) for i, m in enumerate(probe.maps)])


class ModelCache:
    """Models by checkpoint file, loaded on first use and kept in a small LRU (a changed file
    is a new entry); one load at a time, so a burst of requests loads a model once."""

    def __init__(self, capacity: int = MODEL_CACHE_SIZE, device: str | torch.device = DEFAULT_DEVICE,
                 loader: Callable[..., tuple[torch.nn.Module, ModelInfo]] = load_model,
                 precision: str | None = None) -> None:
        self._lru: LRU[tuple[str, int, int], LoadedModel] = LRU(capacity)
        self._load_lock = threading.Lock()
        self.device = device
        self.loader = loader
        #: ``--precision`` for every model loaded (None: the loader's default); kept in ``ModelInfo.precision``.
        self.precision = precision

    def get(self, path: str | os.PathLike[str]) -> LoadedModel:
        """The model stored in ``path`` (loaded now if it is not cached)."""
        p = Path(path).resolve()
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        cached = self._lru.get(key)
        if cached is not None:
            return cached
        with self._load_lock:
            cached = self._lru.get(key)
            if cached is None:
                extra = {} if self.precision is None else {"precision": self.precision}
                model, info = self.loader(p, device=self.device, **extra)
                cached = describe_model(model, info)
                self._lru.put(key, cached)
        return cached

    def __len__(self) -> int:
        return len(self._lru)
