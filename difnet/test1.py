"""generate_caption.py of the original's first release: the same, reading <model_path>/<exp>_best.pth."""
import logging
import sys

from errors import DifnetError
from test import get_args_parser, predict, write_caption_files

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = get_args_parser(batch_size=1).parse_args()
    try:
        write_caption_files(predict(args, suffix="_best"), args.out_path, args.exp_name)
    except DifnetError as e:
        sys.exit(f"difnet: {e}")
