"""An eval output folder as a store: what a resumable, shardable WSSS run keeps on disk.

    OUT/settings.json        what decides the masks; a run with other settings refuses the folder
    OUT/masks/<id>.png       the final masks (after the CRF when it is on), palette PNGs
    OUT/masks_nocrf/<id>.png the masks before the CRF (only when it is on)
    OUT/evidence/<id>.npy    with ``save_evidence``: the class evidence the mask thresholds, as IRN
                             saves its CAMs (``{"keys": classes, "high_res": (k, H, W) float32}``)
    OUT/sweep.rank<r>.npz    a background-threshold sweep's confusion matrices so far, per rank
    OUT/metrics.json, metrics.md

Every file is written atomically (temp file + rename), so an interrupted run leaves whole files
only, and an image whose masks exist is done: a resumed run skips it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import IGNORE_INDEX, load_palette_png, save_palette_png
from ..io import atomic_path, atomic_write_bytes

__all__ = ["SETTINGS_FILE", "OutputDir", "MaskWriter", "SettingsMismatch", "refuse_other_settings", "tie_settings",
           "write_json"]

#: Written into OUT on the first run: the settings its masks were made with.
SETTINGS_FILE = "settings.json"


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode())


@dataclass(frozen=True)
class MaskWriter:
    """Writes ``<folder>/<id>.png`` palette masks; picklable, so a CRF worker can write its own result.

    ``ignored_from``: a folder whose mask of the same image (written before) marks pixels 255 that
    stay 255 here: a confidence band's pixels, kept out of the CRF's mask as out of the one before it.
    """

    folder: str
    palette: np.ndarray
    ignored_from: str | None = None

    def __call__(self, image_id: str, mask: np.ndarray) -> None:
        mask = np.asarray(mask).astype(np.uint8)
        if self.ignored_from is not None:
            before = load_palette_png(Path(self.ignored_from) / f"{image_id}.png")
            mask = np.where(before == IGNORE_INDEX, np.uint8(IGNORE_INDEX), mask)
        save_palette_png(Path(self.folder) / f"{image_id}.png", mask, self.palette)


class SettingsMismatch(ValueError):
    """A folder's recorded ``settings.json`` differs from the settings of the run that would resume it."""


def tie_settings(folder: Path, settings: dict[str, Any], *, holds: str, write: bool = True,
                 recorded: dict[str, Any] | None = None) -> bool:
    """The one resume rule of every output folder (eval's masks, train's checkpoints): a folder
    whose ``settings.json`` (else ``recorded``, what older runs kept elsewhere) differs from
    ``settings`` is refused with :class:`SettingsMismatch`, one line naming every difference, so a
    resumed run never mixes two settings; with nothing recorded, ``write`` records them (returns
    whether it did). ``holds`` names what the folder holds, for the message."""
    path = folder / SETTINGS_FILE
    before = recorded
    if path.exists():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is unreadable ({exc}); remove it, or choose another --out") from None
    if before is not None:
        changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
        if changed:
            detail = "; ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise SettingsMismatch(f"{folder} holds {holds} made with other settings ({detail}). Resuming would "
                                   "mix them; choose another --out, or delete that folder to start over")
    if path.exists() or not write:
        return False
    write_json(path, settings)
    return True


def refuse_other_settings(folder: Path, known: dict[str, Any], *, holds: str) -> None:
    """:func:`tie_settings`'s rule on the settings known before any data or model is read (``known``,
    a part of them): a folder whose ``settings.json`` differs in one of those is refused now, before
    minutes are spent generating or checking a dataset. Nothing is written."""
    path = folder / SETTINGS_FILE
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # none (or unreadable: the full check says so)
    changed = sorted(k for k in known if known[k] != before.get(k))
    if changed:
        detail = "; ".join(f"{k}: {before.get(k)!r} -> {known[k]!r}" for k in changed)
        raise SettingsMismatch(f"{folder} holds {holds} made with other settings ({detail}). Resuming would "
                               "mix them; choose another --out, or delete that folder to start over")


class OutputDir:
    """The folder ``root`` of one eval run: ``masks/`` (the final masks) and, with ``crf``,
    ``masks_nocrf/`` (the masks before the CRF; without it the two are one folder)."""

    def __init__(self, root: str | Path, crf: bool) -> None:
        self.root = Path(root)
        self.mask_dir = self.root / "masks"
        self.raw_dir = self.root / "masks_nocrf" if crf else self.mask_dir
        self.evidence_dir = self.root / "evidence"
        self._created: list[Path] = []  # what claim() made, for release_if_unused()

    # ------------------------------------------------------------------ settings
    def claim(self, settings: dict[str, Any], write: bool = True) -> None:
        """Tie the folder to ``settings`` (JSON-comparable), so that a resumed run never mixes masks
        made with other ones: a recorded ``settings.json`` must equal them (else ``ValueError``
        naming every difference); with none, ``write`` records them. Then the mask folders exist.

        Settings recorded in a folder that holds no mask yet tie nothing (a run killed before its
        first mask, which :meth:`release_if_unused` could not undo): ``write`` replaces them, and a
        process that does not write (another torchrun rank) leaves the decision to the one that does."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"--out {self.root} is a file, not a folder; choose a folder")
        if not self.root.exists():
            self._created.append(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        holds_masks = self.holds_masks()
        if not holds_masks and write:
            (self.root / SETTINGS_FILE).unlink(missing_ok=True)
        if (holds_masks or write) and tie_settings(self.root, settings, holds="masks", write=write):
            self._created.append(self.root / SETTINGS_FILE)
        for d in (self.raw_dir, self.mask_dir):
            if not d.exists():
                self._created.append(d)
            d.mkdir(parents=True, exist_ok=True)

    def holds_masks(self) -> bool:
        """Whether any mask is written (what ties the folder to its settings)."""
        return any(any(d.glob("*.png")) for d in (self.mask_dir, self.raw_dir) if d.is_dir())

    def count_masks(self, image_ids: Sequence[str]) -> int:
        """How many of ``image_ids`` are done (:meth:`has_masks`)."""
        return sum(self.has_masks(i) for i in image_ids)

    def release_if_unused(self) -> None:
        """Undo :meth:`claim` when no mask was written since: a run that failed before its first
        image leaves no settings behind to refuse the corrected command."""
        if self.holds_masks():
            return
        for path in reversed(self._created):
            try:
                path.unlink() if path.is_file() else path.rmdir()
            except OSError:
                pass  # not empty (something else was put there): leave it
        self._created.clear()

    # ------------------------------------------------------------------ masks
    def mask_path(self, image_id: str) -> Path:
        return self.mask_dir / f"{image_id}.png"

    def raw_path(self, image_id: str) -> Path:
        return self.raw_dir / f"{image_id}.png"

    def has_masks(self, image_id: str) -> bool:
        """Whether the image is done (its final mask and, with the CRF, the one before it exist)."""
        return self.mask_path(image_id).exists() and self.raw_path(image_id).exists()

    def mask_writer(self, palette: np.ndarray, keep_ignored: bool = False) -> MaskWriter:
        """A picklable writer of final masks (``writer(image_id, mask)``); ``keep_ignored``: pixels that
        are 255 in the mask before the CRF stay 255 (a confidence band's)."""
        return MaskWriter(str(self.mask_dir), np.asarray(palette, dtype=np.uint8),
                          str(self.raw_dir) if keep_ignored and self.raw_dir != self.mask_dir else None)

    def write_mask(self, image_id: str, mask: np.ndarray, palette: np.ndarray) -> None:
        self.mask_writer(palette)(image_id, mask)

    def write_raw(self, image_id: str, mask: np.ndarray, palette: np.ndarray) -> None:
        MaskWriter(str(self.raw_dir), np.asarray(palette, dtype=np.uint8))(image_id, mask)

    def read_mask(self, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
        return _read_mask(self.mask_path(image_id), shape)

    def read_raw(self, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
        return _read_mask(self.raw_path(image_id), shape)

    # ------------------------------------------------------------------ evidence
    def evidence_path(self, image_id: str) -> Path:
        return self.evidence_dir / f"{image_id}.npy"

    def has_evidence(self, image_id: str) -> bool:
        return self.evidence_path(image_id).exists()

    def write_evidence(self, image_id: str, classes: np.ndarray, maps: np.ndarray) -> None:
        """The evidence of the image's allowed classes, in the layout IRN's later steps read
        (``np.load(path, allow_pickle=True).item()``: ``keys``, the 0-based foreground class indices,
        and ``high_res``, their ``(k, H, W)`` float32 maps in [0, 1])."""
        record = {"keys": np.asarray(classes, dtype=np.int64), "high_res": np.asarray(maps, dtype=np.float32)}
        with atomic_path(self.evidence_path(image_id)) as tmp:
            np.save(tmp, record, allow_pickle=True)

    # ------------------------------------------------------------------ threshold sweep
    def sweep_path(self, rank: int) -> Path:
        return self.root / f"sweep.rank{rank}.npz"

    def load_sweep(self, rank: int, thresholds: Sequence[float]) -> tuple[np.ndarray, set[str]] | None:
        """A saved sweep of this rank, ``(confusions, image ids)``, if it used the same thresholds."""
        path = self.sweep_path(rank)
        if not path.exists():
            return None
        saved = np.load(path, allow_pickle=False)
        if list(saved["thresholds"]) != list(thresholds):
            return None
        return saved["confusion"], set(saved["ids"].tolist())

    def save_sweep(self, rank: int, confusion: np.ndarray, ids: set[str], thresholds: Sequence[float]) -> None:
        path = self.sweep_path(rank)
        with atomic_path(path) as tmp:
            np.savez(tmp, confusion=confusion, ids=np.array(sorted(ids)), thresholds=np.asarray(thresholds))

    # ------------------------------------------------------------------ metrics
    def read_metrics(self) -> dict[str, Any] | None:
        """The ``metrics.json`` an earlier run wrote, if any (readable)."""
        try:
            return json.loads((self.root / "metrics.json").read_text())
        except (OSError, ValueError):
            return None

    def write_metrics(self, result: dict[str, Any], markdown: str) -> None:
        write_json(self.root / "metrics.json", result)
        atomic_write_bytes(self.root / "metrics.md", markdown.encode())


def _read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A written mask, which must have the ground truth's size (one left by another run may not)."""
    mask = load_palette_png(path)
    if mask.shape != shape:
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its ground truth is "
                         f"{shape[1]}x{shape[0]}; delete it to have it recomputed")
    return mask
