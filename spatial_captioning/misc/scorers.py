"""Caption metrics from shared_eval (the repository's pycocoevalcap-exact implementation)."""
from __future__ import annotations

from shared_eval.captions import CiderD, evaluate_with_images

__all__ = ["CiderD", "evaluate_with_images"]
