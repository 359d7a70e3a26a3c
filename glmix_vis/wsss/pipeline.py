"""One image through weakly-supervised segmentation, whoever asks (the predictor, the eval loop, the app).

    image labels ─► class evidence (test-time augmentation optional) ─► pseudo-mask ─► refinement (PAR,
    slot walk; optional) ─► dense CRF

A confidence band (:attr:`MaskRecipe.ignore_band`) writes 255 where the best allowed class's
evidence is neither low nor high, before the CRF and, kept, after it. A segmenter's own prediction
(method ``seg``) takes no labels: its mask is the argmax over every class (:func:`pseudo_mask`).

Every step is a function of the model, its input batch (one preprocessed image) and, when the
caller has it, the forward pass already run on that batch: no files, no UI. Two callers that
pass the same batch and settings get the same mask, bit for bit; ``glmix-wsss eval``'s
``masks_nocrf/`` and ``masks/`` PNGs and :meth:`glmix_vis.predictor.SlotPredictor.pseudo_mask`
are both made here.

**The label rule** (:func:`image_labels`, :func:`predicted_labels`): a class is in the image when
the head's score for it is *at least* the head's threshold, and only then: an image whose classes
all score below it holds none (a photo of a coffee cup read through the VOC classes shows no VOC
object, so its mask is all background and no class is named or drawn; a "best class" at p=0.00
would be a fiction). Eval's ``--labels gt`` never reaches this rule. The score is what :meth:`ModelInfo.class_scores` reads off the head: a
sigmoid per class for a multi-label head, threshold :data:`SIGMOID_LABEL_THRESHOLD` (0.5: the
head finds the class more likely present than not); the softmax mass of each class's group for
an ImageNet head read through a ``class_map`` (or a plain softmax head), threshold
:data:`SOFTMAX_LABEL_THRESHOLD` (0.1: a softmax shares one unit of mass among everything in the
image, so a class that is present seldom gets half of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from ..models.slots import SlotOutput, run_slots
from .crf import CRFParams, crf_labels
from .evidence.base import EvidenceMethod
from .evidence.tta import augments, tta_evidence
from .masks import IGNORE, argmax_mask, in_band, scores_to_mask, sweep_confusions, unary_probabilities
from .metrics import DEFAULT_IGNORE_INDEX
from .oracle import slot_oracle_mask
from .recipe import ORACLE_METHOD, MaskRecipe

__all__ = [
    "ORACLE_METHOD", "SIGMOID_LABEL_THRESHOLD", "SOFTMAX_LABEL_THRESHOLD", "HeadInfo", "label_threshold", "image_labels",
    "predicted_labels", "class_evidence", "ImageInput", "PseudoMask", "pseudo_mask", "dense_crf", "slot_oracle",
]

#: A multi-label (sigmoid) head sees a class from this probability on.
SIGMOID_LABEL_THRESHOLD = 0.5
#: A softmax head (an ImageNet head read through a class map) sees a class from this mass on.
SOFTMAX_LABEL_THRESHOLD = 0.1


class HeadInfo(Protocol):
    """What the label rule needs to know about a model's head (:class:`glmix_vis.loading.ModelInfo` is one)."""

    multilabel: bool

    def class_scores(self, logits: torch.Tensor) -> np.ndarray: ...


def label_threshold(multilabel: bool) -> float:
    """The score from which a head sees a class: :data:`SIGMOID_LABEL_THRESHOLD` for a multi-label
    head, :data:`SOFTMAX_LABEL_THRESHOLD` for a softmax head."""
    return SIGMOID_LABEL_THRESHOLD if multilabel else SOFTMAX_LABEL_THRESHOLD


def image_labels(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Multi-hot ``(K,)`` float32: ``scores >= threshold`` (all zeros when no class reaches it)."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 1:
        raise ValueError(f"class scores must be (K,), got shape {scores.shape}")
    return (scores >= threshold).astype(np.float32)


def predicted_labels(info: HeadInfo, logits: torch.Tensor, threshold: float | None = None) -> np.ndarray:
    """The classes the head sees in one image (``logits``: its ``(N,)`` head outputs), by the label
    rule; ``threshold`` defaults to :func:`label_threshold` of the head."""
    t = label_threshold(info.multilabel) if threshold is None else threshold
    return image_labels(info.class_scores(logits), t)


def class_evidence(method: EvidenceMethod, model: nn.Module, batch: torch.Tensor, size: Sequence[int], *,
                   slots: SlotOutput | None = None, scales: Sequence[float] = (1.0,), flip: bool = False,
                   classes: Sequence[int] | None = None) -> np.ndarray:
    """``(K', H, W)`` float32 evidence in [0, 1] of the one image in ``batch``, drawn at ``size``.

    Without augmentation the maps come from one forward pass: ``slots`` when the caller already
    ran it on ``batch`` (the predictor keeps it), else one run here. With ``scales``/``flip``,
    :func:`~glmix_vis.wsss.evidence.tta.tta_evidence` runs the scaled and flipped copies of ``batch``.
    """
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ValueError(f"batch must hold one image, (1, 3, h, w); got shape {tuple(batch.shape)}")
    size = (int(size[0]), int(size[1]))
    cls = None if classes is None else [int(c) for c in classes]
    with torch.no_grad():
        if augments(scales, flip):
            maps = tta_evidence(method, model, batch, cls, scales=scales, flip=flip, size=size)
        else:
            inputs = batch if method.needs_images else (slots if slots is not None else run_slots(model, batch))
            maps = method(model, inputs, classes=cls, size=size)
    return maps[0].cpu().numpy()


@dataclass(frozen=True, kw_only=True)
class PseudoMask:
    """One image's pseudo-mask before the CRF, with what made it (what a CRF or a threshold sweep needs).

    The recipe is the one owner of how the mask was made: the background threshold, the refinement
    and the CRF unary's background plane are read from it, so a mask cannot disagree with its recipe.

    Attributes:
        labels: ``(K,)`` float32 multi-hot, the classes the mask may use.
        scores: ``(K, H, W)`` float32 evidence in [0, 1], as the method gave it.
        mask: ``(H, W)`` uint8, 0 background and ``k + 1`` for class ``k``.
        recipe: the resolved recipe that made it (:meth:`MaskRecipe.resolved`).
        refined_scores: the refined ``(K, H, W)`` evidence the mask thresholds (``None`` exactly when
            the recipe has no refinement).
        ignored: ``(H, W)`` bool, the pixels the recipe's confidence band writes 255 (``None``: no band).
    """

    labels: np.ndarray
    scores: np.ndarray
    mask: np.ndarray
    recipe: MaskRecipe
    refined_scores: np.ndarray | None = None
    ignored: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.recipe.bg_threshold is None and not self.recipe.is_segmenter:
            raise ValueError(f"recipe {self.recipe.name!r} has no background threshold yet: resolve it first "
                             "(MaskRecipe.resolved)")
        if (self.refined_scores is None) != (self.recipe.refinement == "none"):
            raise ValueError(f"recipe {self.recipe.name!r}: refined scores go with a refinement, and only with one")

    @property
    def bg_threshold(self) -> float | None:
        """The recipe's background threshold: a pixel is background unless its best allowed class
        scores above it (``None`` for a segmenter, whose background is a class of its own)."""
        return self.recipe.bg_threshold

    @property
    def refinement(self) -> str:
        """The name of the recipe's refinement, which made :attr:`refined_scores` (``"none"``: none)."""
        return self.recipe.refinement

    @property
    def bg_mode(self) -> str:
        """The CRF unary's background plane (:func:`~glmix_vis.wsss.masks.unary_probabilities`):
        ``"rest"`` for a segmenter's probabilities over every class, else ``"threshold"``."""
        return "rest" if self.recipe.is_segmenter else "threshold"

    @property
    def mask_scores(self) -> np.ndarray:
        """``(K, H, W)``: the evidence the mask thresholds (refined, when a refinement made it)."""
        return self.scores if self.refined_scores is None else self.refined_scores

    def unary(self) -> np.ndarray:
        """``(K+1, H, W)`` CRF unary: :attr:`mask_scores` thresholded, as probabilities (argmax = :attr:`mask`)."""
        if self.recipe.is_segmenter:
            return unary_probabilities(self.mask_scores, self.labels, bg_mode="rest")
        return unary_probabilities(self.mask_scores, self.labels, bg_threshold=self.recipe.threshold)

    def after_crf(self, image: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
        """``(H, W)`` uint8 mask after a dense CRF over ``image`` (the RGB image the batch was made
        from), with ``params`` or else the recipe's CRF parameters."""
        labels = dense_crf(image, self.unary(), self.recipe.crf_params if params is None else params)
        return labels if self.ignored is None else np.where(self.ignored, np.uint8(IGNORE), labels)

    def final(self, image: np.ndarray) -> np.ndarray:
        """The recipe's mask: :meth:`after_crf` when the recipe has the CRF, else :attr:`mask`."""
        return self.after_crf(image) if self.recipe.crf else self.mask

    def masks_at(self, thresholds: Sequence[float]) -> np.ndarray:
        """``(T, H, W)`` int64: the mask this image gets at each background threshold."""
        return np.stack([scores_to_mask(self.mask_scores, t, self.labels) for t in thresholds])

    def sweep_confusions(self, gt: np.ndarray, thresholds: Sequence[float],
                         ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray:
        """``(T, K+1, K+1)`` int64 confusion matrices against ``gt`` of the masks :meth:`masks_at` gives:
        what the written masks would score at each threshold, refinement included."""
        return sweep_confusions(self.mask_scores, gt, thresholds, self.labels, ignore_index)


@dataclass(frozen=True)
class ImageInput:
    """One image as the pipeline takes it.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, the image at its own size: masks and evidence are drawn at this
            size, PAR refines along its colours and the CRF runs over it.
        batch: ``(1, 3, h, w)``, the network's input made from it (:func:`~glmix_vis.preprocess.image_to_batch`).
        slots: the forward pass of ``batch`` when the caller already ran it (else run when needed).
    """

    rgb: np.ndarray
    batch: torch.Tensor
    slots: SlotOutput | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def pseudo_mask(model: nn.Module, info: HeadInfo, image: ImageInput, recipe: MaskRecipe,
                labels: np.ndarray | Sequence[float] | None = None) -> PseudoMask:
    """Labels, evidence and the thresholded mask (before any CRF) of one image under ``recipe``.

    ``labels`` (multi-hot over the foreground classes) restricts the mask, as the WSSS protocol
    does with ground-truth image labels (method ``seg`` ignores them: a segmenter's mask is its
    argmax over every class); ``None`` applies the label rule to the head's logits
    (from ``image.slots``, or from one forward pass that the evidence then reuses). The recipe's
    threshold is :meth:`~MaskRecipe.resolved` against ``info`` here when it is not set.

    A refinement refines the evidence before the threshold, and a CRF then starts from the
    refined evidence (:meth:`PseudoMask.unary`); the slot walk walks along the scale-1 forward
    pass of ``image.batch`` (run here when the caller has none, also under test-time augmentation).
    """
    recipe = recipe.resolved(info)
    method, refiner = recipe.evidence_method(getattr(info, "class_map", None)), recipe.refiner()
    if recipe.is_segmenter:
        return _segmenter_mask(model, method, image, recipe)
    slots = image.slots
    if slots is None and (labels is None or refiner.needs_slots):
        slots = run_slots(model, image.batch)
    if labels is None:
        assert slots is not None
        labels = predicted_labels(info, slots.logits[0])
    labels = np.asarray(labels, dtype=np.float32)
    scores = _label_evidence(model, method, ImageInput(image.rgb, image.batch, slots), recipe, labels)
    refined = None
    if not refiner.is_identity:
        prepared = refiner.prepare(size=scores.shape[-2:], image=image.rgb, slots=slots, device=image.batch.device)
        refined = prepared(scores, labels)
    final_scores = scores if refined is None else refined
    mask = scores_to_mask(final_scores, recipe.threshold, labels).astype(np.uint8)
    ignored = None
    if recipe.ignore_band is not None:
        ignored = in_band(final_scores, recipe.ignore_band, labels)
        mask[ignored] = IGNORE
    return PseudoMask(labels=labels, scores=scores, mask=mask, recipe=recipe, refined_scores=refined, ignored=ignored)


def _segmenter_mask(model: nn.Module, method: EvidenceMethod, image: ImageInput, recipe: MaskRecipe) -> PseudoMask:
    """A segmenter's own mask (method ``seg``): its class probabilities (test-time augmentation as the
    recipe says) and their argmax over every class; no image labels, every class allowed."""
    scores = class_evidence(method, model, image.batch, image.size, slots=image.slots, scales=recipe.scales,
                            flip=recipe.flip)
    labels = np.ones(scores.shape[0], np.float32)
    return PseudoMask(labels=labels, scores=scores, mask=argmax_mask(scores).astype(np.uint8), recipe=recipe)


def _label_evidence(model: nn.Module, method: EvidenceMethod, image: ImageInput, recipe: MaskRecipe,
                    labels: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` evidence of every class; a method that runs the network per class (Grad-CAM's
    backward, Score-CAM's per-channel passes) computes only the image's classes, the only ones a
    mask, a sweep or a CRF reads (each class map is normalised on its own, so the others would only
    be zeros in the end)."""
    if not method.needs_images:
        return class_evidence(method, model, image.batch, image.size, slots=image.slots, scales=recipe.scales,
                              flip=recipe.flip)
    present = [int(k) for k in np.flatnonzero(labels)]
    scores = np.zeros((len(labels), *image.size), np.float32)
    if present:
        scores[present] = class_evidence(method, model, image.batch, image.size, slots=image.slots,
                                         scales=recipe.scales, flip=recipe.flip, classes=present)
    return scores


def dense_crf(image: np.ndarray, unary: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """``(H, W)`` uint8 labels: the dense CRF over ``image`` from ``(K+1, H, W)`` unary probabilities
    (:meth:`PseudoMask.unary`); what ``glmix-wsss eval`` writes to ``masks/``."""
    return crf_labels(image, unary, params).astype(np.uint8)


def slot_oracle(model: nn.Module, batch: torch.Tensor, gt: np.ndarray, block: int = -1,
                slots: SlotOutput | None = None) -> np.ndarray:
    """``(H, W)`` uint8: each hard slot of GLMix ``block`` labelled with its majority ground-truth class
    (the ceiling of slot-level labelling); ``gt`` gives the size."""
    out = slots if slots is not None else run_slots(model, batch)
    slot_map = out.select([block])[0]
    hard = slot_map.hard_upsampled(tuple(gt.shape[:2]))[0].cpu().numpy()
    return slot_oracle_mask(hard, gt).astype(np.uint8)
