"""Test set-up: one torch thread, the subproject's code on sys.path, toy data built once per session."""
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
SUBPROJECT = HERE.parent
REPO = SUBPROJECT.parent
for p in (str(SUBPROJECT), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--multinode", action="store_true", default=False,
                     help="run tests marked multinode (torchrun launches on 127.0.0.1)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, skipped unless --runslow")
    config.addinivalue_line("markers", "multinode: several torchrun launches on 127.0.0.1, skipped unless --multinode")
    config.addinivalue_line("markers", "parity: compares with the original's outputs or checks batch invariance "
                                       "(make test-portability reruns these under other CPU capabilities)")


def pytest_collection_modifyitems(config, items):
    for option, marker in (("--runslow", "slow"), ("--multinode", "multinode")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker}: pass {option} to run")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    from toydata import cocotalk

    out = tmp_path_factory.mktemp("toy_cocotalk")
    cocotalk.write(out, seed=0, size=120)
    return out


@pytest.fixture(scope="session")
def xe_run(toy_dir, tmp_path_factory) -> Path:
    """One shared XE run (60 iterations of a 1-layer, d=64 model), checkpoint id "xe"."""
    from toy_runs import train

    ckpt = tmp_path_factory.mktemp("xe")
    train(toy_dir, ckpt, "xe", "--noamopt", "--noamopt_warmup", "20", "--noamopt_factor", "0.5",
          "--max_iters", "60", "--max_epochs", "100")
    return ckpt
