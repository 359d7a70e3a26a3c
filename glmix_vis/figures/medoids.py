"""Representative slots: k-medoids over a block's slots, as the GLMix authors pick what to show.

A block has 16-64 slots, too many to show large. The authors pick four with k-medoids (their
``visualization/utils.py``, on distances between dispatch maps, random initialisation). Here
the distance is, by default, the cosine distance between the slot *features* the block
computed (what the slots mean to the network), and the initialisation is deterministic
(farthest-first traversal from the most central slot), so a figure is reproducible.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_distances", "k_medoids", "representative_slot_ids"]


def cosine_distances(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``(N, N)`` cosine distances ``1 - cos`` between the rows of ``x`` ``(N, D)``, in [0, 2]."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
    d = 1.0 - unit @ unit.T
    np.fill_diagonal(d, 0.0)
    return np.clip(d, 0.0, 2.0)


def _farthest_first(dist: np.ndarray, k: int) -> np.ndarray:
    medoids = [int(np.argmin(dist.sum(axis=1)))]
    nearest = dist[medoids[0]].copy()
    while len(medoids) < k:
        nxt = int(np.argmax(nearest))
        medoids.append(nxt)
        nearest = np.minimum(nearest, dist[nxt])
    return np.array(medoids, dtype=np.int64)


def k_medoids(dist: np.ndarray, k: int, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``N`` points given their ``(N, N)`` distance matrix into ``k`` groups.

    Alternates assigning every point to its nearest medoid and moving each medoid to the member
    with the smallest total distance to its cluster, until nothing changes. Deterministic.

    Returns:
        ``(medoids, labels)``: ``(k,)`` point indices and ``(N,)`` cluster index of each point.
    """
    dist = np.asarray(dist, dtype=np.float64)
    n = dist.shape[0]
    if dist.shape != (n, n):
        raise ValueError(f"distance matrix must be square, got shape {dist.shape}")
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in 1..{n}, got {k}")
    medoids = _farthest_first(dist, k)
    for _ in range(max_iter):
        labels = np.argmin(dist[:, medoids], axis=1)
        labels[medoids] = np.arange(k)  # a medoid always belongs to its own cluster
        updated = medoids.copy()
        for c in range(k):
            members = np.flatnonzero(labels == c)
            updated[c] = members[np.argmin(dist[np.ix_(members, members)].sum(axis=1))]
        if np.array_equal(updated, medoids):
            break
        medoids = updated
    labels = np.argmin(dist[:, medoids], axis=1)
    labels[medoids] = np.arange(k)
    return medoids, labels


def representative_slot_ids(slot_features: np.ndarray, k: int = 4, share: np.ndarray | None = None,
                            dispatch: np.ndarray | None = None) -> np.ndarray:
    """``(k,)`` indices of ``k`` representative slots of one block, ordered by decreasing share.

    Args:
        slot_features: ``(S, C)`` slot features of the block.
        k: how many to pick (capped at the number of candidates).
        share: ``(S,)`` fraction of the image each slot wins; when given, only slots that win
            some pixels are candidates (if at least ``k`` do), since an invisible slot has
            nothing to show.
        dispatch: ``(S, h, w)`` dispatch maps; when given, the distance is the Euclidean one
            between them (the authors' choice) instead of the cosine one between features.
    """
    feats = np.asarray(slot_features)
    candidates = np.arange(len(feats))
    if share is not None and int((np.asarray(share) > 0).sum()) >= k:
        candidates = np.flatnonzero(np.asarray(share) > 0)
    if dispatch is not None:
        flat = np.asarray(dispatch, dtype=np.float64).reshape(len(feats), -1)[candidates]
        sq = (flat**2).sum(1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0.0))
    else:
        dist = cosine_distances(feats[candidates])
    medoids, _ = k_medoids(dist, min(k, len(candidates)))
    ids = candidates[medoids]
    if share is not None:
        ids = ids[np.argsort(-np.asarray(share)[ids], kind="stable")]
    return ids
