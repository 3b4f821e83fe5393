import os
import sys
from pathlib import Path

import pytest
import torch

GIN = Path(__file__).resolve().parents[1]
ROOT = GIN.parent
sys.path.insert(0, str(GIN / "code"))
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)
# Subprocesses of the tests: one thread, the repository importable (toydata, shared_eval).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

# Narrow widths used by every toy run (the original's widths stay the config defaults).
NARROW = ["--resize_img=[128,128]", "--backbone_width=8", "--backbone_layers=[1,1,1,1]", "--afs_hidden=32",
          "--afs_out=32", "--fpn_dim=32", "--head_dim=32", "--lstm_dim=32", "--word_vectors=hash", "--nw=0"]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--multinode", action="store_true", default=False,
                     help="run tests marked multinode (torchrun on 127.0.0.1; make test-multinode)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test (minutes); skipped unless --runslow")
    config.addinivalue_line("markers", "parity: batch-invariance and repeatability checks (rerun by make test-portability)")
    config.addinivalue_line("markers", "multinode: several torchrun 'nodes' on 127.0.0.1; skipped unless --multinode")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--runslow"), ("multinode", "--multinode")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker}: pass {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def toy_flags(toy: Path, tmp: Path) -> list[str]:
    """Flags pointing the 'toy' dataset at a toy directory and the outputs at ``tmp``."""
    return [f"--ds_info.toy.trn_csv_file={toy}/csv_dir/train_flat.csv", f"--ds_info.toy.val_csv_file={toy}/csv_dir/val.csv",
            f"--ds_info.toy.test_csv_file={toy}/csv_dir/test.csv", f"--ds_info.toy.img_dir={toy}/saiapr_tc12_images",
            "--ds_to_use=toy", f"--tmp_path={tmp}", *NARROW]


@pytest.fixture(scope="session")
def small_toy(tmp_path_factory) -> Path:
    from toydata.zsgnet_csv import write

    out = tmp_path_factory.mktemp("toy_small")
    write(out, seed=3, size=40)
    return out
