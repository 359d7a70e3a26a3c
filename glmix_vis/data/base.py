"""The dataset interface every segmentation dataset (VOC, COCO, generated scenes) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..io import ImageLoadError, load_image

__all__ = ["IGNORE_INDEX", "DatasetError", "Sample", "SegmentationDataset"]

IGNORE_INDEX = 255


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


@dataclass
class Sample:
    """One image with its segmentation and image-level labels.

    ``labels`` is multi-hot over the foreground classes only: ``labels[k]`` is class ``k + 1``.
    """

    image_id: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray | None  # (H, W) uint8 class indices, 255 = ignore; None when the split has no masks
    labels: np.ndarray  # (num_classes - 1,) float32 multi-hot over foreground classes


class SegmentationDataset(ABC):
    """Indexable collection of :class:`Sample`; index 0 of ``class_names`` is ``"background"``.

    Subclasses set ``class_names``, ``palette``, ``image_ids``, ``root`` and ``split`` and
    implement the three per-image loaders. Files are checked when accessed;
    :meth:`validate` checks them all up front.
    """

    class_names: list[str]
    palette: np.ndarray  # (256, 3) uint8
    ignore_index: int = IGNORE_INDEX
    image_ids: list[str]
    root: Path
    split: str
    has_masks: bool = True

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names)

    @property
    def foreground_names(self) -> list[str]:
        """Class names matching the entries of ``Sample.labels``."""
        return self.class_names[1:]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _index(self, i: int) -> int:
        n = len(self.image_ids)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        return i % n

    @abstractmethod
    def image_path(self, i: int) -> Path:
        """The file of image ``i``."""

    def load_image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB image ``i``; a missing or unreadable file raises :class:`DatasetError`."""
        path = self.image_path(i)
        if not path.is_file():
            raise DatasetError(f"{path}: image file not found")
        try:
            return load_image(path)
        except ImageLoadError as exc:
            raise DatasetError(str(exc)) from exc

    @abstractmethod
    def load_mask(self, i: int) -> np.ndarray | None:
        """(H, W) uint8 label map of image ``i`` (255 = ignore), or None when the split has no masks."""

    @abstractmethod
    def image_labels(self, i: int) -> np.ndarray:
        """(num_classes - 1,) float32 multi-hot foreground labels of image ``i``."""

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        image = self.load_image(i)
        mask = self.load_mask(i)
        if mask is not None and mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{self.describe_image(i)}: mask shape {mask.shape} does not match image shape {image.shape[:2]}"
            )
        return Sample(self.image_ids[i], image, mask, self.image_labels(i))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def describe_image(self, i: int) -> str:
        """A human-readable pointer to image ``i`` for error messages: its path."""
        return str(self.image_path(i))

    def labels_from_indices(self, indices: np.ndarray) -> np.ndarray:
        """Multi-hot foreground vector from an array of class indices (0 and 255 are ignored)."""
        labels = np.zeros(self.num_classes - 1, dtype=np.float32)
        values = np.unique(indices)
        values = values[(values > 0) & (values < self.num_classes)]
        labels[values.astype(np.int64) - 1] = 1.0
        return labels

    def check_mask_values(self, mask: np.ndarray, where: str) -> np.ndarray:
        """Raise a :class:`DatasetError` naming ``where`` if ``mask`` holds values outside the classes and 255."""
        values = np.unique(mask)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            raise DatasetError(
                f"{where}: mask has values {bad.tolist()} outside the {self.num_classes} classes "
                f"(0..{self.num_classes - 1}) and the ignore label {self.ignore_index}"
            )
        return mask

    def validate(self, progress: bool = True, raise_errors: bool = True) -> list[str]:
        """Load every image, mask and label set; report all problems at once.

        Returns the list of problems (empty when the dataset is sound); with ``raise_errors``
        a non-empty list is raised as one :class:`DatasetError`.
        """
        problems: list[str] = []
        for i in tqdm(range(len(self)), desc=f"validating {self.split}", disable=not progress, unit="img"):
            try:
                self[i]
            except (OSError, ValueError) as exc:
                problems.append(str(exc))
        if problems and raise_errors:
            head = f"{len(problems)} problem(s) in {self.root} split {self.split!r}:"
            raise DatasetError("\n".join([head, *(f"  {p}" for p in problems)]))
        return problems
