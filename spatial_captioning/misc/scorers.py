"""Caption metrics from shared_eval (the repository's pycocoevalcap-exact implementation).

Until the shared_eval package is merged into this branch, a small interim stand-in with the same interface is used
(pycocoevalcap for the corpus metrics, and a cached-df CIDEr-D); delete ``_interim_eval.py`` once it has landed.
"""
from __future__ import annotations

try:
    from shared_eval.captions import CiderD, evaluate
except ImportError:  # shared_eval.captions not merged yet
    from misc._interim_eval import CiderD, evaluate

__all__ = ["CiderD", "evaluate"]
