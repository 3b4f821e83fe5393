"""Short train.py runs on the toy set, shared by the test modules."""
from pathlib import Path

import opts
import train as train_script

TINY = ["--num_layers", "1", "--input_encoding_size", "64", "--ff_size", "128", "--heads", "4", "--num_grids", "144",
        "--dropout", "0.1", "--device", "cpu", "--batch_size", "8", "--val_images_use", "12", "--tensorboard", "0",
        "--losses_log_every", "5"]


def data_args(toy: Path, grid_dir: Path | None = None) -> list[str]:
    return ["--caption_model", "spatial_pe", "--input_json", str(toy / "cocotalk.json"),
            "--input_img_feat_dir", str(toy / "cocobu_att"), "--input_label_h5", str(toy / "cocotalk_label.h5"),
            "--input_grid_vec_dir", str(grid_dir or toy / "cocobu_box_vec"),
            "--cached_tokens", str(toy / "coco-train-idxs.p")]


def train(toy: Path, ckpt: Path, run_id: str, *extra: str, grid_dir: Path | None = None) -> dict:
    argv = ["--id", run_id, "--checkpoint_path", str(ckpt), *data_args(toy, grid_dir), *TINY,
            "--save_checkpoint_every", "1000", "--perform_validation_every", "1000", *extra]
    return train_script.train(opts.parse_opt(argv))
