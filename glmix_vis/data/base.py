"""The dataset interface every segmentation dataset (VOC, COCO, generated scenes) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..io import ImageLoadError, load_image, probe_image

__all__ = ["IGNORE_INDEX", "MAX_LISTED_PROBLEMS", "DatasetError", "Sample", "SegmentationDataset"]

IGNORE_INDEX = 255
#: :meth:`SegmentationDataset.validate` lists this many problems, then counts the rest.
MAX_LISTED_PROBLEMS = 20


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
    has_instances: bool = False

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
        """(H, W, 3) uint8 RGB image ``i``; a missing or unreadable file raises :class:`DatasetError`.

        The pixels are read as stored, EXIF orientation ignored: the masks were drawn on them.
        """
        path = self.image_path(i)
        if not path.is_file():
            raise DatasetError(f"{path}: image file not found")
        try:
            return load_image(path, exif_transpose=False)
        except ImageLoadError as exc:
            raise DatasetError(str(exc)) from exc

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i`` as :meth:`load_image` returns it, read from the file's header only."""
        path = self.image_path(i)
        if not path.is_file():
            raise DatasetError(f"{path}: image file not found")
        try:
            return probe_image(path)
        except ImageLoadError as exc:
            raise DatasetError(str(exc)) from exc

    def mask_size(self, i: int) -> tuple[int, int] | None:
        """(H, W) of image ``i``'s mask (None without masks), raising what :meth:`load_mask` would.

        This default decodes the mask; datasets override it with something cheaper (a header).
        """
        mask = self.load_mask(i)
        return None if mask is None else (int(mask.shape[0]), int(mask.shape[1]))

    def describe_mask(self, i: int) -> str:
        """A human-readable pointer to image ``i``'s mask for error messages."""
        return "its mask"

    @abstractmethod
    def load_mask(self, i: int) -> np.ndarray | None:
        """(H, W) uint8 label map of image ``i`` (255 = ignore), or None when the split has no masks."""

    def load_instances(self, i: int) -> np.ndarray | None:
        """(H, W) uint8 instance map of image ``i`` in VOC's ``SegmentationObject`` format (0 background,
        one index per object, 255 void), or None when the dataset has no instance masks.

        Instance metrics (FG-ARI, mBO^i) need these; class masks merge touching objects of a class.
        """
        return None

    @abstractmethod
    def image_labels(self, i: int) -> np.ndarray:
        """(num_classes - 1,) float32 multi-hot foreground labels of image ``i``."""

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        image = self.load_image(i)
        mask = self.load_mask(i)
        if mask is not None and mask.shape != image.shape[:2]:
            raise DatasetError(self._size_mismatch(i, image.shape[:2], mask.shape))
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

    def _size_mismatch(self, i: int, image_hw: tuple[int, ...], mask_hw: tuple[int, ...]) -> str:
        return (f"{self.describe_image(i)}: image is {image_hw[1]}x{image_hw[0]} pixels but "
                f"{self.describe_mask(i)} is {mask_hw[1]}x{mask_hw[0]}")

    def check(self, i: int, deep: bool = False) -> list[str]:
        """The problems of image ``i``'s files, one line each naming the file; empty when it is sound.

        Without ``deep`` only headers are read (cheap enough for a whole split before a long run):
        the image and mask are present and readable, the mask has an accepted format, their sizes
        agree, and the image-level labels load. ``deep`` also decodes every pixel (truncated
        data, mask values outside the classes).
        """
        problems: list[str] = []

        def attempt(read: Callable[[int], Any]) -> Any:
            try:
                return read(i)
            except (OSError, ValueError) as exc:
                if str(exc) not in problems:  # labels read off a missing mask repeat its error
                    problems.append(str(exc))
                return None

        image_hw, mask_hw = attempt(self.image_size), attempt(self.mask_size)
        if image_hw is not None and mask_hw is not None and image_hw != mask_hw:
            problems.append(self._size_mismatch(i, image_hw, mask_hw))
        attempt(self.image_labels)
        if deep and not problems:
            attempt(self.__getitem__)
        return problems

    def validate(self, progress: bool = True, raise_errors: bool = True, indices: Iterable[int] | None = None,
                 deep: bool = False) -> list[str]:
        """:meth:`check` every image (or those of ``indices``) and report all problems at once.

        Returns the list of problems (empty when the dataset is sound); with ``raise_errors`` a
        non-empty list is raised as one :class:`DatasetError`: a header line with the count, then
        one line per problem (the first :data:`MAX_LISTED_PROBLEMS`). A progress bar appears
        only when ``progress`` and the check takes more than a second.
        """
        todo = list(range(len(self)) if indices is None else indices)
        problems: list[str] = []
        for i in tqdm(todo, desc=f"checking {self.split}", disable=not progress, unit="img", delay=1.0,
                      leave=False):
            problems.extend(self.check(i, deep=deep))
        if problems and raise_errors:
            raise DatasetError(self._format_problems(problems, len(todo)))
        return problems

    def _format_problems(self, problems: list[str], checked: int) -> str:
        """The message of :meth:`validate`'s error: a count, then one indented line per problem."""
        head = (f"{len(problems)} problem(s) in the ground truth of {self.root} split {self.split!r} "
                f"({checked} images checked):")
        lines = [head, *(f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS])]
        if len(problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        return "\n".join(lines)
