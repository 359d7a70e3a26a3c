"""The slot atlas: every slot of one GLMix block over a dataset, grouped into K concepts.

GLMix's slots are segments the network made itself; the atlas asks which of them recur across
images. Each used slot of each image becomes one row: its features (``"region"``: the block
stage's pixel features pooled over the slot's hard region; ``"slot"``: the block's slot vector;
``"both"``: the two concatenated), L2-normalised, grouped by mini-batch k-means into concepts.

Memory stays bounded whatever the split's size: rows are spilled to chunk files as the images
stream past, the clustering reads the chunks (a few epochs), and only per-concept sums, the
members list and a bounded heap of typical examples stay in memory. A second pass over the
images scores the atlas against the CRAFT baseline (:mod:`.craft`) on the same block, images and
K: pixel-weighted class purity, and concept deletion / insertion (:mod:`.fidelity`).
"""

from __future__ import annotations

import heapq
import resource
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.base import IGNORE_INDEX
from ..devices import network_autocast
from ..predictor import SlotPredictor
from ..wsss.faithfulness import head_score_fn
from .craft import CraftConcepts
from .fidelity import ImportanceSum, concept_curves, single_concept_drops
from .quality import GroundTruthImage

__all__ = ["FEATURE_KINDS", "AtlasConfig", "build_atlas", "purity", "layer_features", "slot_class_counts", "slot_rows",
           "stage_features"]

#: A slot's row: ``region`` = the block stage's pixel features pooled over the slot's region; ``deep``
#: = the final features pooled over it; ``evidence`` = the classifier's head applied at every location
#: of the final features (a CAM before any ReLU, one value per head output) pooled over it; ``slot`` =
#: the block's slot vector; ``both`` = region and slot concatenated; ``contrast`` = the final features
#: and those of the stage before the last, pooled over the region, each channel standardised over
#: the image's slots (what sets the slot apart from the rest of its image: the pooled deep features
#: of one image's slots are nearly alike, their receptive fields covering the whole picture). CRAFT
#: factorises the pixel features the rows pool (``deep``, ``evidence``, ``contrast``: the final ones;
#: ``evidence`` through the head). The default was chosen by ``eval/atlas_features.py``.
FEATURE_KINDS = ("contrast", "evidence", "deep", "region", "slot", "both")
ImageSource = Callable[[], Iterable[GroundTruthImage]]


@dataclass(frozen=True)
class AtlasConfig:
    """Every setting of one atlas (recorded in ``atlas.json``)."""

    block: int = 0
    concepts: int = 16
    features: str = "contrast"
    input_size: int | None = None  # short side the network sees; None: the image's own (eval's rule)
    examples: int = 6  # typical members shown per concept
    fidelity_images: int = 50  # images scored by concept deletion / insertion (both banks)
    craft: bool = True
    craft_pixels: int = 64  # grid locations sampled per image to fit CRAFT's NMF
    chunk_rows: int = 8192  # rows per spilled chunk
    epochs: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {', '.join(FEATURE_KINDS)}, got {self.features!r}")
        if self.concepts < 2:
            raise ValueError(f"an atlas needs at least 2 concepts, got {self.concepts}")
        if min(self.examples, self.craft_pixels, self.chunk_rows, self.epochs) < 1 or self.fidelity_images < 0:
            raise ValueError("examples, craft_pixels, chunk_rows and epochs must be >= 1, fidelity_images >= 0")


# ---------------------------------------------------------------------------------- features
def stage_features(predictor: SlotPredictor, block: int) -> torch.Tensor:
    """``(C, h, w)`` float32: the pixel features of the stage holding ``block`` for the image set in
    the predictor (the block's own output when it ends its stage); runs the stages up to it."""
    return _stage_output(predictor, predictor.maps([block])[0].stage)


def _stage_output(predictor: SlotPredictor, stage: int) -> torch.Tensor:
    with torch.no_grad(), network_autocast(predictor.batch.device):
        feats = predictor.model.forward_intermediates(predictor.batch, indices=[stage], intermediates_only=True,
                                                      stop_early=True)[0]
    return feats[0].float().cpu()


def _standardised(rows: torch.Tensor) -> torch.Tensor:
    """Each column centred and scaled over the rows (one image's slots)."""
    return (rows - rows.mean(0)) / rows.std(0, unbiased=False).clamp_min(1e-6)


def layer_features(predictor: SlotPredictor, block: int, kind: str) -> torch.Tensor:
    """``(C, h, w)``: the pixel features a ``kind`` of row pools, and CRAFT factorises."""
    if kind in ("deep", "contrast"):
        return predictor.output.features[0].float().cpu()
    if kind == "evidence":
        head = predictor.model.get_classifier()
        if not isinstance(head, torch.nn.Linear):
            raise ValueError("evidence rows need a model with a linear classification head")
        feats = predictor.output.features[0].float().cpu()
        maps = torch.einsum("nc,chw->nhw", head.weight.detach().float().cpu(), feats)
        return maps + head.bias.detach().float().cpu()[:, None, None] if head.bias is not None else maps
    return stage_features(predictor, block).cpu()


def _region_weights(hard: np.ndarray, used: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """``(n, h*w)``: the share of each grid cell each used slot's image-size region covers."""
    onehot = torch.from_numpy(hard)[None] == torch.from_numpy(used)[:, None, None]
    return F.adaptive_avg_pool2d(onehot.float()[None], grid)[0].flatten(1)


def _pooled(hard: np.ndarray, used: np.ndarray, feats: torch.Tensor) -> torch.Tensor:
    """``(n, C)``: ``feats`` averaged over each used slot's region (area-weighted on their grid)."""
    w = _region_weights(hard, used, tuple(feats.shape[1:]))
    return (w @ feats.flatten(1).T) / w.sum(1, keepdim=True).clamp_min(1e-12)


def slot_rows(predictor: SlotPredictor, block: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                         torch.Tensor]:
    """``(used slot ids, (n, D) L2-normalised rows, (H, W) hard slots, the layer's pixel features)``."""
    hard = predictor.hard_slots(block)
    used = np.unique(hard)
    feats = layer_features(predictor, block, kind)
    if kind == "contrast":
        before_last = len(predictor.model.stages) - 2
        stage = _stage_output(predictor, before_last) if before_last >= 0 else feats
        rows = torch.cat([_standardised(_pooled(hard, used, f)) for f in (feats, stage)], dim=1)
        return used, rows.numpy(), hard, feats
    parts = []
    if kind in ("region", "both", "deep", "evidence"):
        parts.append(_pooled(hard, used, feats))
    if kind in ("slot", "both"):
        parts.append(predictor.maps([block])[0].slots[0, torch.from_numpy(used)].float().cpu())
    rows = torch.cat([F.normalize(p, dim=1) for p in parts], dim=1)
    return used, F.normalize(rows, dim=1).numpy(), hard, feats


def slot_class_counts(hard: np.ndarray, used: np.ndarray, mask: np.ndarray | None, num_classes: int) -> np.ndarray:
    """``(n, num_classes)`` pixels of each class (void excluded) in each used slot's region."""
    if mask is None:
        return np.zeros((len(used), num_classes), np.int64)
    valid = mask != IGNORE_INDEX
    slot_index = np.searchsorted(used, hard[valid])
    flat = np.bincount(slot_index * num_classes + mask[valid].astype(np.int64), minlength=len(used) * num_classes)
    return flat.reshape(len(used), num_classes)


# ---------------------------------------------------------------------------------- spilling
class _Spill:
    """Rows written to ``.npz`` chunk files as they come; read back chunk by chunk."""

    def __init__(self, folder: Path, name: str, rows: int) -> None:
        self.folder, self.name, self.rows = folder, name, rows
        self.buffer: dict[str, list[np.ndarray]] = {}
        self.pending = 0
        self.files: list[Path] = []

    def add(self, **arrays: np.ndarray) -> None:
        for key, value in arrays.items():
            self.buffer.setdefault(key, []).append(np.asarray(value))
        self.pending += len(next(iter(arrays.values())))
        if self.pending >= self.rows:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            path = self.folder / f"{self.name}_{len(self.files):05d}.npz"
            np.savez(path, **{k: np.concatenate(v) for k, v in self.buffer.items()})
            self.files.append(path)
        self.buffer, self.pending = {}, 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for path in self.files:
            with np.load(path) as data:
                yield {k: data[k] for k in data.files}


# ---------------------------------------------------------------------------------- purity
def purity(hist: np.ndarray) -> tuple[float, np.ndarray]:
    """``(pixel-weighted purity, per-group purity)`` of ``(groups, classes)`` pixel counts: the share
    of each group's pixels in its majority class (groups without pixels: NaN)."""
    hist = np.asarray(hist, dtype=np.float64)
    totals = hist.sum(1)
    per_group = np.divide(hist.max(1), totals, out=np.full(len(hist), np.nan), where=totals > 0)
    return (float(hist.max(1).sum() / totals.sum()) if totals.sum() else float("nan")), per_group


@dataclass
class _Concepts:
    """What the assignment pass keeps per concept: bounded whatever the number of images."""

    k: int
    classes: int
    examples: int
    members: list[list[tuple[int, int]]] = field(default_factory=list)
    pixels: np.ndarray | None = None
    hist: np.ndarray | None = None
    heaps: list[list[tuple[float, int, int]]] = field(default_factory=list)
    per_image: dict[int, dict[int, int]] = field(default_factory=dict)  # image -> slot -> concept
    centroids: np.ndarray | None = None  # (k, D): where a new image's slots are assigned

    def __post_init__(self) -> None:
        self.members = [[] for _ in range(self.k)]
        self.heaps = [[] for _ in range(self.k)]
        self.pixels, self.hist = np.zeros(self.k), np.zeros((self.k, self.classes))

    def add(self, chunk: dict[str, np.ndarray], labels: np.ndarray, distance: np.ndarray) -> None:
        np.add.at(self.pixels, labels, chunk["pixels"])
        np.add.at(self.hist, labels, chunk["counts"])
        for img, slot, c, d in zip(chunk["image"].tolist(), chunk["slot"].tolist(), labels.tolist(), distance.tolist()):
            self.members[c].append((img, slot))
            self.per_image.setdefault(img, {})[slot] = c
            heap = self.heaps[c]  # the members nearest the centre: a max-heap of -distance
            item = (-d, img, slot)
            if len(heap) < self.examples:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)

    def typical(self, c: int) -> list[tuple[int, int]]:
        return [(img, slot) for _, img, slot in sorted(self.heaps[c], reverse=True)]


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------------------- the passes
def _set_image(predictor: SlotPredictor, truth: GroundTruthImage, input_size: int | None) -> None:
    predictor.set_image(truth.rgb, input_size=input_size or min(truth.rgb.shape[:2]))


def _collect(predictor: SlotPredictor, images: ImageSource, config: AtlasConfig, num_classes: int,
             slots: _Spill, pixels: _Spill, total: int | None, progress: bool) -> tuple[list[str], np.ndarray | None]:
    """Pass 1: one row per used slot (and sampled pixel rows for CRAFT) spilled to disk; returns the
    image ids and the per-channel minimum of the stage features (CRAFT's shift)."""
    rng = np.random.default_rng(config.seed)
    ids: list[str] = []
    shift = None
    for truth in tqdm(images(), total=total, desc=f"atlas block {config.block}: slots", unit="img",
                      disable=not progress):
        _set_image(predictor, truth, config.input_size)
        used, rows, hard, feats = slot_rows(predictor, config.block, config.features)
        n = len(used)
        slots.add(features=rows.astype(np.float32), image=np.full(n, len(ids)), slot=used,
                  pixels=np.bincount(np.searchsorted(used, hard.ravel()), minlength=n),
                  counts=slot_class_counts(hard, used, truth.mask, num_classes))
        if config.craft:
            flat = feats.flatten(1).T.numpy()
            take = rng.choice(len(flat), size=min(config.craft_pixels, len(flat)), replace=False)
            pixels.add(features=flat[take])
            shift = flat.min(0) if shift is None else np.minimum(shift, flat.min(0))
        ids.append(truth.image_id)
    slots.flush()
    pixels.flush()
    if not ids:
        raise ValueError("no images to build an atlas from")
    return ids, shift


def _group(slots: _Spill, config: AtlasConfig, num_classes: int, num_slots: int) -> tuple[_Concepts, dict[str, Any]]:
    """Mini-batch k-means over the spilled rows (a few epochs), then every row assigned; also the
    purity of the two reference groupings (by slot index; every slot its own group)."""
    from sklearn.cluster import MiniBatchKMeans

    rows = sum(len(chunk["slot"]) for chunk in slots)
    if rows < config.concepts:
        raise ValueError(f"{rows} slots in all: fewer than the {config.concepts} concepts asked for")
    kmeans = MiniBatchKMeans(n_clusters=config.concepts, random_state=config.seed, batch_size=1024, n_init=3)
    for _ in range(config.epochs):
        for chunk in slots:
            if len(chunk["features"]) >= config.concepts or kmeans.__dict__.get("cluster_centers_") is not None:
                kmeans.partial_fit(chunk["features"])
    concepts = _Concepts(config.concepts, num_classes, config.examples)
    by_index = np.zeros((num_slots, num_classes))
    per_slot_best = per_slot_total = 0.0
    for chunk in slots:
        labels = kmeans.predict(chunk["features"])
        distance = np.linalg.norm(chunk["features"] - kmeans.cluster_centers_[labels], axis=1)
        concepts.add(chunk, labels, distance)
        np.add.at(by_index, chunk["slot"], chunk["counts"])
        per_slot_best += float(chunk["counts"].max(1).sum())
        per_slot_total += float(chunk["counts"].sum())
    atlas_purity = purity(concepts.hist)[0]
    index_purity = purity(by_index)[0]
    ceiling = per_slot_best / per_slot_total if per_slot_total else float("nan")
    gap = ceiling - index_purity
    concepts.centroids = kmeans.cluster_centers_.astype(np.float32)
    return concepts, dict(atlas=atlas_purity, by_index=index_purity, per_slot=ceiling,
                          gap_closed=(atlas_purity - index_purity) / gap if gap > 0 else None)


def _image_labels(predictor: SlotPredictor, truth: GroundTruthImage, same_classes: bool) -> np.ndarray:
    """Foreground classes of the image as class-score indices: from the mask when the dataset has
    the model's classes, else the classes the model predicts."""
    if truth.mask is None or not same_classes:
        return predictor.predicted_labels().astype(bool)
    fg = len(predictor.info.foreground_names)
    present = np.unique(truth.mask).astype(np.int64)
    labels = np.zeros(fg, dtype=bool)
    labels[present[(present > 0) & (present <= fg)] - 1] = True
    return labels


def _crop(rgb: np.ndarray, region: np.ndarray, side: int = 128) -> np.ndarray:
    """The slot's bounding box with a margin, its outline drawn (dark inside a white line, readable
    on any picture), scaled so the longer side is ``side`` pixels."""
    from PIL import Image
    from scipy.ndimage import binary_dilation, binary_erosion

    rows, cols = np.nonzero(region)
    h, w = region.shape
    pad = max(4, int(0.15 * max(np.ptp(rows) + 1, np.ptp(cols) + 1)))
    r0, r1 = max(0, rows.min() - pad), min(h, rows.max() + pad + 1)
    c0, c1 = max(0, cols.min() - pad), min(w, cols.max() + pad + 1)
    scale = side / max(r1 - r0, c1 - c0)
    size = (max(1, round((c1 - c0) * scale)), max(1, round((r1 - r0) * scale)))
    crop = np.asarray(Image.fromarray(rgb[r0:r1, c0:c1]).resize(size, Image.Resampling.LANCZOS)).copy()
    inside = np.asarray(Image.fromarray(region[r0:r1, c0:c1].astype(np.uint8) * 255).resize(size)) > 127
    edge = inside & ~binary_erosion(inside, iterations=2)
    crop[binary_dilation(edge, iterations=1) & ~edge] = 255
    crop[edge] = (20, 20, 20)
    return crop


@dataclass
class _Scoring:
    """Pass 2's running state: CRAFT's class histogram, importance tables, kept fidelity images."""

    hist: np.ndarray
    importance: dict[str, ImportanceSum]
    kept: list[tuple[torch.Tensor, dict[str, np.ndarray], np.ndarray]] = field(default_factory=list)
    crops: dict[tuple[int, int], str] = field(default_factory=dict)


def _score_image(predictor: SlotPredictor, truth: GroundTruthImage, index: int, config: AtlasConfig,
                 concepts: _Concepts, craft: CraftConcepts | None, state: _Scoring, want: dict[tuple[int, int], str],
                 out: Path, same_classes: bool) -> None:
    """Pass 2 on one image: concept maps of both banks, CRAFT's purity counts, crops of typical
    members, and single-concept deletions for the importance tables."""
    _set_image(predictor, truth, config.input_size)
    hard = predictor.hard_slots(config.block)
    lut = concepts.per_image.get(index, {})
    table = np.zeros(int(hard.max()) + 1, dtype=np.int64)
    table[list(lut)] = list(lut.values())
    maps = {"slot_atlas": table[hard]}
    if craft is not None:
        maps["craft"] = craft.concept_map(layer_features(predictor, config.block, config.features), hard.shape)
        if truth.mask is not None:
            valid = truth.mask != IGNORE_INDEX
            np.add.at(state.hist, (maps["craft"][valid], truth.mask[valid].astype(np.int64)), 1)
    for slot in np.unique(hard).tolist():
        name = want.get((index, slot))
        if name is not None:
            from PIL import Image

            (out / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_crop(truth.rgb, hard == slot)).save(out / name)
            state.crops[(index, slot)] = name
    if index < config.fidelity_images:
        labels = _image_labels(predictor, truth, same_classes)
        score_fn = head_score_fn(predictor.info)
        for name, cmap in maps.items():
            with torch.no_grad(), network_autocast(predictor.batch.device):
                present, drops = single_concept_drops(predictor.model, predictor.batch, cmap, score_fn)
            state.importance[name].add(present, drops, labels)
        state.kept.append((predictor.batch.cpu(), maps, labels))


def _fidelity(predictor: SlotPredictor, state: _Scoring) -> dict[str, Any]:
    """Pass 3: deletion / insertion AUC per bank, concepts ranked by the final importance tables."""
    score_fn = head_score_fn(predictor.info)
    result: dict[str, Any] = {}
    for name, table in state.importance.items():
        importance = table.mean()
        rows = []
        for batch, maps, labels in state.kept:
            with torch.no_grad(), network_autocast(predictor.device):
                rows += concept_curves(predictor.model, batch.to(predictor.device), maps[name], importance,
                                       np.flatnonzero(labels).tolist(), score_fn)
        result[name] = dict(pairs=len(rows), images=len(state.kept),
                            deletion_auc=float(np.mean([r["deletion_auc"] for r in rows])) if rows else None,
                            insertion_auc=float(np.mean([r["insertion_auc"] for r in rows])) if rows else None)
    return result


def build_atlas(predictor: SlotPredictor, images: ImageSource, out: str | Path, config: AtlasConfig | None = None, *,
                class_names: list[str] | None = None, total: int | None = None, progress: bool = True,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the atlas of ``config.block`` over ``images()`` (called once per pass) and score it
    against CRAFT; crops go to ``out/crops/``. Returns the ``atlas.json`` dictionary.

    ``class_names``: the masks' classes, background first (None: no ground truth, no purity).
    """
    config = config or AtlasConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(class_names or ["background"])
    num_slots = predictor.maps([config.block])[0].num_slots if predictor.output is not None else 0
    same_classes = names == predictor.info.class_names
    with tempfile.TemporaryDirectory(prefix=".atlas-", dir=out) as work:
        slots, pixels = _Spill(Path(work), "slots", config.chunk_rows), _Spill(Path(work), "pixels", config.chunk_rows)
        ids, shift = _collect(predictor, images, config, len(names), slots, pixels, total, progress)
        num_slots = max(num_slots, predictor.maps([config.block])[0].num_slots)
        concepts, purities = _group(slots, config, len(names), num_slots)
        craft = None
        if config.craft:
            craft = CraftConcepts(config.concepts, config.seed).fit(lambda: (c["features"] for c in pixels), shift,
                                                                   config.epochs)
    want = {m: f"crops/c{c:02d}_{j}.png" for c in range(config.concepts) for j, m in enumerate(concepts.typical(c))}
    fg = len(predictor.info.foreground_names)
    state = _Scoring(np.zeros((config.concepts, len(names))),
                     {k: ImportanceSum(config.concepts, fg) for k in ("slot_atlas", "craft") if k != "craft" or craft})
    needed = {img for img, _ in want} | set(range(config.fidelity_images))
    for index, truth in enumerate(tqdm(images(), total=total, desc="atlas: scoring", unit="img", disable=not progress)):
        if craft is not None or index in needed:
            _score_image(predictor, truth, index, config, concepts, craft, state, want, out, same_classes)
    fidelity = _fidelity(predictor, state)
    return _assemble(config, ids, names, concepts, purities, state, fidelity, predictor, craft is not None, meta)


def _assemble(config: AtlasConfig, ids: list[str], names: list[str], concepts: _Concepts, purities: dict[str, Any],
              state: _Scoring, fidelity: dict[str, Any], predictor: SlotPredictor, with_craft: bool,
              meta: dict[str, Any] | None) -> dict[str, Any]:
    """The ``atlas.json`` dictionary."""
    from ..models.slots import block_label

    has_truth = concepts.hist.sum() > 0
    per_concept = purity(concepts.hist)[1]
    importance = state.importance["slot_atlas"].mean()
    fg_names = predictor.info.foreground_names
    total_pixels = concepts.pixels.sum()
    rows = []
    for c in range(config.concepts):
        hist = concepts.hist[c]
        shares = hist / hist.sum() if hist.sum() else hist
        top = np.argsort(-shares)[:3]
        rows.append(dict(
            id=c, size=len(concepts.members[c]), share=float(concepts.pixels[c] / total_pixels),
            purity=float(per_concept[c]) if has_truth and np.isfinite(per_concept[c]) else None,
            majority=names[int(top[0])] if has_truth and hist.sum() else None,
            class_shares={names[int(k)]: round(float(shares[k]), 4) for k in top if shares[k] > 0} if has_truth else {},
            importance={fg_names[k]: round(float(importance[c, k]), 5) for k in range(len(fg_names))},
            examples=[dict(image_id=ids[img], slot=int(slot), crop=state.crops.get((img, slot)))
                      for img, slot in concepts.typical(c)],
            members=[[ids[img], int(slot)] for img, slot in concepts.members[c]]))
    craft_purity = purity(state.hist)[0] if with_craft and has_truth else None
    return {**(meta or {}), "block": config.block,
            "block_name": block_label(config.block, predictor.maps([config.block])[0]),
            "images": len(ids), "slots": int(sum(r["size"] for r in rows)), "config": asdict(config),
            "classes": names, "purity": purities if has_truth else None,
            "craft": {"purity": craft_purity} if with_craft else None, "fidelity": fidelity,
            "peak_rss_mb": round(_peak_rss_mb(), 1), "concepts": rows,
            "centroids": np.round(concepts.centroids, 5).tolist()}
