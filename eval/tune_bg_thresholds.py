"""Tune a checkpoint's background thresholds on its training split and record them in it.

Pseudo-masks call a pixel background when no allowed class scores above a threshold. How far a
normalised evidence map spreads beyond the object depends on the model and the method, so the
literature's 0.15 (IRN, VOC CAMs) fits few of them. This script sweeps the threshold for each
method on images of the *training* split (never the split that is scored; no CRF, ground-truth
image labels, as ``glmix-wsss eval --sweep``), then writes the best value per method into the
checkpoint's metadata (key ``bg_thresholds``), where ``glmix-wsss eval``, the figures and the
web app pick it up when the user gives no ``--bg-threshold``:

    python eval/tune_bg_thresholds.py --checkpoint CKPT.safetensors [--root DIR] [--limit 300] --write

Without ``--write`` it only prints the sweep. The file is rewritten atomically, its tensors
untouched (same dtypes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from glmix_vis.data.scenes import root_or_default
from glmix_vis.loading import load_model
from glmix_vis.models.checkpoints import read_checkpoint_meta, save_safetensors
from glmix_vis.models.meta import CheckpointMeta
from glmix_vis.wsss.evaluate import EvalConfig, evaluate
from glmix_vis.wsss.recipe import MaskRecipe

METHODS = ("cam", "slot-cam")


def sweep(checkpoint: str, root: str, split: str, limit: int, method: str, workdir: Path) -> dict:
    config = EvalConfig(out=str(workdir / method), dataset="voc", root=root, split=split, checkpoint=checkpoint,
                        recipe=MaskRecipe(method), sweep=True, limit=limit, workers=1, progress=False)
    return evaluate(config)["threshold_sweep"]


def write_thresholds(checkpoint: Path, thresholds: dict[str, float]) -> None:
    meta = CheckpointMeta.from_mapping(read_checkpoint_meta(checkpoint))
    meta.bg_thresholds = {**(meta.bg_thresholds or {}), **thresholds}  # other methods' values stay
    tensors = load_file(str(checkpoint))  # as stored: fp16 stays fp16
    save_safetensors(tensors, checkpoint, meta=meta.to_mapping(), dtype=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .safetensors checkpoint")
    parser.add_argument("--root", default=None, help="dataset root (default: the generated scenes)")
    parser.add_argument("--split", default="train", help="tuning split (default train)")
    parser.add_argument("--limit", type=int, default=300, help="images of the split to use (default 300)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="record the thresholds in the checkpoint")
    args = parser.parse_args()
    if args.checkpoint.suffix != ".safetensors":
        parser.error("--checkpoint must be a .safetensors file (convert with `glmix-vis checkpoint convert`)")
    torch.set_num_threads(args.threads)
    load_model(args.checkpoint, device="cpu")  # fail early, with the loader's message, on a bad file
    root = root_or_default(args.root)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="glmix-tune-") as tmp:
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            result = sweep(str(args.checkpoint), root, args.split, args.limit, method, Path(tmp))
            best[method] = float(result["best_threshold"])
            curve = ", ".join(f"{t:g}: {m:.1f}" for t, m in zip(result["thresholds"], result["miou"]))
            print(f"{method}: best {best[method]:g} ({result['best_miou']:.1f} mIoU on {args.split}); {curve}")
    if args.write:
        write_thresholds(args.checkpoint, best)
        print(f"recorded bg_thresholds={json.dumps(best)} in {args.checkpoint}")


if __name__ == "__main__":
    main()
