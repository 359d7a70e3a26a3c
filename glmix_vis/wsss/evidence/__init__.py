"""Class evidence methods, selectable by name: ``cam``, ``token``, ``slot-cam`` (ours),
pytorch-grad-cam's ``gradcam``, ``gradcam++``, ``xgradcam``, ``layercam``, ``eigencam``, ``scorecam``,
and ``seg`` (a trained segmenter's own predictions)."""

from .base import (
    EvidenceMethod,
    aggregate_classes,
    available_evidence_methods,
    evidence_class,
    get_evidence_method,
    normalize_per_class,
    register_evidence,
    resize_maps,
)
from .cam import CAM
from .grad_cam import GRAD_CAM_METHODS, PytorchGradCAMEvidence, gradcam_targets, target_layer_candidates
from .seg import SegmenterPrediction
from .slot_cam import DEFAULT_SLOT_CAM, SlotCAM, SlotCAMConfig
from .token import TokenEvidence

__all__ = [
    "EvidenceMethod", "CAM", "TokenEvidence", "SegmenterPrediction", "SlotCAM", "SlotCAMConfig", "DEFAULT_SLOT_CAM",
    "get_evidence_method", "evidence_class", "available_evidence_methods", "register_evidence",
    "aggregate_classes", "normalize_per_class", "resize_maps",
    "GRAD_CAM_METHODS", "PytorchGradCAMEvidence", "gradcam_targets", "target_layer_candidates",
]
