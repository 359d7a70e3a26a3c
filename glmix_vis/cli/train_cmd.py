"""``glmix-wsss train``: a multi-label classifier from image-level labels."""

from __future__ import annotations

import argparse

from ._args import add_device_argument, dataset_root, non_negative_int, positive_float, positive_int


def _model_name(text: str) -> str:
    """A GLNet variant name (the model table, torch's import, is read only when ``--model`` is given)."""
    from ..models.glnet import MODEL_CONFIGS

    if text not in MODEL_CONFIGS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(MODEL_CONFIGS)})")
    return text


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train a classifier from image-level labels (never masks)",
        description="Multi-label classification with image-level labels only. Without --root, the default "
                    "generated-scenes dataset is written to ~/.cache/glmix-vis/scenes-default and used. "
                    "Re-running with the same --out resumes after the last finished epoch. "
                    "Distributed: torchrun --nproc_per_node N -m glmix_vis.cli.wsss train ...")
    p.add_argument("--dataset", default="voc", choices=["voc", "coco"],
                   help="dataset format (generated scenes use the VOC layout)")
    p.add_argument("--root", help="dataset root (default: generate the default scenes)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--model", default="glnet_nano", metavar="MODEL", type=_model_name,
                   help="GLNet variant: glnet_nano, glnet_micro, glnet_stl, glnet_4g, ... (default: glnet_nano)")
    p.add_argument("--init", help="start from this checkpoint (head reset to the dataset's classes)")
    p.add_argument("--out", default="runs/train", help="output folder (checkpoints, history.json)")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=32, help="global batch size")
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--input-size", type=positive_int, default=160)
    p.add_argument("--drop-path", type=float, default=0.05)
    p.add_argument("--slot-scale-lr-mult", type=float, default=100.0,
                   help="learning-rate multiplier of the slot temperatures (slot_scale)")
    p.add_argument("--workers", type=non_negative_int, default=2)
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--max-train-images", type=positive_int, help="use only the first N training images (smoke runs)")
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
