"""glmix-vis: slot assignment maps, weakly-supervised segmentation and figures for GLNet (GLMix)."""

from .loading import ModelInfo, load_model
from .models import (
    CheckpointError,
    GLNet,
    SlotMap,
    SlotOutput,
    create_model,
    detect_variant,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from .predictor import SlotPredictor
from .wsss.evidence.grad_cam import gradcam_targets

__version__ = "0.1.0"
__all__ = ["GLNet", "SlotMap", "SlotOutput", "create_model", "load_checkpoint", "read_checkpoint_meta",
           "detect_variant", "resolve_checkpoint", "CheckpointError", "ModelInfo", "load_model", "SlotPredictor",
           "gradcam_targets", "__version__"]
