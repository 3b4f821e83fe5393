"""DMN test set-up: one torch thread, the package importable, toy data built once per session."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
SUBPROJECT = HERE.parent
ROOT = SUBPROJECT.parent
for path in (SUBPROJECT, ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--multinode", action="store_true", default=False,
                     help="run tests marked multinode (torchrun on loopback; make test-multinode)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long run, skipped unless --runslow")
    config.addinivalue_line("markers", "parity: original-parity and batch-invariance tests (make test-portability)")
    config.addinivalue_line("markers", "multinode: torchrun multi-node tests, skipped unless --multinode")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--runslow"), ("multinode", "--multinode")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"{marker}; use {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """The toy refer/ReferIt dataset (small), written once."""
    from toydata.refer import write

    out = tmp_path_factory.mktemp("toy_refer")
    write(out, seed=0, size=48, image_size=64)
    return out


@pytest.fixture(scope="session")
def toy_data_default(tmp_path_factory) -> Path:
    """The toy dataset as `make dmn-toy` writes it (240 images of 128 x 128)."""
    from toydata.refer import write

    out = tmp_path_factory.mktemp("toy_refer_default")
    write(out, seed=0)
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (visdom servers, torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
