"""The GLNet family (registered in timm) and its slot-map outputs."""

from .checkpoints import (
    CheckpointError,
    Detection,
    LoadReport,
    find_checkpoint,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from .factory import create_model
from .glnet import GLNET_MEAN, GLNET_STD, MODEL_CONFIGS, OFFICIAL_VARIANTS, GLMixBlock, GLNet
from .meta import CheckpointMeta
from .slots import SlotMap, SlotOutput
from .variants import detect_variant

__all__ = ["GLNet", "GLMixBlock", "SlotMap", "SlotOutput", "MODEL_CONFIGS", "OFFICIAL_VARIANTS",
           "GLNET_MEAN", "GLNET_STD", "create_model", "load_checkpoint", "read_checkpoint_meta", "detect_variant",
           "find_checkpoint", "resolve_checkpoint", "CheckpointError", "Detection", "LoadReport", "CheckpointMeta"]
