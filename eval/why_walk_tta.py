"""Why the slot walk loses under test-time augmentation: the evidence and masks of a few val images.

    python eval/why_walk_tta.py val_00086 val_00023 val_00014 [-o docs/figures/walk_tta_why.png]

One row per image: the image, its ground truth, slot-CAM's evidence of the image's first class with
``--scales 1.0,0.5,1.5 --flip`` (what eval computes), the same evidence after the default slot walk,
and the masks with the CRF without and with the walk, at the thresholds the methods table tuned on
train (0.60 for both). Contours mark where the evidence crosses the threshold.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from glmix_vis.data import open_dataset  # noqa: E402
from glmix_vis.data.palette import voc_palette  # noqa: E402
from glmix_vis.data.scenes import root_or_default  # noqa: E402
from glmix_vis.predictor import SlotPredictor  # noqa: E402
from glmix_vis.wsss.refinement import get_refinement  # noqa: E402

TTA = dict(scales=(1.0, 0.5, 1.5), flip=True)


def colorize(mask: np.ndarray) -> np.ndarray:
    return voc_palette()[mask]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image_ids", nargs="+")
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("-o", "--out", default="docs/figures/walk_tta_why.png")
    args = p.parse_args(argv)
    dataset = open_dataset("voc", root_or_default(None), "val")
    predictor = SlotPredictor.from_checkpoint(None, device="cpu")
    walk = get_refinement("slot-walk")
    cols = ["image", "ground truth", "slot-CAM evidence (TTA)", "after the slot walk", "+ CRF", "slot walk + CRF"]
    fig, axes = plt.subplots(len(args.image_ids), len(cols), figsize=(2.0 * len(cols), 2.1 * len(args.image_ids)),
                             squeeze=False)
    for row, image_id in enumerate(args.image_ids):
        i = dataset.image_ids.index(image_id)
        image, gt, labels = dataset.load_image(i), dataset.load_mask(i), dataset.image_labels(i)
        predictor.set_image(image)
        kw = dict(labels=labels, bg_threshold=args.threshold, crf=True, **TTA)
        scores = predictor.evidence("slot-cam", **TTA)
        walked = walk(scores, labels, slots=predictor.output)
        k = int(np.flatnonzero(labels)[0])
        plain = predictor.pseudo_mask("slot-cam", **kw)
        walked_mask = predictor.pseudo_mask("slot-cam", refinement="slot-walk", **kw)
        panels = [image, colorize(gt), scores[k], walked[k], colorize(plain), colorize(walked_mask)]
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            if panel.ndim == 2:
                ax.imshow(panel, cmap="viridis", vmin=0, vmax=1)
                ax.contour(panel, levels=[args.threshold], colors="white", linewidths=0.8)
            else:
                ax.imshow(panel)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(cols[col], fontsize=8)
        axes[row][0].set_ylabel(f"{image_id}\n{dataset.class_names[k + 1]}", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
