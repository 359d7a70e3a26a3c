"""``glmix-wsss train``: a multi-label classifier from image-level labels."""

from __future__ import annotations

import argparse

from . import _source
from ._args import (
    add_dataset_arguments,
    add_training_arguments,
    dataset_root,
    model_name,
    positive_float,
    positive_int,
    probability,
)

#: TrainConfig's defaults, read from its source (importing the trainer is importing torch).
_D = _source.dataclass_defaults("glmix_vis.train", "TrainConfig")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train a classifier from image-level labels (never masks)",
        description="Multi-label classification with image-level labels only. Without --root, the default "
                    "generated-scenes dataset is written to ~/.cache/glmix-vis/scenes-default and used. "
                    "Before the first batch it prints the model, the images, the folder and the epochs; the "
                    "progress bar then shows the time left. glnet_nano on the 2000 generated scenes takes about "
                    "30 s an epoch on a quiet 2-core CPU (eval/RESULTS.md), several times that on a busy one: "
                    "the default 30 epochs are a quarter of an hour to a few hours; --epochs 3 is a quick look. "
                    "Re-running with the same --out resumes after the last "
                    "finished epoch (other settings are refused). "
                    "Distributed: torchrun --nproc_per_node N -m glmix_vis.cli.wsss train ...")
    add_dataset_arguments(p, default=_D.dataset)
    p.add_argument("--train-split", default=_D.train_split, help=f"split to train on (default {_D.train_split})")
    p.add_argument("--val-split", default=_D.val_split,
                   help=f"split scored (mAP) after every epoch (default {_D.val_split})")
    p.add_argument("--model", default=_D.model, metavar="MODEL", type=model_name,
                   help=f"GLNet variant: glnet_nano, glnet_micro, glnet_stl, glnet_4g, ... (default {_D.model})")
    p.add_argument("--init", help="start from this checkpoint, file or name (head reset to the dataset's classes; "
                                  "default: random weights)")
    p.add_argument("--out", default="runs/train", help="output folder: checkpoints, history.json, "
                                                        "final.safetensors (default runs/train)")
    p.add_argument("--lr", type=positive_float, default=_D.lr,
                   help=f"peak learning rate (AdamW, cosine decay to {_D.min_lr:g}; default {_D.lr:g})")
    p.add_argument("--input-size", type=positive_int, default=_D.input_size,
                   help=f"side of the square training crops, pixels (default {_D.input_size})")
    p.add_argument("--drop-path", type=probability, default=_D.drop_path,
                   help=f"stochastic depth rate (default {_D.drop_path:g})")
    p.add_argument("--slot-scale-lr-mult", type=positive_float, default=_D.slot_scale_lr_mult,
                   help="learning-rate multiplier of the slot temperatures (slot_scale), which must grow "
                        f"far from their start for the slots to become selective (default {_D.slot_scale_lr_mult:g})")
    add_training_arguments(p, _D)
    return p


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train  # torch and timm: imported once the arguments are parsed

    root = dataset_root(args.root, args.dataset)
    config = TrainConfig(
        root=root, out=args.out, dataset=args.dataset, train_split=args.train_split, val_split=args.val_split,
        model=args.model, init=args.init, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, input_size=args.input_size,
        drop_path=args.drop_path, slot_scale_lr_mult=args.slot_scale_lr_mult, workers=args.workers, device=args.device, seed=args.seed,
        amp=not args.no_amp, max_train_images=args.max_train_images)
    result = train(config)
    print(f"final checkpoint: {result['checkpoint']}")
    return 0
