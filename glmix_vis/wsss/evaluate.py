"""The WSSS evaluation driver: every image of a split through :mod:`~glmix_vis.wsss.pipeline`, scored.

:func:`evaluate` is a thin, resumable driver in named steps:

1. :func:`_setup`: the dataset, whose ground truth is checked in full first
   (:meth:`SegmentationDataset.validate`, file headers only), so a broken dataset stops the run,
   listing every bad file, before anything is computed or written; then the model and the method;
2. :meth:`OutputDir.claim <glmix_vis.wsss.outdir.OutputDir.claim>`: ``OUT/settings.json`` records
   what decides the masks (data, checkpoint digest, method and its options, threshold, CRF,
   test-time augmentation); a later run with other settings and the same OUT stops with an error
   instead of mixing masks;
3. :func:`_compute_masks`: per image, :func:`~glmix_vis.wsss.pipeline.pseudo_mask` (the same
   function :class:`~glmix_vis.predictor.SlotPredictor` calls), its mask written at once to
   ``masks_nocrf/`` (``masks/`` without the CRF), and the CRF refinement streamed to
   :func:`~glmix_vis.wsss.crf.crf_stream`, whose pool (:func:`~glmix_vis.wsss.crf.crf_pool`: its
   workers end with this process, even when it is killed) refines and writes ``masks/`` while the
   network computes the next images. A thread reads the next images meanwhile, consecutive images
   of one size may share a forward pass (``batch_size``), and the network's threads and the CRF
   pool share the cores (:mod:`~glmix_vis.wsss.scheduling`). Every mask is written atomically and
   an image whose masks exist is not recomputed;
4. :func:`_confusions` and :func:`_report`: the metrics, from the mask files and the ground truth.

Under ``torchrun`` each process takes every ``world``-th image and the confusion matrices are
summed across processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from ..data import SegmentationDataset, dataset_title, open_dataset
from ..devices import DEFAULT_PRECISION, inference_precision, init_distributed
from ..loading import ModelInfo, checkpoint_line, load_model
from ..models.slots import SlotOutput, run_slots
from ..preprocess import image_to_batch, model_input_size
from .crf import crf_stream
from .evidence import EvidenceMethod
from .evidence.usable import check_method
from .masks import DEFAULT_BG_THRESHOLD, DEFAULT_THRESHOLDS, best_threshold
from .metrics import ConfusionMatrix, Metrics, all_reduce_confusion
from .outdir import SETTINGS_FILE, OutputDir, refuse_other_settings
from .pipeline import ImageInput, PseudoMask, pseudo_mask, slot_oracle
from .recipe import ORACLE_METHOD, MaskRecipe
from .scheduling import DEFAULT_BATCH_SIZE, consecutive_groups, plan_cores, read_ahead

__all__ = ["EvalConfig", "evaluate", "check_output_folder", "ORACLE_METHOD", "SETTINGS_FILE"]

#: A sweep's progress is saved every this many images (and at the end).
SWEEP_SAVE_EVERY = 50


def _eval_recipe() -> MaskRecipe:
    return MaskRecipe(crf=True)  # eval refines with the dense CRF unless told otherwise


@dataclass
class EvalConfig:
    """Settings of one evaluation run (written into ``metrics.json``): how each mask is made (the
    ``recipe``) and how the run goes (data, labels, sweep, devices, sharing the cores).
    Checked when built, before any data or model is touched."""

    out: str
    dataset: str = "voc"
    root: str | None = None
    split: str = "train"
    checkpoint: str | None = None
    recipe: MaskRecipe = field(default_factory=_eval_recipe)
    labels: str = "gt"  # the classes a mask may use: the image's ground-truth labels, or the head's ("pred")
    sweep: bool = False
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    input_size: int | None = None
    device: str = "auto"
    workers: int | None = None  # CRF processes (0: in this process); None: scheduling.plan_cores shares the cores
    threads: int | None = None  # torch threads of the network; None: the cores the CRF workers leave
    batch_size: int = DEFAULT_BATCH_SIZE  # consecutive images of one size per forward pass
    precision: str = DEFAULT_PRECISION  # of the network's forward passes; _setup resolves auto (fp32, bf16, fp16)
    limit: int | None = None
    progress: bool = True
    faithfulness: bool = False  # also score the evidence by ROAD and deletion/insertion AUC (costly)
    faithfulness_images: int | None = 100  # of the run's first images; None: all of them
    save_evidence: bool = False  # also write OUT/evidence/<id>.npy, the evidence each mask thresholds (IRN's layout)

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, MaskRecipe):
            raise ValueError(f"recipe must be a MaskRecipe, got {type(self.recipe).__name__}")
        if self.labels not in ("gt", "pred"):
            raise ValueError(f"labels must be 'gt' or 'pred', got {self.labels!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.recipe.is_oracle and self.sweep:
            raise ValueError(f"{ORACLE_METHOD} has no class scores to sweep a background threshold over")
        if self.recipe.is_segmenter and self.sweep:
            raise ValueError("seg takes the segmenter's argmax over every class: it has no background threshold to sweep")
        if self.recipe.is_oracle and self.faithfulness:
            raise ValueError(f"{ORACLE_METHOD} has no class evidence whose faithfulness could be scored")
        if self.recipe.is_oracle and self.save_evidence:
            raise ValueError(f"{ORACLE_METHOD} has no class evidence to save")

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``metrics.json`` reports them: the run's, then the recipe's, one flat record."""
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "recipe"}
        settings.update(self.recipe.to_dict(), thresholds=list(self.thresholds))
        return settings


@dataclass
class _Timing:
    forward: float = 0.0
    crf: float = 0.0
    images: int = 0
    already_there: int = 0  # images whose masks an earlier run wrote


@dataclass
class _Run:
    """Everything one rank's run works with, resolved by :func:`_setup`."""

    config: EvalConfig  # bg_threshold and split resolved
    rank: int
    world: int
    device: torch.device
    dataset: SegmentationDataset
    model: nn.Module
    info: ModelInfo
    method: EvidenceMethod | None  # None: the slot oracle
    count: int  # images in the run (the split, or --limit of it)

    @property
    def mine(self) -> list[int]:
        """This rank's share of the images."""
        return list(range(self.count))[self.rank::self.world]

    @property
    def progress(self) -> bool:
        return self.config.progress and self.rank == 0


class _Sweep:
    """The background-threshold sweep's confusion matrices, accumulated and saved as images go."""

    def __init__(self, store: OutputDir, rank: int, thresholds: Sequence[float], num_classes: int) -> None:
        self.store, self.rank, self.thresholds = store, rank, list(thresholds)
        self.confusion = np.zeros((len(self.thresholds), num_classes, num_classes), np.int64)
        self.done: set[str] = set()
        saved = store.load_sweep(rank, self.thresholds)
        if saved is not None:
            self.confusion += saved[0]
            self.done = saved[1]

    def needs(self, image_id: str) -> bool:
        return image_id not in self.done

    def add(self, image_id: str, result: PseudoMask, gt: np.ndarray) -> None:
        self.confusion += result.sweep_confusions(gt, self.thresholds)  # refined per threshold, if refined
        self.done.add(image_id)
        if len(self.done) % SWEEP_SAVE_EVERY == 0:
            self.save()

    def save(self) -> None:
        self.store.save_sweep(self.rank, self.confusion, self.done, self.thresholds)


def _check_classes(dataset: SegmentationDataset, info: ModelInfo) -> None:
    if list(dataset.class_names) != list(info.class_names):
        raise ValueError(
            f"the model predicts {info.class_names} but the dataset has {list(dataset.class_names)}; "
            "use a checkpoint trained on this dataset (or an ImageNet checkpoint with --dataset voc)")


def _versions() -> dict[str, str]:
    import timm

    from .. import __version__

    versions = dict(glmix_vis=__version__, torch=torch.__version__, timm=timm.__version__,
                    numpy=np.__version__, python=platform.python_version())
    try:
        from importlib.metadata import version

        versions["pydensecrf"] = version("pydensecrf2")
    except Exception:  # noqa: BLE001 - the version is informative only
        pass
    return versions


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run (or resume) the evaluation and return the metrics dictionary written to ``metrics.json``."""
    started = time.perf_counter()
    check_output_folder(config)
    run = _setup(config)
    config = run.config
    store = OutputDir(config.out, crf=config.recipe.crf)
    if run.progress:  # said once the run is known to be sound, before anything is written
        tqdm.write(checkpoint_line(run.info.checkpoint, config.checkpoint), file=sys.stderr)
        tqdm.write(f"masks and metrics go to {Path(config.out).resolve()}", file=sys.stderr)
    store.claim(_mask_settings(config, run.info), write=run.rank == 0)
    sweep = _Sweep(store, run.rank, config.thresholds, len(run.dataset.class_names)) if config.sweep else None
    try:
        timing = _compute_masks(run, store, sweep)
    except BaseException:
        if run.rank == 0:
            store.release_if_unused()
        raise
    final, raw, sweep_matrices, unlabelled = _confusions(run, store, sweep)
    faithfulness = _faithfulness(run) if config.faithfulness else None
    if run.rank != 0:
        return {}
    result = _report(config, run.dataset, run.info, final, raw, sweep_matrices,
                     _timing_record(config, timing, time.perf_counter() - started, run.count, store.read_metrics()),
                     run.count)
    if faithfulness is not None:
        result["faithfulness"] = faithfulness
    if config.recipe.ignore_band is not None:  # the share of valid pixels the band left labelled
        result["coverage"] = 100.0 * float(final.sum()) / max(float(final.sum()) + unlabelled, 1.0)
    store.write_metrics(result, _markdown(result, Metrics.from_confusion(final), run.dataset.class_names))
    return result


def _known_settings(config: EvalConfig) -> dict[str, Any]:
    """The part of :func:`_mask_settings` known before any data or model is read."""
    known: dict[str, Any] = dict(dataset=config.dataset, input_size=config.input_size)
    if config.root is not None:
        known["root"] = str(Path(config.root).resolve())
    record = config.recipe.record()
    if record.get("bg_threshold", 0) is None:  # decided by the checkpoint: known once it is read
        del record["bg_threshold"]
    known.update(record)
    if not (config.recipe.is_oracle or config.recipe.is_segmenter):
        known["labels"] = config.labels
    return json.loads(json.dumps(known, default=str))


def check_output_folder(config: EvalConfig) -> None:
    """Refuse an output folder whose masks were made with other settings before anything slow runs
    (a dataset generated or checked, a model read): the settings known from the command alone are
    compared now (:func:`~glmix_vis.wsss.outdir.refuse_other_settings`), the rest once the model is
    read. A folder that holds no mask yet ties nothing."""
    store = OutputDir(config.out, crf=config.recipe.crf)
    if store.holds_masks():
        refuse_other_settings(store.root, _known_settings(config), holds="masks")


def _setup(config: EvalConfig) -> _Run:
    """The dataset (its whole ground truth checked), the model and the method; nothing is written."""
    here = init_distributed(config.device)
    rank, world, device = here.rank, here.world, here.device
    dataset = open_dataset(config.dataset, config.root, config.split)
    config = replace(config, split=dataset.split)  # the canonical name of an alias such as mmseg's "aug"
    if not dataset.has_masks:
        raise ValueError(f"{dataset.root} split {dataset.split!r} has no masks to score against")
    # The whole split, even with --limit (a trial run is where a broken dataset should show), and on
    # every rank, so that all ranks stop together instead of one waiting in an all-reduce.
    dataset.validate(progress=config.progress and rank == 0)
    model, info = load_model(config.checkpoint, device=device, precision=config.precision)
    config = replace(config, precision=info.precision_name)  # what auto chose, recorded
    _check_classes(dataset, info)
    config = replace(config, recipe=config.recipe.resolved(info))  # the threshold decided once, recorded
    recipe = config.recipe
    method = None if recipe.is_oracle else recipe.evidence_method(info.class_map)
    recipe.refiner().check(getattr(model, "num_glmix_blocks", 0))
    with inference_precision(info.precision):
        _try_method(model, method, config, device)
    cores = plan_cores(config.recipe.crf, device, config.workers, config.threads,
                       processes_here=int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    config = replace(config, workers=cores.crf_workers, threads=cores.torch_threads)
    count = len(dataset) if config.limit is None else min(config.limit, len(dataset))
    return _Run(config, rank, world, device, dataset, model, info, method, count)


@torch.no_grad()
def _try_method(model: nn.Module, method: EvidenceMethod | None, config: EvalConfig, device: torch.device) -> None:
    """Stop the run before OUT exists when the method or an option cannot serve this model (``token``
    without a token head, a GLMix block it lacks): :meth:`EvidenceMethod.check` on a small blank
    image, the same rule the app applies when it lists a model's methods."""
    if method is None:
        from ..models.slots import resolve_blocks

        resolve_blocks(getattr(model, "num_glmix_blocks", 0), [config.recipe.oracle_block])
        return
    check_method(model, method)


@dataclass
class _Item:
    """One image read ahead for the loop: its index, pixels and, for the sweep, its ground truth."""

    index: int
    image_id: str
    image: np.ndarray
    gt: np.ndarray | None


def _compute_masks(run: _Run, store: OutputDir, sweep: _Sweep | None) -> _Timing:
    """Write the masks of this rank's images that are not on disk yet, in dataset order.

    A thread reads the next images while the network computes; consecutive images of one input
    size share a forward pass (``batch_size``; not with test-time augmentation or a method that
    runs the model itself); the CRF pool refines and writes the previous images meanwhile, and
    torch's threads are the cores the pool leaves (``threads``).
    """
    config, palette = run.config, run.dataset.palette
    timing = _Timing()
    todo: list[tuple[int, bool]] = []
    for i in run.mine:
        image_id = run.dataset.image_ids[i]
        need_sweep = sweep is not None and sweep.needs(image_id)
        done = store.has_masks(image_id) and (not config.save_evidence or store.has_evidence(image_id))
        if need_sweep or not done:  # else resumed: already written
            todo.append((i, need_sweep))
    timing.already_there = len(run.mine) - len(todo)
    if timing.already_there and run.progress:
        tqdm.write(f"{timing.already_there} of {len(run.mine)} images already have their masks in {config.out}: "
                   f"computing the other {len(todo)}", file=sys.stderr)
    bar = tqdm(total=len(run.mine), initial=len(run.mine) - len(todo), desc=f"eval {config.recipe.method}",
               disable=not run.progress, unit="img")
    batch = _batch_size(run)

    def read(job: tuple[int, bool]) -> _Item:
        i, need_sweep = job
        gt = run.dataset.load_mask(i) if need_sweep else None
        return _Item(i, run.dataset.image_ids[i], run.dataset.load_image(i), gt)

    def input_size(item: _Item) -> tuple[int, int]:
        return model_input_size(*item.image.shape[:2], config.input_size or None)

    def crf_jobs() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        with closing(read_ahead(todo, read, start_after=batch)) as items:
            for group in consecutive_groups(items, input_size, batch):
                t0 = time.perf_counter()
                outputs = _forward_group(run, group)
                timing.forward += time.perf_counter() - t0
                for item, slots in zip(group, outputs):
                    t0 = time.perf_counter()
                    with inference_precision(run.info.precision):
                        raw, result = _image_mask(run, item.index, item.image, slots=slots)
                    timing.forward += time.perf_counter() - t0
                    timing.images += 1
                    if item.gt is not None:
                        assert sweep is not None and result is not None
                        sweep.add(item.image_id, result, item.gt)
                    store.write_raw(item.image_id, raw, palette)
                    if config.save_evidence:
                        assert result is not None
                        classes = np.flatnonzero(result.labels)
                        store.write_evidence(item.image_id, classes, result.mask_scores[classes])
                    bar.update()
                    if config.recipe.crf:
                        assert result is not None
                        yield item.image_id, item.image, result.unary()

    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        if config.recipe.crf:
            stream = crf_stream(crf_jobs(), config.recipe.crf_params, workers=config.workers or 0,
                                sink=store.mask_writer(palette, keep_ignored=config.recipe.ignore_band is not None))
            with closing(stream):
                for _, _, seconds in stream:
                    timing.crf += seconds
        else:
            for _ in crf_jobs():
                pass
    finally:
        torch.set_num_threads(threads)
        bar.close()
        if sweep is not None:
            sweep.save()
    return timing


def _batch_size(run: _Run) -> int:
    """Images per forward pass: ``batch_size``, or 1 where a shared pass would not be used (test-time
    augmentation runs its own passes; a method that runs the model itself takes the images)."""
    if run.config.recipe.augments or getattr(run.method, "needs_images", False):
        return 1
    return run.config.batch_size


def _forward_group(run: _Run, group: list[_Item]) -> list[SlotOutput | None]:
    """One forward pass over a group of images of one input size, split per image; a group of one
    is left to the pipeline (None), exactly as without batching."""
    if len(group) == 1:
        return [None]
    size = run.config.input_size or None
    x = torch.cat([image_to_batch(item.image, run.info.mean, run.info.std, short_side=size, device=run.device)
                   for item in group])
    with inference_precision(run.info.precision):
        return run_slots(run.model, x).split()


def _image_mask(run: _Run, i: int, image: np.ndarray,
                slots: SlotOutput | None = None) -> tuple[np.ndarray, PseudoMask | None]:
    """Image ``i``'s mask before any CRF, and the pipeline's result behind it (``None`` for the oracle).
    ``slots``: the image's forward pass when the loop ran it in a batch (else run here)."""
    config = run.config
    x = image_to_batch(image, run.info.mean, run.info.std, short_side=config.input_size or None, device=run.device)
    if run.method is None:
        return slot_oracle(run.model, x, run.dataset.load_mask(i), config.recipe.oracle_block, slots=slots), None
    labels = run.dataset.image_labels(i) if config.labels == "gt" else None
    result = pseudo_mask(run.model, run.info, ImageInput(image, x, slots), config.recipe, labels)
    return result.mask, result


def _faithfulness(run: _Run) -> dict[str, Any] | None:
    """ROAD and deletion/insertion AUC (:mod:`~glmix_vis.wsss.faithfulness`) of the method's evidence
    for the ground-truth classes of the run's first ``faithfulness_images`` images, at the size the
    network sees them, with the run's test-time augmentation. One row per image goes to
    ``OUT/faithfulness.jsonl`` (``faithfulness.rank<r>.jsonl`` under torchrun) as it is done, so a
    resumed run skips those images. Returns the summary on rank 0 (``None`` on the others)."""
    from .faithfulness import FaithfulnessConfig, RowStore, head_score_fn, image_faithfulness, summarize
    from .pipeline import class_evidence

    config, method = run.config, run.method
    assert method is not None
    settings = FaithfulnessConfig()
    n = run.count if config.faithfulness_images is None else min(config.faithfulness_images, run.count)

    def rows_file(rank: int) -> Path:
        return Path(config.out) / ("faithfulness.jsonl" if run.world == 1 else f"faithfulness.rank{rank}.jsonl")

    store, score_fn = RowStore(rows_file(run.rank), settings), head_score_fn(run.info)
    for i in tqdm([i for i in run.mine if i < n], desc="faithfulness", disable=not run.progress, unit="img"):
        image_id = run.dataset.image_ids[i]
        if image_id in store:
            continue
        image = run.dataset.load_image(i)
        x = image_to_batch(image, run.info.mean, run.info.std, short_side=config.input_size or None,
                           device=run.device)
        classes = np.flatnonzero(run.dataset.image_labels(i)).tolist()
        with inference_precision(run.info.precision):  # the scores below are read in float32
            maps = class_evidence(method, run.model, x, x.shape[-2:], scales=config.recipe.scales, flip=config.recipe.flip,
                                  classes=classes)
        store.add(image_id, image_faithfulness(run.model, x, maps, classes, score_fn, settings))
    if run.world > 1:
        dist.barrier()
    if run.rank != 0:
        return None
    rows = [row for r in range(run.world) for row in RowStore(rows_file(r), settings).rows.values()]
    wanted = set(run.dataset.image_ids[:n])
    summary = summarize(r for r in rows if r["image_id"] in wanted)
    summary.update(settings.to_dict(), images_requested=n,
                   score="sigmoid per class" if run.info.multilabel else
                   ("softmax mass of the class's group" if run.info.class_map else "softmax"),
                   convention="mean over (image, ground-truth class) pairs; road_morf and deletion_auc: "
                              "lower is more faithful; road_lerf, road_combined and insertion_auc: higher is")
    return summary


def _confusions(run: _Run, store: OutputDir, sweep: _Sweep | None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Confusion matrices of the final masks, of those before the CRF and of the sweep, and the valid
    pixels the final masks left unlabelled (255), summed over ranks; read from what is on disk, so
    identical whether the run was interrupted or not."""
    num_classes = len(run.dataset.class_names)
    final_cm, raw_cm = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    for i in run.mine:
        gt = run.dataset.load_mask(i)
        image_id = run.dataset.image_ids[i]
        final_cm.update(store.read_mask(image_id, gt.shape), gt)
        if run.config.recipe.crf:
            raw_cm.update(store.read_raw(image_id, gt.shape), gt)
    final, raw, unlabelled = final_cm.matrix, raw_cm.matrix, np.array([[final_cm.unlabelled]])
    swept = None if sweep is None else sweep.confusion
    if run.world > 1:
        final, raw = all_reduce_confusion(final), all_reduce_confusion(raw)
        unlabelled = all_reduce_confusion(unlabelled)
        if swept is not None:
            swept = np.stack([all_reduce_confusion(m) for m in swept])
    return final, raw, swept, int(unlabelled[0, 0])


def _file_digest(path: str | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mask_settings(config: EvalConfig, info: ModelInfo) -> dict[str, Any]:
    """Everything that decides the masks written to OUT (not --limit, --workers or the device): the
    data, the checkpoint, the input size and the recipe's :meth:`~MaskRecipe.record`."""
    settings: dict[str, Any] = dict(
        dataset=config.dataset, root=str(Path(config.root).resolve()) if config.root else None, split=config.split,
        checkpoint_sha256=_file_digest(info.checkpoint), model=info.name, input_size=config.input_size,
        **config.recipe.record())
    if not (config.recipe.is_oracle or config.recipe.is_segmenter):  # those use no image labels
        settings["labels"] = config.labels
    if info.precision != torch.float32:  # absent for fp32, so folders from before --precision still resume
        settings["precision"] = info.precision_name
    return json.loads(json.dumps(settings, default=str))  # the form it is compared in after a reload


def _timing_record(config: EvalConfig, timing: _Timing, seconds: float, n: int,
                   previous: dict[str, Any] | None) -> dict[str, Any]:
    """What the masks cost: this run's work, added to the record of the run that wrote the masks it
    found (``previous``: the folder's earlier ``metrics.json``), so a resumed run that computed
    nothing keeps the timing of the run that did instead of overwriting it with its own."""
    record = dict(images_computed=timing.images, images_already_there=timing.already_there,
                  forward_s=timing.forward, crf_s=timing.crf, total_s=seconds)
    before = (previous or {}).get("timing", {})
    if timing.already_there and "forward_s_per_image" in before:
        done = int(before.get("images_computed", 0))
        record["images_computed"] += done
        record["forward_s"] += before["forward_s_per_image"] * done
        record["crf_s"] += before["crf_s_per_image"] * done
        record["total_s"] += float(before.get("total_s", 0.0))
    per_image = max(record["images_computed"], 1)
    return dict(images_computed=record["images_computed"], images_already_there=timing.already_there,
                forward_s_per_image=record["forward_s"] / per_image, crf_s_per_image=record["crf_s"] / per_image,
                total_s=record["total_s"], total_s_per_image=record["total_s"] / max(n, 1),
                crf_workers=config.workers, torch_threads=config.threads, batch_size=config.batch_size)


def _report(config: EvalConfig, dataset: SegmentationDataset, info: ModelInfo, final: np.ndarray,
            raw: np.ndarray, sweep: np.ndarray | None, timing: dict[str, Any], n: int) -> dict[str, Any]:
    names = list(dataset.class_names)
    result = Metrics.from_confusion(final).to_dict(names)
    result["miou_convention"] = ("IoU = TP / (TP + FP + FN) per class over the confusion matrix accumulated on "
                                "the whole split, label 255 ignored; a class with TP + FP + FN = 0 (absent from "
                                "both ground truth and prediction) is left out of the mean, as the standard VOC "
                                "evaluation does")
    if config.recipe.crf:
        result["nocrf"] = {"miou": Metrics.from_confusion(raw).to_dict(names)["miou"]}
    if sweep is not None:
        best = best_threshold(sweep, list(config.thresholds))
        result["threshold_sweep"] = best.to_dict()
    settings = config.to_dict()
    settings["checkpoint"] = info.checkpoint
    settings["model"] = info.name
    result["settings"] = settings
    result["images"] = n
    result["dataset_name"] = dataset_title(config.dataset, dataset)
    if not (config.recipe.is_oracle or config.recipe.is_segmenter):
        result["bg_threshold"] = dict(value=config.recipe.threshold, source=_threshold_source(config, info))
    result["timing"] = timing
    result["versions"] = _versions()
    return result


def _threshold_source(config: EvalConfig, info: ModelInfo) -> str:
    """Where the background threshold that decided the masks came from (the recipe's one rule)."""
    tuned = info.meta.tuned_bg_threshold(config.recipe.method)
    if tuned is not None and tuned == config.recipe.threshold:
        return f"the value the checkpoint records for {config.recipe.method}, tuned on its training split"
    if tuned is None and config.recipe.threshold == DEFAULT_BG_THRESHOLD:
        return "the default, IRN's (the checkpoint records none for this method)"
    return "--bg-threshold"


def _markdown(result: dict[str, Any], metrics: Metrics, class_names: Sequence[str]) -> str:
    s = result["settings"]
    refined = f" + {s['refinement']}" if s.get("refinement", "none") != "none" else ""
    lines = [f"# {s['method']}{refined}{' + CRF' if s['crf'] else ''} on {result['dataset_name']} {s['split']}", "",
             f"mIoU **{result['miou']:.2f}** over {result['images']} images "
             f"(model {s['model']}, checkpoint `{s['checkpoint']}`).", ""]
    if "bg_threshold" in result:
        t = result["bg_threshold"]
        lines += [f"Background threshold {t['value']:g} ({t['source']}): a pixel is background unless its best "
                  "allowed class scores above it.", ""]
    if "nocrf" in result:
        lines += [f"Without CRF: {result['nocrf']['miou']:.2f}.", ""]
    if "coverage" in result:
        lines += [f"Confidence band {s['ignore_band']}: {result['coverage']:.1f}% of the valid pixels labelled "
                  "(the rest written 255, left out of the scores).", ""]
    if "threshold_sweep" in result:
        sw = result["threshold_sweep"]
        lines += [f"Best background threshold: {sw['best_threshold']} (mIoU {sw['best_miou']:.2f}).", ""]
    if result.get("faithfulness", {}).get("pairs"):
        f = result["faithfulness"]
        lines += [f"Faithfulness over {f['pairs']} (image, class) pairs of {f['images']} images: ROAD MoRF "
                  f"{f['road_morf']:.4f}, LeRF {f['road_lerf']:.4f}, combined {f['road_combined']:.4f}; deletion "
                  f"AUC {f['deletion_auc']:.4f}, insertion AUC {f['insertion_auc']:.4f}.", ""]
    lines.append(metrics.to_markdown(class_names))
    return "\n".join(lines) + "\n"
