"""Class evidence methods, selectable by name: ``cam``, ``token`` and ``slot-cam`` (ours)."""

from .base import (
    EvidenceMethod,
    aggregate_classes,
    available_evidence_methods,
    get_evidence_method,
    normalize_per_class,
    register_evidence,
    resize_maps,
)
from .cam import CAM
from .slot_cam import DEFAULT_SLOT_CAM, SlotCAM, SlotCAMConfig
from .token import TokenEvidence

__all__ = [
    "EvidenceMethod", "CAM", "TokenEvidence", "SlotCAM", "SlotCAMConfig", "DEFAULT_SLOT_CAM",
    "get_evidence_method", "available_evidence_methods", "register_evidence",
    "aggregate_classes", "normalize_per_class", "resize_maps",
]
