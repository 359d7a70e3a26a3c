"""The slot oracle: how good a segmentation the slot groups allow with a perfect slot classifier.

Every hard slot region of one GLMix block gets the ground-truth class most of its pixels have.
The resulting mIoU is the ceiling of any method that labels whole slots (slot-cam without the
soft dispatch): it measures the grouping, independent of the classifier.
"""

from __future__ import annotations

import numpy as np

__all__ = ["slot_oracle_mask"]


def slot_oracle_mask(slots: np.ndarray, gt: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """``(H, W)`` labels: each slot region of ``slots`` takes its majority ground-truth class.

    Pixels labelled ``ignore_index`` do not vote; a slot whose pixels are all ignored becomes
    background (0).
    """
    if slots.shape != gt.shape:
        raise ValueError(f"slot map {slots.shape} and ground truth {gt.shape} differ in size")
    shape = gt.shape
    slots = slots.astype(np.int64).ravel()
    gt = gt.astype(np.int64).ravel()
    valid = gt != ignore_index
    num_slots = int(slots.max()) + 1
    num_classes = int(gt[valid].max()) + 1 if valid.any() else 1
    votes = np.bincount(slots[valid] * num_classes + gt[valid], minlength=num_slots * num_classes)
    votes = votes.reshape(num_slots, num_classes)
    winner = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), 0)
    return winner[slots].reshape(shape)
