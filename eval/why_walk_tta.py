"""Why the slot walk loses under test-time augmentation: the evidence and masks of a few val images.

    python eval/why_walk_tta.py val_00086 val_00023 val_00014 val_00108 [-o docs/figures/walk_tta_why.png]

Drawn by the library's comparison layout (:func:`glmix_vis.figures.method_comparison`), one row per
image: the image, its ground truth, slot-CAM's evidence of the image's most probable ground-truth
class with ``--scales 1.0,0.5,1.5 --flip`` (what eval computes), the same evidence after the
default slot walk, and the masks with the CRF without and with the walk, at the thresholds the
methods table tuned on train (0.60 for both). The masks may use the ground truth's classes (eval's
``--labels gt``); white contours mark where the evidence crosses the threshold.
"""

from __future__ import annotations

import argparse

from glmix_vis.data import open_dataset
from glmix_vis.data.scenes import root_or_default
from glmix_vis.figures import method_comparison, save_figure
from glmix_vis.predictor import SlotPredictor
from glmix_vis.wsss.recipe import MaskRecipe

TTA = dict(scales=(1.0, 0.5, 1.5), flip=True)
MASKS = [MaskRecipe.parse(name, **TTA) for name in ("slot-cam+crf", "slot-cam+slot-walk+crf")]
EVIDENCE = [MaskRecipe.parse(name, **TTA) for name in ("slot-cam", "slot-cam+slot-walk")]  # what each mask thresholds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_ids", nargs="+")
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--dpi", type=float, default=150)
    p.add_argument("-o", "--out", default="docs/figures/walk_tta_why.png")
    args = p.parse_args(argv)
    dataset = open_dataset("voc", root_or_default(None), "val")
    unknown = [i for i in args.image_ids if i not in dataset.image_ids]
    if unknown:
        p.error(f"not in the val split: {', '.join(unknown)}")
    index = [dataset.image_ids.index(i) for i in args.image_ids]
    predictor = SlotPredictor.from_checkpoint(None, device="cpu")
    fig = method_comparison((predictor, [dataset.load_image(i) for i in index]), MASKS, evidence=EVIDENCE,
                            ground_truth=[dataset.load_mask(i) for i in index], bg_threshold=args.threshold,
                            contours=True, row_labels=args.image_ids, dpi=args.dpi)
    print(f"wrote {save_figure(fig, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
