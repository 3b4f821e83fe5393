"""DIFNet models: one configurable captioner covering the modes base, base_lrp, difnet and difnet_lrp."""
from .beam_search import beam_search
from .captioner import MODES, CaptioningModel, ModelConfig
from .lrp import recording

__all__ = ["MODES", "CaptioningModel", "ModelConfig", "beam_search", "recording"]
