"""Slot quality per GLMix block: what the slot partitions are worth as object discovery.

For every image and every GLMix block, the partition scored is the one the app and the figures
show (:meth:`SlotPredictor.hard_slots`, at the image's own size, the network fed by eval's
input-size rule). Each metric of :mod:`.metrics` is computed per image, then averaged over the
images where it is defined, as OCLF does. Beside the raw partition (every slot), the slots merged
to a few groups (:func:`.merge.merge_slots`) compare with 6-7-slot methods; the consistency of
adjacent blocks' partitions needs no ground truth, so it also runs on bare photos. The slot
oracle's mIoU (each slot its majority class) is given per block as the ceiling of slot labelling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.base import IGNORE_INDEX, SegmentationDataset
from ..io import atomic_write_bytes
from ..models.slots import block_label, resolve_blocks
from ..predictor import SlotPredictor
from ..wsss.metrics import ConfusionMatrix, mean_iou
from ..wsss.oracle import slot_oracle_mask
from .merge import merge_slots
from .metrics import corloc, fg_ari, hungarian_miou, mean_best_overlap, partition_consistency

__all__ = ["METRICS", "GroundTruthImage", "SlotQuality", "dataset_images", "image_slot_quality", "slot_quality",
           "write_slot_quality"]

#: The per-image metrics, in the order tables show them (fractions in 0..1).
METRICS = ("fg_ari", "mbo_i", "mbo_c", "corloc", "miou")
_TITLES = {"fg_ari": "FG-ARI", "mbo_i": "mBO^i", "mbo_c": "mBO^c", "corloc": "CorLoc", "miou": "mIoU (Hungarian)"}
JSON_FILE, MARKDOWN_FILE = "slot_quality.json", "slot_quality.md"


@dataclass
class GroundTruthImage:
    """One image and whatever ground truth it has (both None for a bare photo)."""

    image_id: str
    rgb: np.ndarray
    mask: np.ndarray | None = None  # (H, W) class ids, 255 void
    instances: np.ndarray | None = None  # (H, W) instance ids (VOC SegmentationObject), 255 void


def dataset_images(dataset: SegmentationDataset, limit: int | None = None) -> Iterator[GroundTruthImage]:
    """The dataset's images with their class and instance masks, read one at a time."""
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        sample = dataset[i]
        yield GroundTruthImage(sample.image_id, sample.image, sample.mask, dataset.load_instances(i))


def partition_scores(partition: np.ndarray, truth: GroundTruthImage) -> dict[str, float | None]:
    """Every metric of one partition against one image's ground truth (None where undefined).

    Void is the union of both masks' void: a pixel void in either leaves every metric.
    """
    mask, inst = truth.mask, truth.instances
    scores: dict[str, float | None] = dict.fromkeys(METRICS)
    if inst is not None:
        void = mask == IGNORE_INDEX if mask is not None else None
        scores.update(fg_ari=fg_ari(partition, inst, void), mbo_i=mean_best_overlap(partition, inst, void),
                      corloc=corloc(partition, inst, void), miou=hungarian_miou(partition, inst, void))
    if mask is not None:
        scores["mbo_c"] = mean_best_overlap(partition, mask, inst == IGNORE_INDEX if inst is not None else None)
    return scores


def image_slot_quality(predictor: SlotPredictor, truth: GroundTruthImage | None, blocks: Sequence[int],
                       merge: int | None = None, linkage: str = "ward") -> list[dict[str, Any]]:
    """Per block, the scores of the image set in ``predictor``: ``raw`` and ``merged`` metrics, the
    ``consistency`` with the next block (raw and merged partitions), the used slot count and the
    partitions themselves (``hard``, ``groups``). ``truth`` None: consistency only."""
    out = []
    for b in blocks:
        hard = predictor.hard_slots(b)
        groups = None
        if merge:
            groups = merge_slots(hard, predictor.maps([b])[0].slots[0].cpu().numpy(), merge, linkage)
        empty = dict.fromkeys(METRICS)
        out.append(dict(block=b, hard=hard, groups=groups, used_slots=len(np.unique(hard)),
                        raw=partition_scores(hard, truth) if truth is not None else empty,
                        merged=partition_scores(groups, truth) if truth is not None and merge else empty))
    for here, after in zip(out, out[1:]):
        here["consistency"] = dict(raw=partition_consistency(here["hard"], after["hard"]),
                                   merged=partition_consistency(here["groups"], after["groups"]) if merge else None)
    return out


class _Means:
    """Running means of named values that skip None (an image where a metric is undefined)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float | None], prefix: str = "") -> None:
        for key, value in values.items():
            if value is not None:
                self.sums[prefix + key] = self.sums.get(prefix + key, 0.0) + float(value)
                self.counts[prefix + key] = self.counts.get(prefix + key, 0) + 1

    def get(self, key: str) -> float | None:
        return self.sums[key] / self.counts[key] if self.counts.get(key) else None


@dataclass
class SlotQuality:
    """Slot quality per block over a set of images; :meth:`to_dict` is ``slot_quality.json``."""

    blocks: list[dict[str, Any]]
    images: int
    merge: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta, "images": self.images, "merge": self.merge, "blocks": self.blocks}

    def to_markdown(self) -> str:
        """Tables in percent: raw partitions, merged ones, then adjacent-block consistency."""
        def pct(v: float | None) -> str:
            return "–" if v is None else f"{100 * v:.1f}"

        head = " | ".join(_TITLES[m] for m in METRICS)
        data = self.meta.get("dataset_name") or self.meta.get("dataset", "?")
        lines = [f"# Slot quality: {self.meta.get('model', '?')} on {data} "
                 f"{self.meta.get('split', '')} ({self.images} images)", ""]
        if not any(b[m] is not None for b in self.blocks for m in METRICS):  # no ground truth: consistency only
            lines += ["No ground truth: slots used and consistency only.", "", "| block | grid | slots used |",
                      "|---|---|---:|"]
            lines += [f"| {b['both_names']} | {b['grid'][0]}×{b['grid'][1]} | {b['used_slots']:.1f} / {b['slots']} |"
                      for b in self.blocks]
        else:
            lines += self._metric_tables(head, pct)
        lines += ["", "## Consistency with the next block (Hungarian IoU of the partitions)", "",
                  "| blocks | all slots | merged |", "|---|---:|---:|"]
        lines += [f"| {b['block']} → {b['consistency_next']['next']} | {pct(b['consistency_next']['raw'])} | "
                  f"{pct(b['consistency_next']['merged'])} |" for b in self.blocks if b["consistency_next"]]
        return "\n".join(lines) + "\n"

    def _metric_tables(self, head: str, pct: Any) -> list[str]:
        lines = ["Fractions as percentages; OCLF's definitions (void pixels ignored, per image then over images).",
                 "", "## All slots", "", f"| block | grid | slots used | {head} | slot oracle mIoU |",
                 "|---|---|---:|" + "---:|" * (len(METRICS) + 1)]
        for b in self.blocks:
            lines.append(f"| {b['both_names']} | {b['grid'][0]}×{b['grid'][1]} | {b['used_slots']:.1f} / {b['slots']} | "
                         + " | ".join(pct(b[m]) for m in METRICS) + f" | {pct(b.get('oracle_miou'))} |")
        if self.merge:
            lines += ["", f"## Slots merged to {self.merge} groups", "", f"| block | {head} |",
                      "|---|" + "---:|" * len(METRICS)]
            lines += [f"| {b['name']} | " + " | ".join(pct(b["merged"][m]) for m in METRICS) + " |"
                      for b in self.blocks]
        return lines


def slot_quality(predictor: SlotPredictor, images: Iterable[GroundTruthImage], *, blocks: Sequence[int] | None = None,
                 merge: int | None = 6, linkage: str = "ward", input_size: int | None = None,
                 num_classes: int | None = None, total: int | None = None, progress: bool = True,
                 meta: dict[str, Any] | None = None) -> SlotQuality:
    """Score every chosen block's slot partitions over ``images`` (see the module docstring).

    ``input_size``: the short side the network sees (None: the image's own size, eval's default);
    ``num_classes``: the classes of the masks, for the slot oracle (None: no oracle).
    """
    chosen: list[int] | None = None
    means, oracles = _Means(), {}
    count = 0
    for truth in tqdm(images, total=total, desc="slot quality", unit="img", disable=not progress):
        predictor.set_image(truth.rgb, input_size=input_size or min(truth.rgb.shape[:2]))
        chosen = chosen or resolve_blocks(predictor.num_glmix_blocks, blocks)
        has_truth = truth.mask is not None or truth.instances is not None
        for s in image_slot_quality(predictor, truth if has_truth else None, chosen, merge, linkage):
            b = s["block"]
            means.add(s["raw"], f"{b}.")
            means.add(s["merged"], f"{b}.merged.")
            means.add({"used_slots": s["used_slots"], **{f"consistency.{k}": v for k, v in
                                                         s.get("consistency", {}).items()}}, f"{b}.")
            if num_classes and truth.mask is not None:
                oracles.setdefault(b, ConfusionMatrix(num_classes)).update(
                    slot_oracle_mask(s["hard"], truth.mask), truth.mask)
        count += 1
    if chosen is None:
        raise ValueError("no images to score")
    maps = predictor.maps(chosen)
    rows = []
    for k, (b, m) in enumerate(zip(chosen, maps)):
        after = chosen[k + 1] if k + 1 < len(chosen) else None
        rows.append(dict(block=b, name=block_label(b, m), both_names=block_label(b, m, with_path=True),
                         stage=m.stage + 1, grid=list(m.grid), slots=m.num_slots,
                         used_slots=means.get(f"{b}.used_slots"), **{x: means.get(f"{b}.{x}") for x in METRICS},
                         oracle_miou=mean_iou(oracles[b].matrix) / 100 if b in oracles else None,
                         merged={"groups": merge, **{x: means.get(f"{b}.merged.{x}") for x in METRICS}},
                         consistency_next=None if after is None else dict(
                             next=after, raw=means.get(f"{b}.consistency.raw"),
                             merged=means.get(f"{b}.consistency.merged"))))
    return SlotQuality(rows, count, merge, dict(meta or {}))


def write_slot_quality(report: SlotQuality, out: str | Path) -> list[Path]:
    """``out/slot_quality.json`` and ``slot_quality.md`` (the figure of the same numbers:
    :func:`glmix_vis.figures.discovery.slot_quality_figure`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / JSON_FILE, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(out / MARKDOWN_FILE, report.to_markdown().encode())
    return [out / JSON_FILE, out / MARKDOWN_FILE]
