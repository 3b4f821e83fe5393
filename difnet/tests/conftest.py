import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
SUBPROJECT = HERE.parent
sys.path[:0] = [str(SUBPROJECT), str(SUBPROJECT.parent), str(HERE)]
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--multinode", action="store_true", default=False,
                     help="also run tests marked multinode (torchrun on loopback; make test-multinode)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than the 4-minute suite budget allows; run with --runslow")
    config.addinivalue_line("markers", "multinode: several torchrun launches on 127.0.0.1; run with --multinode")
    config.addinivalue_line("markers", "parity: parity with the original code or batch invariance (make test-portability)")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--runslow"), ("multinode", "--multinode")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker}: run with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """A small toy set (200 images: 140 train + 20 restval, 20 dev, 20 test) in the real on-disk formats."""
    from toydata.coco_grid import write

    out = tmp_path_factory.mktemp("toy")
    write(out, seed=0, size=200)
    return out


@pytest.fixture(scope="session")
def small_toy(tmp_path_factory):
    """40 images (28 train + 4 restval, 4 dev, 4 test) for runs of the full training script."""
    from toydata.coco_grid import write

    out = tmp_path_factory.mktemp("small_toy")
    write(out, seed=1, size=40)
    return out
