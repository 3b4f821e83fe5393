"""Spot-the-Diff and CLEVR-Change loaders for both stages."""
