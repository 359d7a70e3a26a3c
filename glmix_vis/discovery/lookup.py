"""An atlas read back: which concept each slot of a new image belongs to.

``atlas.json`` keeps the concept centres; a slot of any image gets the row the atlas was built
from (:func:`~glmix_vis.discovery.atlas.slot_rows`, same block and feature kind) and joins the
nearest centre, as k-means assigned the atlas's own members. The figures and the app use this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..predictor import SlotPredictor
from .atlas import slot_rows

__all__ = ["ATLAS_FILE", "LoadedAtlas", "concept_map", "load_atlas", "slot_concepts"]

ATLAS_FILE = "atlas.json"


@dataclass(frozen=True)
class LoadedAtlas:
    """``atlas.json`` of ``folder`` (its crops are relative to it) and its concept centres."""

    folder: Path
    data: dict[str, Any]
    centroids: np.ndarray

    @property
    def block(self) -> int:
        return int(self.data["block"])

    @property
    def features(self) -> str:
        return str(self.data["config"]["features"])

    def concept(self, c: int) -> dict[str, Any]:
        return self.data["concepts"][c]

    def crops(self, c: int) -> list[tuple[Path, str]]:
        """The concept's typical members as ``(crop file, caption)``."""
        return [(self.folder / e["crop"], f"{e['image_id']}, slot {e['slot']}")
                for e in self.concept(c)["examples"] if e.get("crop")]


def load_atlas(folder: str | Path) -> LoadedAtlas:
    """Read ``folder/atlas.json`` (cached while the file is unchanged); a clear ``ValueError`` if it
    is missing or was written without concept centres."""
    path = Path(folder).expanduser() / ATLAS_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no atlas here (write one with glmix-vis atlas --out {Path(folder)})")
    return _read(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _read(path: Path, mtime: int) -> LoadedAtlas:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        centroids = np.asarray(data["centroids"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not an atlas with concept centres ({exc})") from exc
    return LoadedAtlas(path.parent, data, centroids)


def slot_concepts(predictor: SlotPredictor, atlas: LoadedAtlas) -> tuple[dict[int, int], np.ndarray]:
    """``({slot: concept}, (H, W) hard slots)`` of the atlas's block for the image set in ``predictor``."""
    used, rows, hard, _ = slot_rows(predictor, atlas.block, atlas.features)
    if rows.shape[1] != atlas.centroids.shape[1]:
        raise ValueError(f"this atlas was built on {atlas.centroids.shape[1]}-dimensional rows; this model gives "
                         f"{rows.shape[1]}: load it with the model it was built with ({atlas.data.get('model')})")
    distance = ((rows[:, None, :] - atlas.centroids[None]) ** 2).sum(-1)
    return dict(zip(used.tolist(), distance.argmin(1).tolist())), hard


def concept_map(predictor: SlotPredictor, atlas: LoadedAtlas) -> np.ndarray:
    """``(H, W)`` the concept of every pixel's slot, at the image's size."""
    assignment, hard = slot_concepts(predictor, atlas)
    table = np.zeros(int(hard.max()) + 1, dtype=np.int64)
    table[list(assignment)] = list(assignment.values())
    return table[hard]
