"""DMN (Dynamic Multimodal Network) for referring-expression segmentation, on current PyTorch."""
