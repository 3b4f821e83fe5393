"""Several machines, simulated on 127.0.0.1 (``make test-multinode``; here ``pytest --multinode -m multinode tests``).

Two torchrun "nodes" that meet through c10d rendezvous train like one process given their global batch, and an elastic
run whose worker is SIGKILLed in the middle of an epoch is restarted by torchrun (--max-restarts=1) and ends with the
weights of an uninterrupted run. Every launch runs under ``timeout`` in its own process group; whatever a test started
is killed when it ends.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import main_dist
from util.checkpoint import read_checkpoint

from conftest import ENV, GIN, toy_flags

pytestmark = pytest.mark.multinode
LAUNCH_SECONDS = 120
# A fresh store for every rendezvous round: with the agent's shared store (the default) a restarted worker can read its
# peer's address from the round before and fail to connect (pytorch/pytorch#135712; seen here in 1 of 3 runs).
ELASTIC_ENV = {**ENV, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nnodes: int, nproc: int, port: int, uid: str, flags: list[str], max_restarts: int = 0) -> list[str]:
    return ["timeout", "-k", "5", str(LAUNCH_SECONDS), sys.executable, "-m", "torch.distributed.run",
            f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
            "--local-addr=127.0.0.1", f"--max-restarts={max_restarts}", "--monitor-interval=0.2",
            "code/main_dist.py", uid, *flags]


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    children, found, todo = children_by_parent(), [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def environment(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class Launches:
    """Processes started by a test; ``kill_all`` ends each with its process group (torchrun gives every worker its
    own session, so the workers are found through /proc before anything is killed)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] = ENV) -> subprocess.Popen:
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=GIN, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def worker(launched: list[subprocess.Popen], rank: int) -> int:
        """The pid of the training process of global rank ``rank`` started by ``launched`` (not a torchrun agent:
        torchrun sets RANK in its workers' environment only)."""
        for proc in launched:
            for pid in descendants(proc.pid):
                if f"RANK={rank}" in environment(pid):
                    return pid
        raise AssertionError(f"no worker of rank {rank} found")

    def wait(self, procs: list[subprocess.Popen], logs: list[Path]) -> None:
        for proc, log in zip(procs, logs):
            rc = proc.wait(timeout=LAUNCH_SECONDS + 10)
            assert rc == 0, f"{log.name}: exit {rc}\n" + log.read_text()[-3000:]

    def kill_all(self) -> None:
        pids = [pid for proc in self.procs if proc.poll() is None for pid in [proc.pid, *descendants(proc.pid)]]
        for pid in pids:
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.fixture
def launches():
    started = Launches()
    try:
        yield started
    finally:
        started.kill_all()


def epoch_rows(log: Path) -> dict[int, list[float]]:
    """The txt log's numbers per epoch (a row written again after a restart replaces the first)."""
    lines = [line.split() for line in log.read_text().splitlines() if line[:1].isdigit()]
    return {int(cells[0]): [float(c) for c in cells[1:]] for cells in lines}


def subset(csv: Path, rows: int, out: Path) -> Path:
    pd.read_csv(csv).iloc[:rows].to_csv(out, index=False)
    return out


def test_two_nodes_train_like_one_process_with_their_global_batch(small_toy, tmp_path, launches):
    """2 nodes x 1 process at --bs=2 against 1 process at --bs=4 (bs is per process, as in the original), on 4
    training rows: each epoch is one step on the same 4 samples."""
    train = subset(small_toy / "csv_dir" / "train_flat.csv", 4, tmp_path / "train.csv")
    val = subset(small_toy / "csv_dir" / "val.csv", 8, tmp_path / "val.csv")
    flags = toy_flags(small_toy, tmp_path) + [f"--ds_info.toy.trn_csv_file={train}", f"--ds_info.toy.val_csv_file={val}",
                                              "--resize_img=[64,64]", "--lstm_init=zeros", "--seed=0", "--epochs=3",
                                              "--lr=2e-3", "--use_reduce_lr_plateau=False"]
    port = free_port()
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [launches.start(torchrun(2, 1, port, "nodes", flags + ["--bs=2"]), log) for log in logs]
    main_dist.main_dist("single", dict(f[2:].split("=", 1) for f in flags + ["--bs=4"]))
    launches.wait(nodes, logs)
    two, one = epoch_rows(tmp_path / "txt_logs" / "nodes.txt"), epoch_rows(tmp_path / "txt_logs" / "single.txt")
    assert sorted(two) == sorted(one) == [1, 2, 3]
    for epoch in one:
        # The 8 loss columns (train and val: total, cls, box, att). Not bit-equal: each process normalises its loss by
        # its own positives and BatchNorm sees 2 samples there, 4 here (as under the original's DataParallel/DDP).
        # Measured gap: <= 4e-4 after epoch 1, <= 1.3e-3 after 2, <= 3.0e-3 after 3 (train loss); a node training
        # alone on its half (no gradient averaging) is off by 0.020 (train loss, epoch 1) and 0.055 (val loss, epoch 3).
        assert two[epoch][:8] == pytest.approx(one[epoch][:8], abs=6e-3), epoch


def test_worker_killed_mid_epoch_is_restarted_and_ends_like_an_uninterrupted_run(small_toy, tmp_path, launches):
    val = subset(small_toy / "csv_dir" / "val.csv", 8, tmp_path / "val.csv")
    flags = toy_flags(small_toy, tmp_path) + [f"--ds_info.toy.val_csv_file={val}", "--resize_img=[64,64]", "--bs=2",
                                              "--max_train_batches=4", "--epochs=3", "--seed=0", "--lr=2e-3"]
    whole_log = tmp_path / "whole.log"
    whole = launches.start(torchrun(1, 2, free_port(), "whole", flags), whole_log)
    port = free_port()
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [launches.start(torchrun(2, 1, port, "elastic", flags, max_restarts=1), log, ELASTIC_ENV) for log in logs]
    last = tmp_path / "models" / "elastic_last.pth"
    deadline = time.monotonic() + LAUNCH_SECONDS
    while not last.is_file() and time.monotonic() < deadline and all(p.poll() is None for p in nodes):
        time.sleep(0.05)
    assert last.is_file(), "the first epoch's checkpoint never appeared:\n" + logs[0].read_text()[-3000:]
    time.sleep(0.5)
    os.kill(launches.worker(nodes, rank=1), signal.SIGKILL)
    assert read_checkpoint(last)["num_epoch"] == 1  # killed after the first epoch's checkpoint, before the second's
    launches.wait(nodes + [whole], logs + [whole_log])

    assert "resuming from" in (tmp_path / "ext_logs" / "elastic.txt").read_text()
    logged = [line.split()[0] for line in (tmp_path / "txt_logs" / "elastic.txt").read_text().splitlines()
              if line[:1].isdigit()]
    assert logged == ["1", "2", "3"]  # the restart went on with epoch 2 (starting over would log 1, 1, 2, 3)
    ends = {uid: read_checkpoint(tmp_path / "models" / f"{uid}_last.pth") for uid in ("whole", "elastic")}
    assert ends["elastic"]["num_epoch"] == ends["whole"]["num_epoch"] == 3
    for key, value in ends["whole"]["model_state_dict"].items():
        assert torch.equal(ends["elastic"]["model_state_dict"][key], value), key
    assert epoch_rows(tmp_path / "txt_logs" / "elastic.txt") == epoch_rows(tmp_path / "txt_logs" / "whole.txt")
    assert (tmp_path / "models" / "whole.pth").is_file() == (tmp_path / "models" / "elastic.pth").is_file()
    assert not list((tmp_path / "models").glob(".*tmp*"))
