"""The user-facing object: load a model once, set an image once, then ask for slot maps,
class evidence and pseudo-masks of any block, as segment-anything's predictor does.

>>> predictor = SlotPredictor.from_checkpoint()          # the bundled demo model
>>> predictor.set_image("photo.jpg")
>>> predictor.maps([0, -1])                              # SlotMaps of the first and last GLMix block
>>> predictor.pseudo_mask("slot-cam+crf")                # (H, W) class indices at the image size
>>> predictor.pseudo_mask("cam", scales=(1.0, 0.5, 1.5), flip=True)  # with test-time augmentation
>>> predictor.pseudo_mask(MaskRecipe("slot-cam", "par", crf=True, bg_threshold=0.4))  # every setting
>>> SlotPredictor.from_checkpoint("runs/seg/final.safetensors").segmentation()  # a train-seg model's own

The WSSS work is :mod:`glmix_vis.wsss.pipeline`'s, the same functions ``glmix-wsss eval`` runs:
the predictor only keeps one image, its batch and its forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .devices import DEFAULT_PRECISION, inference_precision, resolve_device, resolve_precision
from .io import load_image
from .loading import HeadPrediction, ModelInfo, load_model
from .models.slots import SlotMap, SlotOutput, run_slots
from .preprocess import image_to_batch
from .wsss.pipeline import ImageInput, class_evidence, predicted_labels, pseudo_mask
from .wsss.recipe import MaskRecipe

__all__ = ["SlotPredictor"]


class SlotPredictor:
    """Runs the model once per image and serves maps, evidence and masks from that one pass.

    Every forward pass runs in ``precision`` (default: the one :func:`~glmix_vis.loading.load_model`
    resolved, :attr:`ModelInfo.precision`); maps, evidence and masks are float32 either way.
    """

    def __init__(self, model: nn.Module, info: ModelInfo, device: str | torch.device = "auto",
                 precision: str | torch.dtype | None = None) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.precision = info.precision if precision is None else resolve_precision(precision, self.device)
        self.image: np.ndarray | None = None
        self.batch: torch.Tensor | None = None
        self.output: SlotOutput | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike[str] | None = None, *,
                        device: str | torch.device = "auto",
                        precision: str | torch.dtype = DEFAULT_PRECISION) -> SlotPredictor:
        model, info = load_model(checkpoint, device=device, precision=precision)
        return cls(model, info, device)

    # ------------------------------------------------------------------ the one forward pass
    @torch.no_grad()
    def set_image(self, image: np.ndarray | str | Path | Any, input_size: int | None = None) -> SlotOutput:
        """Read (any path, bytes, PIL image or RGB array), preprocess and run ``forward_slots``.

        ``input_size`` is the short side the network sees (default: the model's own).
        """
        self.image = self.batch = self.output = None  # a failed call leaves no image set, never the last one
        rgb = image if isinstance(image, np.ndarray) else load_image(image)
        size = input_size or self.info.input_size
        batch = image_to_batch(rgb, self.info.mean, self.info.std, short_side=size, device=self.device)
        with inference_precision(self.precision):
            output = run_slots(self.model, batch)
        self.image, self.batch, self.output = rgb, batch, output
        return output

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
        """``(K,)`` probability of each foreground class, in the order of ``info.foreground_names``
        (sigmoid for multi-label heads; for an ImageNet head, the softmax mass of the ImageNet
        classes mapped to each target class). By name: :meth:`scores_by_class`."""
        return self.info.class_scores(self._require().logits[0])

    def scores_by_class(self) -> dict[str, float]:
        """Each foreground class's name and probability (:meth:`class_scores`), in class order."""
        return dict(zip(self.info.foreground_names, self.class_scores().tolist()))

    def top_predictions(self, k: int = 5, min_score: float = 0.0) -> list[HeadPrediction]:
        """What the head itself says: its ``k`` most probable outputs (ImageNet names for an
        official head) and the segmentation class each one feeds."""
        return self.info.top_predictions(self._require().logits[0], k, min_score)

    def predicted_labels(self, threshold: float | None = None) -> np.ndarray:
        """Multi-hot ``(K,)`` of the classes the model sees, by the pipeline's one label rule
        (:func:`glmix_vis.wsss.pipeline.predicted_labels`: score ``>=`` the head's threshold, 0.5
        for a sigmoid head and 0.1 for a softmax one; none when no class reaches it)."""
        return predicted_labels(self.info, self._require().logits[0], threshold)

    # ------------------------------------------------------------------ WSSS
    def _input(self) -> ImageInput:
        out = self._require()
        assert self.batch is not None and self.image is not None
        return ImageInput(self.image, self.batch, out)

    def evidence(self, recipe: MaskRecipe | str | None = None, classes: Sequence[int] | None = None,
                 **changes: Any) -> np.ndarray:
        """``(K', H, W)`` class evidence in [0, 1] at the image size (foreground class order) of the
        recipe's method, with its options and test-time augmentation.

        ``recipe``: a :class:`~glmix_vis.wsss.recipe.MaskRecipe`, its short name (``"slot-cam"``) or
        ``None`` (slot-cam); ``changes`` set recipe fields (``scales=(1.0, 0.5, 1.5), flip=True``,
        ``method_options={"combine": "product"}``). Without augmentation the maps come from
        :meth:`set_image`'s pass.
        """
        chosen, image = MaskRecipe.of(recipe, **changes), self._input()
        method = chosen.evidence_method(self.info.class_map)
        with inference_precision(self.precision):  # test-time augmentation runs more forward passes
            return class_evidence(method, self.model, image.batch, image.size, slots=image.slots,
                                  scales=chosen.scales, flip=chosen.flip, classes=classes)

    @property
    def has_segmentation(self) -> bool:
        """Whether the model is a segmenter (``glmix-wsss train-seg``) with its own per-pixel classes."""
        return self.info.labels.segmentation

    def segmentation(self, crf: bool = False, scales: Sequence[float] = (1.0,), flip: bool = False) -> np.ndarray:
        """``(H, W)`` uint8: a segmenter's own prediction, the argmax over every class at every pixel
        with **no** image labels (0 = background, k = ``class_names[k]``), optionally with the dense
        CRF and test-time augmentation as DeepLab's test step: what ``glmix-wsss eval --method seg``
        writes. A ``ValueError`` for a model without a segmentation head."""
        if not self.has_segmentation:
            raise ValueError(f"{self.info.name} has no segmentation head: load a checkpoint written by "
                             "glmix-wsss train-seg (pseudo_mask() makes masks from a classifier's evidence)")
        return self.pseudo_mask("seg", crf=crf, scales=tuple(scales), flip=flip)

    def pseudo_mask(self, recipe: MaskRecipe | str | None = None,
                    labels: np.ndarray | Sequence[float] | str | None = None, **changes: Any) -> np.ndarray:
        """``(H, W)`` uint8 mask, 0 = background, k = ``class_names[k]``: the mask ``glmix-wsss eval``
        writes for this image under the same recipe (``masks/`` when the recipe has the CRF, else
        ``masks_nocrf/``), both made by :func:`glmix_vis.wsss.pipeline.pseudo_mask`.

        Args:
            recipe: a :class:`~glmix_vis.wsss.recipe.MaskRecipe`, its short name
                (``"slot-cam+slot-walk+crf"``) or ``None`` (slot-cam, no CRF); its threshold
                defaults to the one the checkpoint records for the method, as eval's.
            labels: multi-hot over the foreground classes: restricts the classes, as the WSSS
                protocol does with ground-truth image labels (eval's ``--labels gt``); ``None`` or
                ``"pred"``: the classes the head sees (:meth:`predicted_labels`).
            changes: recipe fields to set, e.g. ``crf=True``, ``bg_threshold=0.3``,
                ``scales=(1.0, 0.5, 1.5), flip=True``, ``refinement="par"``.

        The network's input size is :meth:`set_image`'s ``input_size`` (eval's ``--input-size``;
        note eval's default is the image's own size, the predictor's the model's).
        """
        chosen = MaskRecipe.of(recipe, **changes)
        image = self._input()
        if isinstance(labels, str):
            if labels != "pred":
                raise ValueError(f"labels must be a multi-hot array, None or 'pred' (the predictor has no "
                                 f"ground truth: pass the image's labels as an array), got {labels!r}")
            labels = None
        with inference_precision(self.precision):
            result = pseudo_mask(self.model, self.info, image, chosen, labels)
        return result.final(image.rgb)
