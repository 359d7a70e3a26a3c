"""Merging one block's slots into a few groups, so slot metrics compare with 6-7-slot methods.

Object-centric methods report FG-ARI and mBO with 6 (VOC) or 7 (COCO) slots; a GLMix block has
16-64, and the slot count moves both metrics (more segments: higher mBO on small objects, lower
FG-ARI). The used slots of an image are clustered by their own features (the block's slot
vectors after its slot self-attention, L2-normalised) with agglomerative clustering, and each
pixel takes its slot's group.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

__all__ = ["DEFAULT_MERGE", "LINKAGES", "merge_slots"]

#: Groups to merge to per dataset, as the references run (SPOT: 6 slots on VOC, 7 on COCO).
DEFAULT_MERGE = {"voc": 6, "scenes": 6, "coco": 7}
#: scipy linkage methods accepted (on unit vectors ward's Euclidean variance tracks cosine distance).
LINKAGES = ("ward", "average", "complete", "single")


def merge_slots(hard: np.ndarray, slot_features: np.ndarray, groups: int, method: str = "ward") -> np.ndarray:
    """``(H, W)`` group ids in ``0..groups-1``: the slots used in ``hard`` clustered into ``groups``.

    ``slot_features``: ``(S, C)`` features of the block's slots (row ``s`` = slot id ``s``). An
    image using ``groups`` slots or fewer keeps its partition (renumbered).
    """
    if groups < 1:
        raise ValueError(f"the number of merged groups must be at least 1, got {groups}")
    if method not in LINKAGES:
        raise ValueError(f"unknown linkage {method!r}; expected one of {', '.join(LINKAGES)}")
    used, inverse = np.unique(hard, return_inverse=True)
    if len(used) <= groups:
        return inverse.reshape(hard.shape)
    feats = np.asarray(slot_features, dtype=np.float64)[used]
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    labels = fcluster(linkage(feats, method=method), t=groups, criterion="maxclust") - 1
    return labels[inverse].reshape(hard.shape)
