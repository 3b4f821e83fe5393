import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
CODE = HERE.parent
ROOT = CODE.parent
for path in (str(ROOT), str(CODE)):
    if path not in sys.path:
        sys.path.insert(0, path)
torch.set_num_threads(1)

# A CLIP-architecture model small enough for CPU tests (ViT-B/32 sizes are the flag defaults).
SMALL_MODEL = [
    "--clip_random_init", "--compact_vocab", "--clip_embed_dim", "64", "--clip_vision_width", "64",
    "--clip_vision_layers", "4", "--intra_num_hidden_layers", "2", "--clip_patch_size", "16", "--clip_text_width", "64",
    "--clip_text_layers", "2", "--image_resolution", "64", "--cache_images", "--num_thread_reader", "0",
    "--max_words", "32", "--freeze_layer_num", "-1",
]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--multinode", action="store_true", default=False, help="run tests marked multinode")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than a few seconds; run with --runslow")
    config.addinivalue_line("markers", "parity: original-parity and batch-invariance tests (make test-portability)")
    config.addinivalue_line("markers",
                            "multinode: torchrun on loopback, several nodes and restarts; run with --multinode")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--runslow"), ("multinode", "--multinode")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker}: use {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """The default toy set (256 training pairs, 64 val, 64 test) in both layouts."""
    from toydata.idc import write

    root = tmp_path_factory.mktemp("idc")
    write(root, seed=0, size=256)
    return root


def clevr_args(root: Path, out: Path) -> list[str]:
    data = str(root / "clevr_change" / "data")
    return ["--datatype", "clevr", "--data_path", data, "--features_path", data, "--output_dir", str(out)] + SMALL_MODEL


def spot_args(root: Path, out: Path) -> list[str]:
    spot = root / "spot-the-diff"
    return ["--datatype", "spot", "--data_path", str(spot), "--features_path", str(spot / "images"),
            "--output_dir", str(out)] + SMALL_MODEL
