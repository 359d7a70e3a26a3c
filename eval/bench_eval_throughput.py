"""Eval throughput at dataset scale: ``glmix-wsss eval`` on VOC-size images, per precision.

    python eval/bench_eval_throughput.py [--variant glnet_stl] [--images 1464] [--size 375x500]
        [--precisions fp32,bf16] [--device auto] [--workers auto] [--threads auto] [--batch-size 1]
        [--method slot-cam] [--checkpoint CKPT] [--work eval/_work/throughput] [--limit N]

1. Generates ``--images`` scenes of PASCAL VOC's typical size (375 high, 500 wide; 1464 is the
   size of VOC 2012's segmentation train split) once, under ``WORK/scenes-<size>-<n>``.
2. Makes a checkpoint for ``--variant`` with a head for the scenes' 7 classes, randomly
   initialised (seed 0) and saved once with its metadata (``models.meta.CheckpointMeta``), unless
   ``--checkpoint`` names a trained one. The weights do not change the work: the masks keep the
   images' ground-truth classes (``--labels gt``), so the CRF sees the same labels.
3. Runs ``glmix-wsss eval`` single scale with the dense CRF, in a fresh process and a fresh
   output folder per precision, and prints seconds per image: the network and evidence in the
   main process, the CRF per image in its workers (CPU seconds of one worker; the workers run in
   parallel beside the network), and the total wall time (the eval itself, and the process
   from start to end, model loading and dataset check included).

The masks are not compared here: ``glmix-wsss eval`` scores each run, and the mIoU column shows
the precision's effect on this (untrained, for a random head) model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from glmix_vis import create_model
from glmix_vis.data.scenes import SCENE_CLASSES, SceneConfig, ensure_scenes
from glmix_vis.models.checkpoints import save_safetensors
from glmix_vis.models.meta import HEAD_FOREGROUND, CheckpointMeta


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def voc_size_scenes(work: Path, images: int, size: tuple[int, int] = (375, 500)) -> Path:
    """``images`` generated train scenes of ``size`` under ``work`` (made once)."""
    root = work / f"scenes-{size[0]}x{size[1]}-{images}"
    ensure_scenes(root, n_train=images, n_val=0, config=SceneConfig(size=size))
    return root


def random_checkpoint(work: Path, variant: str) -> Path:
    """``variant`` with a random (seed 0) head for the scenes' classes, saved once under ``work``."""
    path = work / f"{variant}-scenes-random.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = create_model(variant, num_classes=len(SCENE_CLASSES) - 1)
        meta = CheckpointMeta(model=variant, classes=list(SCENE_CLASSES), head=HEAD_FOREGROUND)
        work.mkdir(parents=True, exist_ok=True)
        save_safetensors(model.state_dict(), path, meta=meta.to_mapping())
    return path


def _run(args: argparse.Namespace, root: Path, checkpoint: Path, precision: str) -> dict:
    out = Path(args.work) / "runs" / f"{checkpoint.stem}-{args.method}-{precision}-b{args.batch_size}"
    if out.exists():
        shutil.rmtree(out)  # a fresh run: a resumed one would compute nothing
    cmd = [sys.executable, "-m", "glmix_vis.cli.wsss", "eval", "--root", str(root), "--split", "train",
           "--checkpoint", str(checkpoint), "--method", args.method, "--out", str(out), "--crf",
           "--precision", precision, "--device", args.device, "--workers", args.workers,
           "--threads", args.threads, "--batch-size", str(args.batch_size)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    result = json.loads((out / "metrics.json").read_text())
    t, s = result["timing"], result["settings"]
    return dict(precision=s["precision"], images=result["images"], miou=result["miou"],
                forward=t["forward_s_per_image"], crf=t["crf_s_per_image"], eval_total=t["total_s_per_image"],
                process=wall / max(result["images"], 1), workers=t["crf_workers"],
                threads=t["torch_threads"] or "torch default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="glnet_stl", help="model for the random checkpoint (glnet_stl, glnet_4g ...)")
    parser.add_argument("--checkpoint", help="a trained checkpoint for the scenes' classes instead")
    parser.add_argument("--images", type=int, default=1464, help="scenes to generate (default 1464, VOC train)")
    parser.add_argument("--size", type=_size, default=(375, 500), help="HEIGHTxWIDTH (default 375x500)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated --precision values")
    parser.add_argument("--method", default="slot-cam")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", default="auto", help="eval's --workers (CRF processes)")
    parser.add_argument("--threads", default="auto", help="eval's --threads (torch threads)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only the first N images (a quick check)")
    parser.add_argument("--work", default="eval/_work/throughput")
    args = parser.parse_args()

    work = Path(args.work)
    root = voc_size_scenes(work, args.images, args.size)
    checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(work, args.variant)
    rows = [_run(args, root, checkpoint, p.strip()) for p in args.precisions.split(",") if p.strip()]
    print(f"\n{checkpoint.name}, {args.method} + CRF, single scale, {args.size[0]}x{args.size[1]} scenes, "
          f"device {args.device}, batch size {args.batch_size}; seconds per image:")
    print("| precision | images | network + evidence | CRF (one worker) | eval wall | process wall | "
          "CRF workers | torch threads | mIoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['images']} | {r['forward']:.3f} | {r['crf']:.3f} | {r['eval_total']:.3f} | "
              f"{r['process']:.3f} | {r['workers']} | {r['threads']} | {r['miou']:.2f} |")


if __name__ == "__main__":
    main()
