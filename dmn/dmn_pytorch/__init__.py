"""DMN (Dynamic Multimodal Network) for referring-expression segmentation, on current PyTorch."""
from .data.referit_loader import ReferDataset
from .models import DMN, BaseDMN

__all__ = ["DMN", "BaseDMN", "ReferDataset"]
