"""``glmix-wsss train-seg``: stage 2 of WSSS, a GLNet segmenter trained on pseudo-masks."""

from __future__ import annotations

import argparse

from . import _source
from ._args import (
    add_dataset_arguments,
    add_training_arguments,
    dataset_root,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    positive_number_list,
    probability,
)
from ._dispatch import UserError

# SegTrainConfig's defaults and the choices, read from their owners' source (importing them is importing torch).
_D = _source.dataclass_defaults("glmix_vis.train_seg", "SegTrainConfig")
_LOSSES = _source.constant("glmix_vis.train_seg", "LOSSES")
_DECODERS = _source.constant("glmix_vis.models.segmenter", "DECODERS")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train a segmenter on pseudo-masks (stage 2 of WSSS)",
        description="A GLNet backbone from a classification checkpoint and a decoder, trained on the masks "
                    "`glmix-wsss eval` wrote (OUT/masks, read as they are; 255 = not learnt) or on the "
                    "dataset's own masks (--masks gt: the fully supervised upper bound). The masks folder is "
                    "checked in full first. Re-running with the same --out resumes after the last finished "
                    "epoch. Distributed: torchrun --nproc_per_node N -m glmix_vis.cli.wsss train-seg ... "
                    "(the global --batch-size is split over the processes).")
    add_dataset_arguments(p, default=_D.dataset)
    p.add_argument("--train-split", default=_D.train_split, help=f"the split the masks belong to (VOC: train or train_aug; default {_D.train_split})")
    p.add_argument("--val-split", default=_D.val_split, help=f"split scored after each --val-every epochs ('none': skip; default {_D.val_split})")
    p.add_argument("--masks", required=True, help="eval's OUT/masks folder, or 'gt' for the dataset's own masks")
    p.add_argument("--init", help="classification checkpoint for the backbone (file or name; default: the bundled model)")
    p.add_argument("--model", type=model_name, metavar="MODEL",
                   help="backbone variant (default: the one --init holds)")
    p.add_argument("--out", default="runs/seg", help="output folder: checkpoints, history.json, final.safetensors (default runs/seg)")
    p.add_argument("--decoder", choices=_DECODERS, default=_D.decoder,
                   help=f"mlp: SegFormer's all-MLP head over all stages; aspp: DeepLabV2's ASPP on the last (default {_D.decoder})")
    p.add_argument("--decoder-dim", type=positive_int, default=_D.decoder_dim,
                   help=f"the decoder's channels (default {_D.decoder_dim})")
    p.add_argument("--decoder-dropout", type=probability, default=_D.decoder_dropout,
                   help=f"dropout before the decoder's classifier (default {_D.decoder_dropout:g})")
    p.add_argument("--aspp-rates", default=",".join(map(str, _D.aspp_rates)),
                   help=f"aspp: dilation rates (default {','.join(map(str, _D.aspp_rates))})")
    p.add_argument("--lr", type=positive_float, default=_D.lr,
                   help=f"the decoder's learning rate (AdamW; default {_D.lr:g})")
    p.add_argument("--backbone-lr-mult", type=non_negative_float, default=_D.backbone_lr_mult,
                   help=f"the backbone's learning rate as a fraction of --lr (default {_D.backbone_lr_mult:g})")
    p.add_argument("--poly-power", type=non_negative_float, default=_D.poly_power,
                   help=f"poly decay of the learning rate, (1 - step/total)^power (default {_D.poly_power:g})")
    p.add_argument("--loss", choices=_LOSSES, default=_D.loss,
                   help=f"balanced: background and foreground pixel means averaged (ToCo, DSRG); ce: plain mean "
                        f"(default {_D.loss})")
    p.add_argument("--crop-size", type=positive_int, default=_D.crop_size,
                   help=f"side of the square training crops, padded with 255 (default {_D.crop_size})")
    p.add_argument("--scale-range", type=positive_number_list, default=list(_D.scale_range),
                   help=f"random scale range LOW,HIGH (default {','.join(f'{v:g}' for v in _D.scale_range)})")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips (default: flips)")
    p.add_argument("--train-bn", dest="freeze_bn", action="store_false",
                   help="update the backbone's BatchNorm statistics (default: frozen, as DeepLab)")
    p.add_argument("--val-every", type=non_negative_int, default=_D.val_every,
                   help=f"score val mIoU every N epochs and after the last (0: never; default {_D.val_every})")
    p.add_argument("--max-val-images", type=positive_int, help="only the first N val images (default: all)")
    add_training_arguments(p, _D)
    return p


def run(args: argparse.Namespace) -> int:
    if len(args.scale_range) != 2:
        raise UserError(f"--scale-range takes two numbers (low,high), got {args.scale_range}")
    try:
        rates = tuple(int(r) for r in args.aspp_rates.split(",") if r.strip())
    except ValueError:
        raise UserError(f"--aspp-rates takes whole numbers such as 1,2,3,4, got {args.aspp_rates!r}") from None
    from ..train_seg import SegTrainConfig, train_segmenter  # torch: once the arguments are parsed

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
