"""The user-facing object: load a model once, set an image once, then ask for slot maps,
class evidence and pseudo-masks of any block, as segment-anything's predictor does.

>>> predictor = SlotPredictor.from_checkpoint()          # the bundled demo model
>>> predictor.set_image("photo.jpg")
>>> predictor.maps([0, -1])                              # SlotMaps of the first and last GLMix block
>>> predictor.pseudo_mask("slot-cam", crf=True)          # (H, W) class indices at the image size
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .devices import resolve_device
from .io import load_image
from .loading import HeadPrediction, ModelInfo, load_model
from .models.slots import SlotMap, SlotOutput
from .preprocess import image_to_batch

__all__ = ["SlotPredictor"]


class SlotPredictor:
    """Runs the model once per image and serves maps, evidence and masks from that one pass."""

    def __init__(self, model: nn.Module, info: ModelInfo, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.image: np.ndarray | None = None
        self.batch: torch.Tensor | None = None
        self.output: SlotOutput | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike[str] | None = None, *,
                        device: str | torch.device = "auto") -> SlotPredictor:
        model, info = load_model(checkpoint, device=device)
        return cls(model, info, device)

    # ------------------------------------------------------------------ the one forward pass
    @torch.no_grad()
    def set_image(self, image: np.ndarray | str | Path | Any, input_size: int | None = None) -> SlotOutput:
        """Read (any path, bytes, PIL image or RGB array), preprocess and run ``forward_slots``.

        ``input_size`` is the short side the network sees (default: the model's own).
        """
        rgb = image if isinstance(image, np.ndarray) else load_image(image)
        size = input_size or self.info.input_size
        self.image = rgb
        self.batch = image_to_batch(rgb, self.info.mean, self.info.std, short_side=size, device=self.device)
        self.output = self.model.forward_slots(self.batch)
        return self.output

    def _require(self) -> SlotOutput:
        if self.output is None:
            raise RuntimeError("call set_image() first")
        return self.output

    @property
    def image_size(self) -> tuple[int, int]:
        if self.image is None:
            raise RuntimeError("call set_image() first")
        return self.image.shape[0], self.image.shape[1]

    @property
    def num_glmix_blocks(self) -> int:
        return len(self._require().maps)

    def maps(self, blocks: Sequence[int] | None = None) -> list[SlotMap]:
        """SlotMaps of the chosen GLMix blocks (forward order; negative indices from the end)."""
        return self._require().select(blocks)

    def hard_slots(self, block: int) -> np.ndarray:
        """``(H, W)`` hard slot labels of one block at the image's own size."""
        return self.maps([block])[0].hard_upsampled(self.image_size)[0].cpu().numpy()

    def soft_slots(self, block: int) -> np.ndarray:
        """``(S, H, W)`` dispatch maps of one block at the image's own size."""
        return self.maps([block])[0].upsample(self.image_size)[0].cpu().numpy()

    # ------------------------------------------------------------------ classification
    def class_scores(self) -> np.ndarray:
        """``(K,)`` probability of each foreground class (sigmoid for multi-label heads; for an
        ImageNet head, the softmax mass of the ImageNet classes mapped to each target class)."""
        return self.info.class_scores(self._require().logits[0])

    def top_predictions(self, k: int = 5, min_score: float = 0.0) -> list[HeadPrediction]:
        """What the head itself says: its ``k`` most probable outputs (ImageNet names for an
        official head) and the segmentation class each one feeds."""
        return self.info.top_predictions(self._require().logits[0], k, min_score)

    def predicted_labels(self, threshold: float | None = None) -> np.ndarray:
        """Multi-hot ``(K,)`` of the classes the model sees (at least the best one)."""
        scores = self.class_scores()
        threshold = threshold if threshold is not None else (0.5 if self.info.multilabel else 0.1)
        labels = (scores >= threshold).astype(np.float32)
        if labels.sum() == 0 and len(scores):
            labels[int(scores.argmax())] = 1.0
        return labels

    # ------------------------------------------------------------------ WSSS
    def evidence(self, method: str = "slot-cam", classes: Sequence[int] | None = None,
                 **method_options: Any) -> np.ndarray:
        """``(K', H, W)`` class evidence in [0, 1] at the image size (foreground class order)."""
        from .wsss.evidence import get_evidence_method

        ev = get_evidence_method(method, class_map=self.info.class_map, **method_options)
        maps = ev(self.model, self._require(), classes=classes, size=self.image_size)
        return maps[0].cpu().numpy()

    def pseudo_mask(self, method: str = "slot-cam", labels: np.ndarray | None = None,
                    bg_threshold: float | None = None, crf: bool = False,
                    crf_params: Any | None = None, **method_options: Any) -> np.ndarray:
        """``(H, W)`` uint8 mask, 0 = background, k = ``class_names[k]``.

        ``labels`` (multi-hot over foreground classes) restricts the classes, as the WSSS
        protocol does with ground-truth image labels; by default the predicted ones are used.
        ``bg_threshold`` defaults to :meth:`ModelInfo.bg_threshold` for ``method``.
        """
        from .wsss.crf import crf_labels
        from .wsss.masks import scores_to_mask, unary_probabilities

        labels = self.predicted_labels() if labels is None else np.asarray(labels, dtype=np.float32)
        threshold = self.info.bg_threshold(method) if bg_threshold is None else bg_threshold
        scores = self.evidence(method, **method_options)
        if not crf:
            return scores_to_mask(scores, threshold, labels).astype(np.uint8)
        probs = unary_probabilities(scores, labels, bg_threshold=threshold)
        return crf_labels(self.image, probs, crf_params).astype(np.uint8)
