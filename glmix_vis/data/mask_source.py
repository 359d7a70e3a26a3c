"""Where a segmenter's training masks come from: a dataset's own masks, or a folder of pseudo-masks.

A pseudo-mask folder is what ``glmix-wsss eval`` writes (``OUT/masks``: one palette PNG per image,
``<image_id>.png``, class indices of the dataset, 255 where a pixel is not to be learnt), for the
generated scenes, VOC (``train``, ``train_aug``) and COCO alike, read with no conversion.
:meth:`MaskSource.validate` checks the whole folder before anything trains: every image of the
split has its mask, every mask has its image's size and holds only the dataset's class indices
(or 255). Every problem is listed at once, naming the files, in one :class:`~.base.DatasetError`.

``OUT/settings.json`` beside the folder (eval's record of how the masks were made) is read as
their provenance, which the segmenter's checkpoint records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import MAX_LISTED_PROBLEMS, DatasetError, SegmentationDataset
from .palette import load_palette_png

__all__ = ["GROUND_TRUTH", "MaskSource"]

#: ``--masks gt``: the dataset's own masks (full supervision, the upper bound of stage 2).
GROUND_TRUTH = "gt"


@dataclass(frozen=True)
class MaskSource:
    """The training masks of ``dataset``: its own (``folder=None``) or the PNGs in ``folder``."""

    dataset: SegmentationDataset
    folder: Path | None = None

    @classmethod
    def open(cls, dataset: SegmentationDataset, masks: str | Path) -> MaskSource:
        """``masks``: :data:`GROUND_TRUTH` or a folder of ``<image_id>.png`` (a missing folder is a ``ValueError``)."""
        if str(masks) == GROUND_TRUTH:
            if not dataset.has_masks:
                raise ValueError(f"{dataset.root} split {dataset.split!r} has no ground-truth masks to train on")
            return cls(dataset)
        folder = Path(masks)
        if not folder.is_dir():
            raise ValueError(f"--masks {folder}: no such folder (give eval's OUT/masks, or 'gt')")
        return cls(dataset, folder)

    @property
    def is_ground_truth(self) -> bool:
        return self.folder is None

    def path(self, i: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{self.dataset.image_ids[i]}.png"

    def load_mask(self, i: int) -> np.ndarray:
        """``(H, W)`` uint8 class indices of image ``i`` (255: not learnt)."""
        if self.folder is None:
            mask = self.dataset.load_mask(i)
            assert mask is not None
            return mask
        return load_palette_png(self.path(i))

    def _problem(self, i: int, num_classes: int, ignore: int) -> str | None:
        path = self.path(i)
        if not path.is_file():
            return f"{path}: missing (no mask for image {self.dataset.image_ids[i]})"
        try:
            mask = load_palette_png(path)
        except ValueError as exc:
            return str(exc)
        try:
            height, width = self.dataset.image_size(i)
        except (OSError, ValueError) as exc:
            return str(exc)
        if mask.shape != (height, width):
            return f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height}"
        values = np.unique(mask)
        bad = values[(values >= num_classes) & (values != ignore)]
        if bad.size:
            return (f"{path}: class indices {', '.join(map(str, bad[:5].tolist()))} outside the dataset's "
                    f"0..{num_classes - 1} (255 ignored)")
        return None

    def validate(self, limit: int | None = None) -> None:
        """Check every mask of the split (or of its first ``limit`` images) against its image; a
        :class:`DatasetError` listing every bad file at once. The dataset's own masks are checked by
        :meth:`SegmentationDataset.validate`."""
        count = len(self.dataset) if limit is None else min(limit, len(self.dataset))
        if self.folder is None:
            self.dataset.validate(progress=False, indices=range(count))
            return
        num_classes, ignore = len(self.dataset.class_names), self.dataset.ignore_index
        problems = [p for p in (self._problem(i, num_classes, ignore) for i in range(count)) if p]
        if problems:
            shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
            more = f"; and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
            raise DatasetError(f"--masks {self.folder}: {len(problems)} of {count} masks unusable for "
                               f"{self.dataset.split!r}: {shown}{more}")

    def provenance(self) -> dict[str, Any]:
        """Where the masks came from, as the segmenter's checkpoint records it: the folder and the
        settings eval recorded beside it (``settings.json``), or the dataset's own masks."""
        if self.folder is None:
            return dict(source=GROUND_TRUTH, root=str(self.dataset.root), split=self.dataset.split)
        record: dict[str, Any] = dict(source="folder", folder=str(self.folder.resolve()))
        settings = self.folder.parent / "settings.json"
        if settings.is_file():
            try:
                record["eval_settings"] = json.loads(settings.read_text())
            except (OSError, ValueError):
                record["eval_settings"] = None
        return record
