"""Weakly-supervised semantic segmentation on GLNet: class evidence, pseudo-masks, CRF, metrics.

:mod:`~glmix_vis.wsss.pipeline` takes one image through them (labels -> evidence -> mask -> CRF);
:mod:`~glmix_vis.wsss.evaluate` drives it over a dataset split, into an
:mod:`~glmix_vis.wsss.outdir` output folder.
"""

from ..data.imagenet_voc import (
    VOC_FOREGROUND,
    VOC_TO_IMAGENET,
    imagenet_class_names,
    imagenet_to_voc,
    voc_class_map,
)
from .crf import CRFParams, crf_labels, crf_refine, crf_refine_batch, crf_stream
from .evidence import (
    CAM,
    DEFAULT_SLOT_CAM,
    EvidenceMethod,
    SlotCAM,
    SlotCAMConfig,
    TokenEvidence,
    available_evidence_methods,
    get_evidence_method,
)
from .evidence.tta import DEFAULT_SCALES, augments, tta_evidence
from .masks import (
    DEFAULT_BG_THRESHOLD,
    DEFAULT_THRESHOLDS,
    ThresholdSweep,
    best_threshold,
    restrict_to_labels,
    scores_to_mask,
    sweep_confusions,
    unary_probabilities,
)
from .metrics import ConfusionMatrix, Metrics, all_reduce_confusion, confusion_matrix, sum_confusions
from .pipeline import (
    ImageInput,
    PseudoMask,
    class_evidence,
    dense_crf,
    image_labels,
    label_threshold,
    predicted_labels,
    pseudo_mask,
    slot_oracle,
)
from .recipe import ORACLE_METHOD, MaskRecipe
from .refinement import REFINEMENTS, Refinement, get_refinement

__all__ = [
    "EvidenceMethod", "CAM", "TokenEvidence", "SlotCAM", "SlotCAMConfig", "DEFAULT_SLOT_CAM",
    "get_evidence_method", "available_evidence_methods",
    "VOC_FOREGROUND", "VOC_TO_IMAGENET", "voc_class_map", "imagenet_class_names", "imagenet_to_voc",
    "DEFAULT_SCALES", "augments", "tta_evidence",
    "DEFAULT_BG_THRESHOLD", "DEFAULT_THRESHOLDS", "restrict_to_labels", "scores_to_mask", "sweep_confusions",
    "ThresholdSweep", "best_threshold", "unary_probabilities",
    "CRFParams", "crf_refine", "crf_labels", "crf_refine_batch", "crf_stream",
    "ORACLE_METHOD", "PseudoMask", "class_evidence", "image_labels", "label_threshold", "predicted_labels",
    "pseudo_mask", "dense_crf", "ImageInput", "slot_oracle", "MaskRecipe",
    "ConfusionMatrix", "Metrics", "confusion_matrix", "sum_confusions", "all_reduce_confusion",
    "REFINEMENTS", "Refinement", "get_refinement",
]
