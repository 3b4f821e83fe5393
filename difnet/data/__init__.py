"""Data: COCO Karpathy splits, grid/segmentation features, captions and vocabulary."""
