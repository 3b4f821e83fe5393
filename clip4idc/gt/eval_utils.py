"""The README's path for the ground-truth writer; the code lives in preprocess/eval_utils.py (the original's place)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "preprocess"))

from eval_utils import coco_gt_format_save, main, merge_gt_files  # noqa: E402,F401

if __name__ == "__main__":
    main()
