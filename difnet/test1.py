"""generate_caption.py of the original's first release: the same, reading <model_path>/<exp>_best.pth."""
from errors import ensure_writable_dir, run_entry_point
from test import get_args_parser, predict, write_caption_files


def main() -> None:
    args = get_args_parser(batch_size=1).parse_args()
    ensure_writable_dir(args.out_path, "--out_path")
    write_caption_files(predict(args, suffix="_best"), args.out_path, args.exp_name)


if __name__ == "__main__":
    run_entry_point(main)
