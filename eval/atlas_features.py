"""Which row describes a slot best in the atlas: its region's pooled features, its slot vector, or both?

One forward pass per image gives all three rows; each is grouped into K concepts by k-means (the
atlas's grouping, in memory here: the subset is small), and the pixel-weighted class purity is
compared with the two references (slots grouped by index; every slot its own concept).

    python eval/atlas_features.py --images 150 --block 0 --concepts 16
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.cluster import KMeans
from tqdm import tqdm

from glmix_vis.data import open_dataset
from glmix_vis.data.scenes import root_or_default
from glmix_vis.discovery.atlas import FEATURE_KINDS, purity, slot_class_counts, slot_rows
from glmix_vis.predictor import SlotPredictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root")
    p.add_argument("--split", default="train")
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--block", type=int, default=0)
    p.add_argument("--concepts", type=int, default=16)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--kinds", default=",".join(FEATURE_KINDS), help="feature kinds to compare")
    args = p.parse_args()
    ds = open_dataset("voc", root_or_default(args.root), args.split)
    predictor = SlotPredictor.from_checkpoint(None, device="cpu")
    kinds = args.kinds.split(",")
    rows = {k: [] for k in kinds}
    counts, slot_ids = [], []
    for i in tqdm(range(min(args.images, len(ds))), desc="slots"):
        sample = ds[i]
        predictor.set_image(sample.image, input_size=min(sample.image.shape[:2]))
        for kind in kinds:
            used, feats, hard, _ = slot_rows(predictor, args.block, kind)
            rows[kind].append(feats)
        counts.append(slot_class_counts(hard, used, sample.mask, ds.num_classes))
        slot_ids.append(used)
    counts_all, ids_all = np.concatenate(counts), np.concatenate(slot_ids)
    by_index = np.zeros((int(ids_all.max()) + 1, ds.num_classes))
    np.add.at(by_index, ids_all, counts_all)
    result = dict(images=len(counts), slots=len(ids_all), block=args.block, concepts=args.concepts,
                  by_index=purity(by_index)[0], per_slot=float(counts_all.max(1).sum() / counts_all.sum()))
    for kind in kinds:
        x = np.concatenate(rows[kind])
        values = []
        for seed in range(args.seeds):
            labels = KMeans(args.concepts, random_state=seed, n_init=3).fit_predict(x)
            hist = np.zeros((args.concepts, ds.num_classes))
            np.add.at(hist, labels, counts_all)
            values.append(purity(hist)[0])
        result[kind] = dict(mean=float(np.mean(values)), seeds=[round(v, 4) for v in values])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
