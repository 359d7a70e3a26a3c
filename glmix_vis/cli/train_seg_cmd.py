"""``glmix-wsss train-seg``: stage 2 of WSSS, a GLNet segmenter trained on pseudo-masks."""

from __future__ import annotations

import argparse

from ..models.glnet import MODEL_CONFIGS
from ..models.segmenter import DECODERS
from ..train_seg import LOSSES, SegTrainConfig, train_segmenter
from ._args import (
    add_device_argument,
    dataset_root,
    non_negative_int,
    positive_float,
    positive_int,
    positive_number_list,
)
from ._dispatch import UserError

_D = SegTrainConfig(root="", out="")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train a segmenter on pseudo-masks (stage 2 of WSSS)",
        description="A GLNet backbone from a classification checkpoint and a decoder, trained on the masks "
                    "`glmix-wsss eval` wrote (OUT/masks, read as they are; 255 = not learnt) or on the "
                    "dataset's own masks (--masks gt: the fully supervised upper bound). The masks folder is "
                    "checked in full first. Re-running with the same --out resumes after the last finished "
                    "epoch. Distributed: torchrun --nproc_per_node N -m glmix_vis.cli.wsss train-seg ... "
                    "(the global --batch-size is split over the processes).")
    p.add_argument("--dataset", default="voc", choices=["voc", "coco"])
    p.add_argument("--root", help="dataset root (default: the generated scenes)")
    p.add_argument("--train-split", default="train", help="the split the masks belong to (VOC: train or train_aug)")
    p.add_argument("--val-split", default="val", help="split scored after each --val-every epochs ('none': skip)")
    p.add_argument("--masks", required=True, help="eval's OUT/masks folder, or 'gt' for the dataset's own masks")
    p.add_argument("--init", help="classification checkpoint for the backbone (file or name; default: the bundled model)")
    p.add_argument("--model", choices=list(MODEL_CONFIGS), metavar="MODEL",
                   help="backbone variant (default: the one --init holds)")
    p.add_argument("--out", default="runs/seg", help="output folder (checkpoints, history.json, final.safetensors)")
    p.add_argument("--decoder", choices=DECODERS, default=_D.decoder,
                   help=f"mlp: SegFormer's all-MLP head over all stages; aspp: DeepLabV2's ASPP on the last (default {_D.decoder})")
    p.add_argument("--decoder-dim", type=positive_int, default=_D.decoder_dim)
    p.add_argument("--decoder-dropout", type=float, default=_D.decoder_dropout)
    p.add_argument("--aspp-rates", default=",".join(map(str, _D.aspp_rates)), help="aspp: dilation rates, e.g. 1,2,3,4")
    p.add_argument("--epochs", type=positive_int, default=_D.epochs)
    p.add_argument("--batch-size", type=positive_int, default=_D.batch_size, help="global batch (any process count)")
    p.add_argument("--lr", type=positive_float, default=_D.lr, help="decoder learning rate (AdamW)")
    p.add_argument("--backbone-lr-mult", type=float, default=_D.backbone_lr_mult,
                   help=f"the backbone's learning rate as a fraction of --lr (default {_D.backbone_lr_mult:g})")
    p.add_argument("--weight-decay", type=float, default=_D.weight_decay)
    p.add_argument("--poly-power", type=float, default=_D.poly_power, help="poly decay (1 - step/total)^power")
    p.add_argument("--warmup-epochs", type=float, default=_D.warmup_epochs)
    p.add_argument("--loss", choices=LOSSES, default=_D.loss,
                   help="balanced: background and foreground pixel means averaged (ToCo, DSRG); ce: plain mean")
    p.add_argument("--crop-size", type=positive_int, default=_D.crop_size)
    p.add_argument("--scale-range", type=positive_number_list, default=list(_D.scale_range),
                   help="random scale range, e.g. 0.5,1.5")
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--train-bn", dest="freeze_bn", action="store_false",
                   help="update the backbone's BatchNorm statistics (default: frozen, as DeepLab)")
    p.add_argument("--workers", type=non_negative_int, default=_D.workers)
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--val-every", type=non_negative_int, default=_D.val_every,
                   help="score val mIoU every N epochs and after the last (0: never)")
    p.add_argument("--max-train-images", type=positive_int, help="only the first N training images (smoke runs)")
    p.add_argument("--max-val-images", type=positive_int, help="only the first N val images")
    return p


def run(args: argparse.Namespace) -> int:
    if len(args.scale_range) != 2:
        raise UserError(f"--scale-range takes two numbers (low,high), got {args.scale_range}")
    try:
        rates = tuple(int(r) for r in args.aspp_rates.split(",") if r.strip())
    except ValueError:
        raise UserError(f"--aspp-rates takes whole numbers such as 1,2,3,4, got {args.aspp_rates!r}") from None
    config = SegTrainConfig(
        root=dataset_root(args.root, args.dataset), out=args.out, masks=args.masks, init=args.init, model=args.model,
        dataset=args.dataset, train_split=args.train_split,
        val_split=None if args.val_split.lower() == "none" else args.val_split, decoder=args.decoder,
        decoder_dim=args.decoder_dim, decoder_dropout=args.decoder_dropout, aspp_rates=rates, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, backbone_lr_mult=args.backbone_lr_mult,
        weight_decay=args.weight_decay, poly_power=args.poly_power, warmup_epochs=args.warmup_epochs, loss=args.loss,
        crop_size=args.crop_size, scale_range=tuple(args.scale_range), flip=args.flip, freeze_bn=args.freeze_bn,
        workers=args.workers, device=args.device, seed=args.seed, amp=not args.no_amp, val_every=args.val_every,
        max_train_images=args.max_train_images, max_val_images=args.max_val_images)
    result = train_segmenter(config)
    print(f"final checkpoint: {result['checkpoint']}")
    return 0
