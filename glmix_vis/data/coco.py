"""MS-COCO 2014 as a semantic segmentation dataset (81 classes), read with pycocotools.

Layout: ``ROOT/annotations/instances_{train,val}2014.json`` and ``ROOT/{train,val}2014/<file_name>``.
Class 0 is background, classes 1..80 are the JSON's categories in category-id order.

Semantic masks are painted from instance annotations: crowd regions first as 255 (ignore),
then instances in order of *decreasing* area, so where instances overlap the smaller one
wins (small objects inside large ones stay visible). Image-level labels are the categories
of all annotations in the image, crowd ones included.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base import DatasetError, SegmentationDataset
from .palette import voc_palette

__all__ = ["COCODataset"]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: COCO annotation file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read COCO annotations ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing list {key!r}")
    if not data["categories"]:
        raise DatasetError(f"{path}: no categories")
    return data


def _available_splits(root: Path, year: int) -> list[str]:
    """Splits with an ``instances_<split><year>.json`` in ``root/annotations``."""
    suffix = f"{year}.json"
    files = (root / "annotations").glob(f"instances_?*{suffix}")
    return sorted(p.name.removeprefix("instances_").removesuffix(suffix) for p in files)


def _refuse_shared_stems(annotation_file: Path, names: list[str], stems: list[str]) -> None:
    """One line naming the files whose names share a stem: the image id, so they would share one
    mask file (and one another's results) in an eval output folder."""
    groups: dict[str, list[str]] = {}
    for name, stem in zip(names, stems):
        groups.setdefault(stem, []).append(name)
    shared = [files for files in groups.values() if len(files) > 1]
    if shared:
        more = f" (and {len(shared) - 1} more such group(s))" if len(shared) > 1 else ""
        raise DatasetError(f"{annotation_file}: images {', '.join(shared[0])} share the name "
                           f"{Path(shared[0][0]).stem!r}, so they would share one mask file{more}; "
                           "give every image a distinct file name")


class COCODataset(SegmentationDataset):
    """COCO ``split`` ("train" or "val") of ``year`` as 81-class semantic segmentation."""

    def __init__(self, root: str | Path, split: str = "train", year: int = 2014) -> None:
        from pycocotools.coco import COCO

        self.root = Path(root).expanduser()
        self.split = split
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root folder not found")
        self.annotation_file = self.root / "annotations" / f"instances_{split}{year}.json"
        self.image_dir = self.root / f"{split}{year}"
        if not self.annotation_file.is_file():
            available = ", ".join(_available_splits(self.root, year)) or "none"
            raise DatasetError(f"{self.annotation_file}: COCO annotation file not found for split {split!r}; "
                               f"available splits: {available}")
        data = _read_json(self.annotation_file)
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.image_dir}: COCO image folder not found")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO()
            self.coco.dataset = data
            try:
                self.coco.createIndex()
            except (KeyError, TypeError) as exc:
                raise DatasetError(f"{self.annotation_file}: malformed COCO annotations ({exc!r})") from exc
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in cats]
        self.class_names = ["background", *(str(c["name"]) for c in cats)]
        if len(self.class_names) > 255:
            raise DatasetError(f"{self.annotation_file}: {len(cats)} categories do not fit 8-bit masks")
        self._cat_to_index = {cid: k for k, cid in enumerate(self.category_ids, start=1)}
        for ann in data["annotations"]:
            if ann.get("category_id") not in self._cat_to_index:
                raise DatasetError(
                    f"{self.annotation_file}: annotation {ann.get('id')} has unknown category_id "
                    f"{ann.get('category_id')!r}"
                )
            if ann.get("image_id") not in self.coco.imgs:
                raise DatasetError(
                    f"{self.annotation_file}: annotation {ann.get('id')} refers to unknown image_id "
                    f"{ann.get('image_id')!r}"
                )
        self.palette = voc_palette()
        self._coco_ids = sorted(self.coco.imgs)
        if not self._coco_ids:
            raise DatasetError(f"{self.annotation_file}: no images (its 'images' list is empty)")
        names = [str(self.coco.imgs[i].get("file_name", "")) for i in self._coco_ids]
        self.image_ids = [Path(name).stem for name in names]
        _refuse_shared_stems(self.annotation_file, names, self.image_ids)

    def image_path(self, i: int) -> Path:
        return self.image_dir / self.coco.imgs[self._coco_ids[self._index(i)]]["file_name"]

    def mask_size(self, i: int) -> tuple[int, int]:
        """The size the annotation file records: the masks are painted at it."""
        info = self.coco.imgs[self._coco_ids[self._index(i)]]
        try:
            return int(info["height"]), int(info["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{self.annotation_file}: image {info.get('id')!r} has no valid height and "
                               f"width ({exc!r})") from None

    def describe_mask(self, i: int) -> str:
        return f"its mask (the size {self.annotation_file.name} records)"

    def _annotations(self, i: int) -> list[dict[str, Any]]:
        return self.coco.imgToAnns.get(self._coco_ids[self._index(i)], [])

    has_instances = True

    def _paint(self, i: int, things_value: Callable[[int, dict[str, Any]], int]) -> np.ndarray:
        """Crowd regions first as 255, then the other annotations by decreasing area (the smaller
        one wins where they overlap), each painted ``things_value(k, annotation)``; ``k`` counts the
        non-crowd annotations from 1 in the file's order."""
        mask = np.zeros(self.mask_size(i), dtype=np.uint8)
        anns = self._annotations(i)
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        things = [(k, a) for k, a in enumerate((a for a in anns if not a.get("iscrowd", 0)), start=1)]
        things.sort(key=lambda ka: -float(ka[1].get("area", 0.0)))
        for k, ann in [*((0, a) for a in crowd), *things]:
            try:
                with warnings.catch_warnings():  # pycocotools' numpy-2 copy= DeprecationWarning is noise
                    warnings.simplefilter("ignore", DeprecationWarning)
                    region = self.coco.annToMask(ann).astype(bool)
            except Exception as exc:  # pycocotools raises assorted types on bad polygons/RLE
                raise DatasetError(
                    f"{self.annotation_file}: annotation {ann.get('id')} has an unreadable segmentation ({exc!r})"
                ) from exc
            mask[region] = 255 if ann.get("iscrowd", 0) else things_value(k, ann)
        return mask

    def load_mask(self, i: int) -> np.ndarray:
        return self._paint(i, lambda k, ann: self._cat_to_index[ann["category_id"]])

    def load_instances(self, i: int) -> np.ndarray:
        """Instance ``k`` = the ``k``-th non-crowd annotation of the image; crowds are void (255)."""
        count = sum(1 for a in self._annotations(i) if not a.get("iscrowd", 0))
        if count > 254:
            raise DatasetError(f"{self.annotation_file}: image {self.image_ids[self._index(i)]} has {count} "
                               f"instances, more than an 8-bit instance mask holds (254)")
        return self._paint(i, lambda k, ann: k)

    def image_labels(self, i: int) -> np.ndarray:
        labels = np.zeros(self.num_classes - 1, dtype=np.float32)
        for ann in self._annotations(i):
            labels[self._cat_to_index[ann["category_id"]] - 1] = 1.0
        return labels
