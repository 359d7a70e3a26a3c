"""Stage-2 training throughput (images/s) and peak memory, 1 against N processes (issue 22).

Runs ``glmix-wsss train-seg`` for one epoch per process count (``torchrun --standalone
--nproc_per_node N`` for N > 1) on the same masks, global batch and crops, into fresh folders,
and reads each run's ``history.json`` (``images_per_s``: the epoch's images over its wall time;
``peak_memory_mb``: rank 0's peak RSS on a CPU, the allocator's peak on a GPU). Run it on a quiet
machine: anything else running changes the numbers.

    python eval/bench_train_seg.py --masks gt --processes 1,2 --out eval/_work/bench_train_seg
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


def run_once(processes: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    command = [*launcher, "-m", "glmix_vis.cli.wsss", "train-seg", "--masks", args.masks, "--out", str(out),
               "--epochs", "1", "--batch-size", str(args.batch_size), "--crop-size", str(args.crop_size),
               "--max-train-images", str(args.images), "--val-every", "0", "--workers", str(args.workers)]
    if args.root:
        command += ["--root", args.root]
    subprocess.run(command, check=True)
    record = json.loads((out / "history.json").read_text())[-1]
    return dict(processes=processes, images_per_s=record["images_per_s"], peak_memory_mb=record["peak_memory_mb"],
                seconds=record["seconds"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="dataset root (default: the generated scenes)")
    p.add_argument("--masks", default="gt")
    p.add_argument("--processes", default="1,2")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", default="eval/_work/bench_train_seg")
    args = p.parse_args()
    rows = [run_once(int(n), args, Path(args.out) / f"n{n}") for n in args.processes.split(",")]
    print("| processes | images/s | peak memory (MB, rank 0) | epoch s |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['processes']} | {r['images_per_s']:.1f} | {r['peak_memory_mb']:.0f} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
