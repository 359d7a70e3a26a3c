"""PASCAL VOC 2012 segmentation reader (also reads generated scenes, which use the same layout).

Layout, relative to the ``VOC2012`` folder::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png          palette PNG, 255 = void
    SegmentationClassAug/<id>.png       optional SBD masks (here or next to VOC2012)
    SegmentationObject/<id>.png         optional instance masks: 0 background, k = k-th object, 255 = void
    Annotations/<id>.xml                object names -> image-level labels
    ImageSets/Segmentation/<split>.txt  train, val, train_aug (mmseg: aug.txt), ...
    classes.json                        optional: class names of a generated dataset

Image-level labels come from the XML annotation (the usual WSSS source); where it is
missing they are read off the mask. Every missing or malformed file raises one
:class:`DatasetError` naming it; nothing is skipped silently.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from .base import DatasetError, SegmentationDataset
from .palette import voc_palette

__all__ = [
    "INSTANCE_DIR", "METADATA_FILE", "SPLIT_ALIASES", "VOC_CLASSES", "VOCDataset", "read_class_metadata", "resolve_voc_root",
]

VOC_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip

#: VOC's folder of instance masks (palette PNGs: 0 background, one index per object, 255 void).
INSTANCE_DIR = "SegmentationObject"

#: Metadata file a generated dataset puts in its VOC2012 folder to declare its own classes.
METADATA_FILE = "classes.json"

#: Other tools' names for a split: mmseg calls the SBD-augmented training set ``aug`` (``aug.txt``).
SPLIT_ALIASES: dict[str, str] = {"aug": "train_aug"}

#: Mask folder -> accepted PNG modes. SegmentationClassAug holds SBD conversions, commonly plain
#: 8-bit grayscale label PNGs (mmseg's converter writes those); VOC's own masks are palette PNGs, so
#: a grayscale or colour file there is a conversion gone wrong.
_AUG_MASK_DIR = "SegmentationClassAug"
_MASK_MODES = {_AUG_MASK_DIR: ("P", "L")}
_DEFAULT_MASK_MODES = ("P",)

LabelSource = Literal["auto", "xml", "mask"]


def resolve_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder, given it, the ``VOCdevkit`` folder, or the folder holding ``VOCdevkit``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root folder not found")
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (candidate / "ImageSets").is_dir() or (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(
        f"{root}: not a PASCAL VOC folder (looked for VOCdevkit/VOC2012, VOC2012, "
        "or JPEGImages/ and ImageSets/ directly inside it)"
    )


def read_class_metadata(path: Path) -> list[str]:
    """Class names from a generated dataset's ``classes.json`` (``{"class_names": [...]}``)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read class metadata ({exc})") from exc
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise DatasetError(f"{path}: 'class_names' must be a list of non-empty strings")
    if len(names) < 2 or names[0] != "background":
        raise DatasetError(f"{path}: 'class_names' must start with 'background' and list at least one class")
    if len(set(names)) != len(names) or len(names) > 255:
        raise DatasetError(f"{path}: 'class_names' must be unique and at most 255 long")
    return list(names)


def _read_split_list(path: Path) -> list[str]:
    """Image ids from a split file; accepts bare ids or DeepLab-style ``/JPEGImages/x.jpg /Seg.../x.png`` lines."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read split list ({exc})") from exc
    ids: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        image_id = Path(fields[0]).stem if "/" in fields[0] else fields[0]
        if image_id in seen:
            raise DatasetError(f"{path}:{lineno}: image id {image_id!r} repeats line {seen[image_id]}")
        seen[image_id] = lineno
        ids.append(image_id)
    if not ids:
        raise DatasetError(f"{path}: split list is empty")
    return ids


class VOCDataset(SegmentationDataset):
    """PASCAL VOC 2012 (or a generated VOC-layout dataset) for one split.

    ``masks``: None = the split has masks unless it is ``test`` or no mask folder exists.
    ``labels``: ``"auto"`` reads XML annotations where present and falls back to the mask,
    ``"xml"`` and ``"mask"`` force one source. ``SegmentationClassAug`` masks may be palette
    or plain 8-bit grayscale PNGs (the common SBD conversion); ``SegmentationClass`` must be palette.
    ``split`` may be an alias of :data:`SPLIT_ALIASES` (``aug``); ``self.split`` is the canonical name.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        masks: bool | None = None,
        labels: LabelSource = "auto",
        require_metadata: bool = False,
    ) -> None:
        if labels not in ("auto", "xml", "mask"):
            raise ValueError(f"labels must be 'auto', 'xml' or 'mask', got {labels!r}")
        self.voc_dir = resolve_voc_root(root)
        self.root = self.voc_dir
        split = SPLIT_ALIASES.get(split, split)
        self.split = split
        self.label_source: LabelSource = labels
        meta = self.voc_dir / METADATA_FILE
        if meta.is_file():
            self.class_names = read_class_metadata(meta)
        elif require_metadata:
            raise DatasetError(f"{meta}: not found; this is not a generated-scenes dataset (run make-data)")
        else:
            self.class_names = list(VOC_CLASSES)
        self.palette = voc_palette()
        self.split_file = self._find_split_file(split)
        self.image_ids = _read_split_list(self.split_file)
        self.image_dir = self.voc_dir / "JPEGImages"
        self.annotation_dir = self.voc_dir / "Annotations"
        self._mask_dirs = self._find_mask_dirs(split)
        if masks is None:
            masks = split != "test" and bool(self._mask_dirs)
        if masks and not self._mask_dirs:
            raise DatasetError(f"{self.voc_dir / 'SegmentationClass'}: mask folder not found")
        self.has_masks = bool(masks)
        self.instance_dir = self.voc_dir / INSTANCE_DIR
        self.has_instances = self.has_masks and self.instance_dir.is_dir()
        if labels == "mask" and not self.has_masks:
            raise ValueError("labels='mask' needs a split with masks")
        self._label_cache: dict[int, np.ndarray] = {}

    # -- file locations -------------------------------------------------------------------------
    def _split_dirs(self, split: str) -> list[Path]:
        """Folders that may hold ``split``'s list; ``*_aug`` lists also sit beside VOC2012 (DeepLab, SBD)."""
        dirs = [self.voc_dir / "ImageSets" / "Segmentation"]
        if split.endswith("_aug"):
            dirs += [self.voc_dir / "ImageSets" / "SegmentationAug", self.voc_dir, self.voc_dir.parent]
        return dirs

    def available_splits(self) -> list[str]:
        """The splits whose list is present, named as their files are (mmseg's ``aug`` stays ``aug``)."""
        found = set()
        for d in self._split_dirs("train_aug"):
            for p in d.glob("*.txt"):
                if d in self._split_dirs(SPLIT_ALIASES.get(p.stem, p.stem)) and p.is_file():
                    found.add(p.stem)
        return sorted(found)

    def _find_split_file(self, split: str) -> Path:
        if not split or os.sep in split or "/" in split:
            raise ValueError(f"invalid split name {split!r}")
        names = [split, *(alias for alias, target in SPLIT_ALIASES.items() if target == split)]
        candidates = [d / f"{n}.txt" for d in self._split_dirs(split) for n in names]
        for c in candidates:
            if c.is_file():
                return c
        available = ", ".join(self.available_splits()) or "none"
        raise DatasetError(f"{candidates[0]}: split list for split {split!r} not found; "
                           f"available splits: {available}")

    def _find_mask_dirs(self, split: str) -> list[Path]:
        dirs: list[Path] = []
        if split.endswith("_aug"):
            for aug in (self.voc_dir / _AUG_MASK_DIR, self.voc_dir.parent / _AUG_MASK_DIR):
                if aug.is_dir():
                    dirs.append(aug)
                    break
        if (self.voc_dir / "SegmentationClass").is_dir():
            dirs.append(self.voc_dir / "SegmentationClass")
        return dirs

    def image_path(self, i: int) -> Path:
        return self.image_dir / f"{self.image_ids[self._index(i)]}.jpg"

    def mask_path(self, i: int) -> Path:
        """The first existing mask for image ``i`` (Aug folder first for ``*_aug`` splits)."""
        name = f"{self.image_ids[self._index(i)]}.png"
        for d in self._mask_dirs:
            if (d / name).is_file():
                return d / name
        primary = self._mask_dirs[0] if self._mask_dirs else self.voc_dir / "SegmentationClass"
        raise DatasetError(f"{primary / name}: mask file not found")

    def instance_path(self, i: int) -> Path:
        return self.instance_dir / f"{self.image_ids[self._index(i)]}.png"

    def load_instances(self, i: int) -> np.ndarray | None:
        """VOC's ``SegmentationObject`` mask of image ``i`` (None when the folder is absent; SBD's
        ``train_aug`` images mostly have none, so a missing file names itself)."""
        if not self.has_instances:
            return None
        path = self.instance_path(i)
        with _open_mask(path) as img:
            try:
                img.load()
                return np.array(img, dtype=np.uint8)
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise DatasetError(f"{path}: cannot read instance mask ({exc})") from exc

    def annotation_path(self, i: int) -> Path:
        return self.annotation_dir / f"{self.image_ids[self._index(i)]}.xml"

    # -- loaders --------------------------------------------------------------------------------

    def describe_mask(self, i: int) -> str:
        try:
            return f"its mask {self.mask_path(i)}"
        except DatasetError:
            return "its mask"

    def load_mask(self, i: int) -> np.ndarray | None:
        if not self.has_masks:
            return None
        path = self.mask_path(i)
        with _open_mask(path) as img:
            try:
                img.load()
                mask = np.array(img, dtype=np.uint8)
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise DatasetError(f"{path}: cannot read mask ({exc})") from exc
        return self.check_mask_values(mask, str(path))

    def mask_size(self, i: int) -> tuple[int, int] | None:
        """From the PNG header: the format checks of :meth:`load_mask` without decoding pixels."""
        if not self.has_masks:
            return None
        with _open_mask(self.mask_path(i)) as img:
            width, height = img.size
        return height, width

    def image_labels(self, i: int) -> np.ndarray:
        i = self._index(i)
        cached = self._label_cache.get(i)
        if cached is None:
            xml = self.annotation_path(i)
            if self.label_source == "xml" or (self.label_source == "auto" and xml.is_file()):
                cached = self._labels_from_xml(xml)
            elif self.has_masks:
                mask = self.load_mask(i)
                assert mask is not None
                cached = self.labels_from_indices(mask)
            else:
                raise DatasetError(f"{xml}: annotation not found and split {self.split!r} has no masks")
            self._label_cache[i] = cached
        return cached.copy()

    def _labels_from_xml(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise DatasetError(f"{path}: annotation file not found")
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise DatasetError(f"{path}: malformed XML annotation ({exc})") from exc
        index = {name: k for k, name in enumerate(self.class_names)}
        labels = np.zeros(self.num_classes - 1, dtype=np.float32)
        # Only each <object>'s own <name>: VOC's person layout adds <part><name>head</name></part>.
        for obj in root.findall("object"):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise DatasetError(f"{path}: <object> without a <name>")
            k = index.get(name)
            if k is None or k == 0:
                raise DatasetError(
                    f"{path}: unknown class name {name!r} (known: {', '.join(self.class_names[1:])})"
                )
            labels[k - 1] = 1.0
        return labels


def _open_mask(path: Path) -> Image.Image:
    """Open a mask PNG lazily (header only) after checking its mode is one its folder accepts.

    The one owner of the format rule (:data:`_MASK_MODES`): loading and validation both go
    through here.
    """
    modes = _MASK_MODES.get(path.parent.name, _DEFAULT_MASK_MODES)
    if not path.is_file():
        raise DatasetError(f"{path}: mask file not found")
    try:
        img = Image.open(path)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read mask ({exc})") from exc
    if img.mode in modes:
        return img
    mode = img.mode
    img.close()
    if modes == ("P",):
        hint = f" (8-bit grayscale label PNGs are accepted in {_AUG_MASK_DIR} only)" if mode == "L" else ""
        raise DatasetError(f"{path}: mask must be a palette ('P' mode) PNG of class indices, "
                           f"got mode {mode!r}{hint}")
    raise DatasetError(f"{path}: mask must be a palette or 8-bit grayscale PNG of class indices, "
                       f"got mode {mode!r}")
