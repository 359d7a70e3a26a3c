"""The WSSS evaluation loop: evidence -> pseudo-masks -> (CRF) -> palette PNGs -> mIoU.

The ground truth of the whole split is checked first (:meth:`SegmentationDataset.validate`, file
headers only), so a broken dataset stops the run, listing every bad file, before anything is
computed or written. Resumable and shardable by construction: every image's masks are written
atomically as ``OUT/masks/<id>.png`` (and ``OUT/masks_nocrf/<id>.png`` when the CRF is on), an
image whose masks exist is not recomputed, and the metrics are computed at the end from the mask
files and the ground truth. ``OUT/settings.json`` records what decides the masks (data, checkpoint
digest, method and its options, threshold, CRF, test-time augmentation); a later run with other
settings and the same OUT stops with an error instead of mixing masks. Under ``torchrun`` each
process takes every ``world``-th image and the confusion matrices are summed across processes.
The CRF runs in a process pool (:func:`~glmix_vis.wsss.crf.crf_pool`: its workers end with this
process, even when it is killed) while the network computes the next images.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..data import SegmentationDataset, load_palette_png, open_dataset, save_palette_png
from ..devices import resolve_device
from ..loading import ModelInfo, load_model
from ..preprocess import image_to_batch
from .crf import CRFParams, crf_labels, crf_pool
from .evidence import get_evidence_method
from .masks import (
    DEFAULT_THRESHOLDS,
    best_threshold,
    scores_to_mask,
    sweep_confusions,
    unary_probabilities,
)
from .metrics import ConfusionMatrix, Metrics, all_reduce_confusion
from .oracle import slot_oracle_mask
from .tta import tta_evidence

__all__ = ["EvalConfig", "evaluate", "ORACLE_METHOD"]

ORACLE_METHOD = "slot-oracle"
#: Written into OUT on the first run: the settings its masks were made with.
SETTINGS_FILE = "settings.json"


@dataclass
class EvalConfig:
    """Settings of one evaluation run (written into ``metrics.json``)."""

    out: str
    dataset: str = "voc"
    root: str | None = None
    split: str = "train"
    checkpoint: str | None = None
    method: str = "slot-cam"
    method_options: dict[str, Any] = field(default_factory=dict)
    bg_threshold: float | None = None  # None: the checkpoint's tuned value for the method, else 0.15
    sweep: bool = False
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    crf: bool = True
    crf_params: CRFParams = field(default_factory=CRFParams)
    scales: Sequence[float] = (1.0,)
    flip: bool = False
    input_size: int | None = None
    labels: str = "gt"
    device: str = "auto"
    workers: int = 1
    limit: int | None = None
    oracle_block: int = -1
    progress: bool = True


@dataclass
class _Timing:
    forward: float = 0.0
    crf: float = 0.0
    images: int = 0


def _crf_job(image: np.ndarray, probs: np.ndarray, params: CRFParams, path: str, palette: np.ndarray) -> float:
    """Runs in a worker process: refine, write the mask, return the seconds spent."""
    started = time.perf_counter()
    save_palette_png(path, crf_labels(image, probs, params).astype(np.uint8), palette)
    return time.perf_counter() - started


def _check_classes(dataset: SegmentationDataset, info: ModelInfo) -> None:
    if list(dataset.class_names) != list(info.class_names):
        raise ValueError(
            f"the model predicts {info.class_names} but the dataset has {list(dataset.class_names)}; "
            "use a checkpoint trained on this dataset (or an ImageNet checkpoint with --dataset voc)")


def _rank_world() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


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
    rank, world = _rank_world()
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    dataset = open_dataset(config.dataset, config.root, config.split)
    config = replace(config, split=dataset.split)  # the canonical name of an alias such as mmseg's "aug"
    if not dataset.has_masks:
        raise ValueError(f"{dataset.root} split {dataset.split!r} has no masks to score against")
    # The whole split, even with --limit (a trial run is where a broken dataset should show), and on
    # every rank, so that all ranks stop together instead of one waiting in an all-reduce.
    dataset.validate(progress=config.progress and rank == 0)
    model, info = load_model(config.checkpoint, device=device)
    _check_classes(dataset, info)
    if config.bg_threshold is None:
        config = replace(config, bg_threshold=info.bg_threshold(config.method))
    oracle = config.method == ORACLE_METHOD
    if oracle and config.crf:
        raise ValueError(f"{ORACLE_METHOD} assigns ground-truth classes to slots; it takes no CRF (use --no-crf)")
    method = None if oracle else get_evidence_method(config.method, class_map=info.class_map,
                                                     **config.method_options)
    if config.labels not in ("gt", "pred"):
        raise ValueError(f"labels must be 'gt' or 'pred', got {config.labels!r}")

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _claim_output(out / SETTINGS_FILE, _mask_settings(config, info), write=rank == 0)
    mask_dir = out / "masks"
    raw_dir = out / "masks_nocrf" if config.crf else mask_dir
    for d in {mask_dir, raw_dir}:
        d.mkdir(parents=True, exist_ok=True)
    num_classes = len(dataset.class_names)
    palette = dataset.palette
    indices = list(range(len(dataset) if config.limit is None else min(config.limit, len(dataset))))
    mine = indices[rank::world]

    timing = _Timing()
    sweep = np.zeros((len(config.thresholds), num_classes, num_classes), np.int64) if config.sweep else None
    sweep_state = out / f"sweep.rank{rank}.npz"
    sweep_done: set[str] = set()
    if sweep is not None and sweep_state.exists():
        saved = np.load(sweep_state, allow_pickle=False)
        if list(saved["thresholds"]) == list(config.thresholds):
            sweep += saved["confusion"]
            sweep_done = set(saved["ids"].tolist())

    pool = crf_pool(config.workers) if (config.crf and config.workers > 1) else None
    pending: list[Future] = []
    bar = tqdm(mine, desc=f"eval {config.method}", disable=not (config.progress and rank == 0), unit="img")
    try:
        for i in bar:
            image_id = dataset.image_ids[i]
            final_path, raw_path = mask_dir / f"{image_id}.png", raw_dir / f"{image_id}.png"
            need_sweep = sweep is not None and image_id not in sweep_done
            if final_path.exists() and raw_path.exists() and not need_sweep:
                continue  # resumed: already written
            image = dataset.load_image(i)
            labels = dataset.image_labels(i)
            t0 = time.perf_counter()
            x = image_to_batch(image, info.mean, info.std, short_side=config.input_size or None, device=device)
            with torch.no_grad():
                if oracle:
                    slot_map = model.forward_slots(x).select([config.oracle_block])[0]
                    gt = dataset.load_mask(i)
                    raw = slot_oracle_mask(slot_map.hard_upsampled(image.shape[:2])[0].cpu().numpy(), gt)
                    scores = None
                else:
                    if config.labels == "pred":
                        labels = _predicted_labels(model, x, info)
                    scores = tta_evidence(method, model, x, scales=config.scales, flip=config.flip,
                                          size=image.shape[:2])[0].cpu().numpy()
                    raw = scores_to_mask(scores, config.bg_threshold, labels)
            timing.forward += time.perf_counter() - t0
            timing.images += 1
            if need_sweep:
                sweep += sweep_confusions(scores, dataset.load_mask(i), config.thresholds, labels)
                sweep_done.add(image_id)
                if len(sweep_done) % 50 == 0:
                    _save_sweep(sweep_state, sweep, sweep_done, config.thresholds)
            save_palette_png(raw_path, raw.astype(np.uint8), palette)
            if config.crf:
                probs = unary_probabilities(scores, labels, bg_threshold=config.bg_threshold)
                if pool is None:
                    timing.crf += _crf_job(image, probs, config.crf_params, str(final_path), palette)
                else:
                    pending.append(pool.submit(_crf_job, image, probs, config.crf_params, str(final_path), palette))
                    if len(pending) >= 2 * config.workers:  # bound memory held by queued jobs
                        timing.crf += pending.pop(0).result()
        for job in pending:
            timing.crf += job.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if sweep is not None:
            _save_sweep(sweep_state, sweep, sweep_done, config.thresholds)

    # metrics from what is on disk: identical whether the run was interrupted or not
    final_cm, raw_cm = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    for i in mine:
        gt = dataset.load_mask(i)
        image_id = dataset.image_ids[i]
        final_cm.update(_read_prediction(mask_dir / f"{image_id}.png", gt.shape), gt)
        if config.crf:
            raw_cm.update(_read_prediction(raw_dir / f"{image_id}.png", gt.shape), gt)
    final = all_reduce_confusion(final_cm.matrix) if world > 1 else final_cm.matrix
    raw_matrix = all_reduce_confusion(raw_cm.matrix) if world > 1 else raw_cm.matrix
    if sweep is not None and world > 1:
        sweep = np.stack([all_reduce_confusion(m) for m in sweep])
    if rank != 0:
        return {}
    result = _report(config, dataset, info, final, raw_matrix, sweep, timing, time.perf_counter() - started,
                     len(indices))
    _write_json(out / "metrics.json", result)
    (out / "metrics.md").write_text(_markdown(result, Metrics.from_confusion(final), dataset.class_names))
    return result


def _read_prediction(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A written mask, which must have the ground truth's size (one left by another run may not)."""
    mask = load_palette_png(path)
    if mask.shape != shape:
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its ground truth is "
                         f"{shape[1]}x{shape[0]}; delete it to have it recomputed")
    return mask


def _file_digest(path: str | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mask_settings(config: EvalConfig, info: ModelInfo) -> dict[str, Any]:
    """Everything that decides the masks written to OUT (not --limit, --workers or the device)."""
    settings: dict[str, Any] = dict(
        dataset=config.dataset, root=str(Path(config.root).resolve()) if config.root else None, split=config.split,
        checkpoint_sha256=_file_digest(info.checkpoint), model=info.name, method=config.method,
        input_size=config.input_size, scales=[float(s) for s in config.scales], flip=bool(config.flip))
    if config.method == ORACLE_METHOD:
        settings["oracle_block"] = config.oracle_block
    else:
        settings.update(method_options=config.method_options, bg_threshold=config.bg_threshold,
                        labels=config.labels, crf=config.crf,
                        crf_params=asdict(config.crf_params) if config.crf else None)
    return json.loads(json.dumps(settings, default=str))  # the form it is compared in after a reload


def _claim_output(path: Path, settings: dict[str, Any], write: bool) -> None:
    """Tie OUT to these settings, so that a resumed run never mixes masks made with other ones."""
    if path.exists():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is unreadable ({exc}); remove it, or choose another --out") from None
        changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
        if changed:
            detail = "; ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise ValueError(f"{path.parent} holds masks made with other settings ({detail}). Resuming would mix "
                             "them; choose another --out, or delete that folder to start over")
    elif write:
        _write_json(path, settings)


def _predicted_labels(model: torch.nn.Module, x: torch.Tensor, info: ModelInfo) -> np.ndarray:
    logits = model(x)[0].float()
    if info.multilabel:
        labels = (logits.sigmoid() > 0.5).float().cpu().numpy()
    else:
        probs = logits.softmax(-1).cpu().numpy()
        labels = np.array([probs[g].sum() > 0.1 for g in info.class_map or []], np.float32)
    if labels.sum() == 0:
        labels[int(logits.argmax()) if info.multilabel else 0] = 1
    return labels


def _save_sweep(path: Path, confusion: np.ndarray, ids: set[str], thresholds: Sequence[float]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, confusion=confusion, ids=np.array(sorted(ids)), thresholds=np.asarray(thresholds))
    os.replace(tmp, path)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _report(config: EvalConfig, dataset: SegmentationDataset, info: ModelInfo, final: np.ndarray,
            raw: np.ndarray, sweep: np.ndarray | None, timing: _Timing, seconds: float, n: int) -> dict[str, Any]:
    names = list(dataset.class_names)
    result = Metrics.from_confusion(final).to_dict(names)
    result["miou_convention"] = ("IoU = TP / (TP + FP + FN) per class over the confusion matrix accumulated on "
                                "the whole split, label 255 ignored; a class with TP + FP + FN = 0 (absent from "
                                "both ground truth and prediction) is left out of the mean, as the standard VOC "
                                "evaluation does")
    if config.crf:
        result["nocrf"] = {"miou": Metrics.from_confusion(raw).to_dict(names)["miou"]}
    if sweep is not None:
        best = best_threshold(sweep, list(config.thresholds))
        result["threshold_sweep"] = best.to_dict()
    settings = asdict(config)
    settings["crf_params"] = asdict(config.crf_params)
    settings["thresholds"] = list(config.thresholds)
    settings["scales"] = list(config.scales)
    settings["checkpoint"] = info.checkpoint
    settings["model"] = info.name
    result["settings"] = settings
    result["images"] = n
    per_image = timing.images or 1
    result["timing"] = dict(images_computed=timing.images, forward_s_per_image=timing.forward / per_image,
                            crf_s_per_image=timing.crf / per_image, total_s=seconds,
                            total_s_per_image=seconds / max(n, 1), crf_workers=config.workers)
    result["versions"] = _versions()
    return result


def _markdown(result: dict[str, Any], metrics: Metrics, class_names: Sequence[str]) -> str:
    s = result["settings"]
    lines = [f"# {s['method']}{' + CRF' if s['crf'] else ''} on {s['dataset']} {s['split']}", "",
             f"mIoU **{result['miou']:.2f}** over {result['images']} images "
             f"(model {s['model']}, checkpoint `{s['checkpoint']}`).", ""]
    if "nocrf" in result:
        lines += [f"Without CRF: {result['nocrf']['miou']:.2f}.", ""]
    if "threshold_sweep" in result:
        sw = result["threshold_sweep"]
        lines += [f"Best background threshold: {sw['best_threshold']} (mIoU {sw['best_miou']:.2f}).", ""]
    lines.append(metrics.to_markdown(class_names))
    return "\n".join(lines) + "\n"
