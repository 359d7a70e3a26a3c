"""The CRAFT baseline: NMF concepts of one block's pixel features, the same images and concept count.

CRAFT (Fel et al., CVPR 2023) factorises a layer's non-negative activations ``A ≈ U W`` into K
concepts (rows of ``W``) and reads a concept map off ``U``. Here the activations are the pixel
features of the stage holding the GLMix block (every grid location of every image a row), so
the slot atlas and CRAFT describe the same layer. GLNet's features are not ReLU outputs: they
are shifted by their per-channel minimum over the sampled pixels, which keeps their geometry
(NMF needs non-negative rows; cutting the negative part off would lose half of each channel).
The factorisation is fitted on streamed chunks (:class:`sklearn.decomposition.MiniBatchNMF`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CraftConcepts"]


class CraftConcepts:
    """K NMF concepts of pixel features: fit on chunks of sampled pixels, then map whole images."""

    def __init__(self, concepts: int, seed: int = 0) -> None:
        from sklearn.decomposition import MiniBatchNMF

        self.concepts = concepts
        self.nmf = MiniBatchNMF(n_components=concepts, random_state=seed, batch_size=1024, init="random")
        self.shift: np.ndarray | None = None

    def fit(self, chunks: Callable[[], Iterable[np.ndarray]], shift: np.ndarray, epochs: int = 3) -> CraftConcepts:
        """``chunks()``: an iterable of ``(n, C)`` pixel-feature rows, read again for every epoch."""
        self.shift = np.asarray(shift, dtype=np.float32)
        for _ in range(epochs):
            for rows in chunks():
                self.nmf.partial_fit(self._nonneg(rows))
        return self

    def _nonneg(self, rows: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(rows, np.float32) - self.shift, 0.0)

    def concept_map(self, features: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` concept of each pixel: the largest NMF coefficient of its grid location's
        features ``(C, h, w)``, the coefficients upsampled bilinearly to ``size`` first (as the
        slot maps are)."""
        c, h, w = features.shape
        coeffs = self.nmf.transform(self._nonneg(features.reshape(c, h * w).T.cpu().numpy()))
        grid = torch.from_numpy(coeffs.T.reshape(1, self.concepts, h, w).astype(np.float32))
        return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
