"""The README's name for the captioning script: the same as main_task_caption.py."""
import sys

from errors import run_cli
from main_task_caption import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
