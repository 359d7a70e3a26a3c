"""The GLNet family (registered in timm) and its slot-map outputs."""

from .glnet import GLNET_MEAN, GLNET_STD, MODEL_CONFIGS, OFFICIAL_VARIANTS, GLMixBlock, GLNet
from .slots import SlotMap, SlotOutput

__all__ = ["GLNet", "GLMixBlock", "SlotMap", "SlotOutput", "MODEL_CONFIGS", "OFFICIAL_VARIANTS",
           "GLNET_MEAN", "GLNET_STD"]
