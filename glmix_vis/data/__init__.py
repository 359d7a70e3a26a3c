"""Segmentation datasets (PASCAL VOC, COCO-2014, generated scenes) behind one interface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import IGNORE_INDEX, DatasetError, Sample, SegmentationDataset
from .labels import LabelSpace
from .palette import load_palette_png, save_palette_png, voc_palette
from .voc import VOC_CLASSES, VOCDataset

__all__ = [
    "DATASETS",
    "DATASET_FORMATS",
    "DEFAULT_DATASET_FORMAT",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "DatasetError",
    "LabelSpace",
    "Sample",
    "SegmentationDataset",
    "VOCDataset",
    "dataset_title",
    "load_palette_png",
    "open_dataset",
    "save_palette_png",
    "voc_palette",
]

#: The format a command reads when none is named: the generated scenes are written in the VOC layout.
DEFAULT_DATASET_FORMAT = "voc"
#: The formats a user names (``--dataset``); the command-line parsers read them from this source.
DATASET_FORMATS = (DEFAULT_DATASET_FORMAT, "coco")
#: Every name :func:`open_dataset` takes: the formats, and "scenes" (the VOC reader that insists on
#: the generator's ``classes.json``).
DATASETS = (*DATASET_FORMATS, "scenes")


def open_dataset(name: str, root: str | Path | None, split: str, **kw: Any) -> SegmentationDataset:
    """Open dataset ``name`` ("voc", "coco" or "scenes") at ``root`` for ``split``.

    "scenes" is the VOC reader over a folder written by ``glmix-wsss make-data`` (it insists on
    the generator's ``classes.json``); "voc" reads such a folder too. ``root=None`` falls back to
    ``$GLMIX_VOC_ROOT`` / ``$GLMIX_COCO_ROOT`` / ``$GLMIX_SCENES_ROOT``. Extra keywords go to the
    dataset class.
    """
    if root is None:
        env = f"GLMIX_{name.upper()}_ROOT"
        root = os.environ.get(env)
        if not root:
            raise ValueError(f"dataset {name!r}: no root folder given (pass one or set ${env})")
    if name == "voc":
        return VOCDataset(root, split, **kw)
    if name == "scenes":
        return VOCDataset(root, split, require_metadata=True, **kw)
    if name == "coco":
        from .coco import COCODataset

        return COCODataset(root, split, **kw)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def dataset_title(kind: str, dataset: SegmentationDataset) -> str:
    """How a report names the data: generated scenes (a VOC-layout folder ``make-data`` wrote, with
    its ``classes.json``) are not PASCAL VOC."""
    from .voc import METADATA_FILE

    voc_dir = getattr(dataset, "voc_dir", None)
    if kind in ("voc", "scenes") and voc_dir is not None and (Path(voc_dir) / METADATA_FILE).is_file():
        return "generated scenes"
    return {"voc": "PASCAL VOC 2012", "coco": "COCO"}.get(kind, kind)
