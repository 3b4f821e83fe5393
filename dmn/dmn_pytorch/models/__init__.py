"""DMN models: the DPN visual module, the old-SRU recurrences and the DMN itself."""
from .dmn import DMN, BaseDMN, UpsamplingModule

__all__ = ["DMN", "BaseDMN", "UpsamplingModule"]
