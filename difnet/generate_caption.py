"""LRP step 1: caption the test split one image at a time and write <out_path>/<exp>.json and <exp>_cider.json.

    python generate_caption.py --mode difnet_lrp --exp_name DIFNet_lrp   # reads <model_path>/DIFNet_lrp.pth
"""
import logging
import sys

from errors import DifnetError
from test import get_args_parser, predict, write_caption_files

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = get_args_parser(batch_size=1).parse_args()
    try:
        write_caption_files(predict(args), args.out_path, args.exp_name)
    except DifnetError as e:
        sys.exit(f"difnet: {e}")
