"""LRP step 1: caption the test split one image at a time and write <out_path>/<exp>.json and <exp>_cider.json.

    python generate_caption.py --mode difnet_lrp --exp_name DIFNet_lrp   # reads <model_path>/DIFNet_lrp.pth
"""
from errors import ensure_writable_dir, run_entry_point
from test import get_args_parser, predict, write_caption_files


def main() -> None:
    args = get_args_parser(batch_size=1).parse_args()
    ensure_writable_dir(args.out_path, "--out_path")
    write_caption_files(predict(args), args.out_path, args.exp_name)


if __name__ == "__main__":
    run_entry_point(main)
