"""The training script end to end on the toy data: evaluation only, learning, flags, resume, errors, visdom."""
from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import free_port
from dmn_pytorch import train
from dmn_pytorch.models.checkpoint import read_state_dict

TOY_MODEL = ["--dataset", "unc", "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "4",
             "--lang-layers", "2", "--mixed-layers", "2", "--mix-we", "--size", "48", "--emb-size", "16",
             "--hid-size", "16", "--mixed-size", "16", "--hid-mixed-size", "16", "--no-pretrained", "--workers", "0",
             "--accum-iters", "1", "--lr", "1e-3", "--log-interval", "1000", "--backup-iters", "1000"]


def run(toy_data: Path, tmp: Path, *extra: str) -> dict:
    weights = tmp / "weights"
    return train.main(TOY_MODEL + [
        "--data", str(toy_data), "--split-root", str(tmp.parent / "splits"), "--save-folder", str(weights),
        "--snapshot", str(weights / "none.pth"), "--optim-snapshot", str(weights / "none_optim.pth"), *extra])


@pytest.fixture()
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "run"


# The Makefile/demo toy model: dpn_toy trunk, narrow widths, high-res head, 64-pixel inputs.
LEARN_MODEL = ["--dataset", "unc", "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "10",
               "--lang-layers", "3", "--mix-we", "--size", "64", "--emb-size", "64", "--hid-size", "64",
               "--mixed-size", "64", "--hid-mixed-size", "64", "--high-res", "--upsamp-width", "32",
               "--no-pretrained", "--workers", "0", "--lr", "2e-3", "--accum-iters", "1", "--log-interval", "1000",
               "--backup-iters", "100000"]


def test_toy_run_learns(toy_data_default, work):
    """After 750 steps (~70 CPU seconds with the evaluations) the best epoch, as the trainer's dmn_best_weights.pth
    keeps it, scores >= 0.25 (predicting everything: ~0.05; every shape, ignoring the query: ~0.34; the untrained
    high-res model already reaches ~0.15 through its random DPN features)."""
    weights = work / "weights"
    results = train.main(LEARN_MODEL + [
        "--data", str(toy_data_default), "--split-root", str(work / "splits"), "--save-folder", str(weights),
        "--snapshot", str(weights / "none.pth"), "--optim-snapshot", str(weights / "none.pth"),
        "--eval-first", "--epochs", "3", "--max-batches-per-epoch", "250"])
    before, *after = (e["max_iou"] for e in results["evaluations"])
    assert max(after) >= 0.25
    assert max(after) >= before + 0.08


def test_eval_only_scores_and_pngs(toy_data, work, caplog):
    with caplog.at_level("INFO", logger="dmn_pytorch"):
        results = run(toy_data, work, "--eval-first", "--epochs", "0", "--save-vis", str(work / "vis"))
    (evaluation,) = results["evaluations"]
    assert evaluation["epoch"] == 0 and 0 < evaluation["max_iou"] < 0.2
    assert len(evaluation["cumulative_iou"]) == 39
    # precision@0.5..0.9 at every threshold, as the original printed them; the best threshold's in "precision".
    per_threshold = evaluation["precision_per_threshold"]
    assert list(per_threshold) == ["0.5", "0.6", "0.7", "0.8", "0.9"]
    assert all(len(values) == 39 for values in per_threshold.values())
    best = evaluation["cumulative_iou"].index(evaluation["max_iou"])
    assert {k: v[best] for k, v in per_threshold.items()} == evaluation["precision"]
    log = caplog.text
    assert log.count("precision@X for Threshold") == 39 and log.count("precision@0.9 = ") == 39
    block = "\n".join([f"precision@X for Threshold {evaluation['thresholds'][best]:<15.3E}"]
                      + [f"precision@{k} = {v[best]:.5f}" for k, v in per_threshold.items()])
    assert block in log
    saved = json.loads((work / "weights" / "eval_unc_val.json").read_text())
    assert saved["evaluations"][0]["max_iou"] == evaluation["max_iou"]
    assert len(list((work / "vis" / "epoch000").glob("*.png"))) == evaluation["samples"]
    # --split-root is honoured: nothing was written to ./data of the working directory.
    assert not (work.parent / "data").exists() and (work.parent / "splits" / "unc" / "corpus.pth").exists()


@pytest.mark.parametrize("flags", [
    ["--batch-size", "3"],
    ["--iou-loss"],
    ["--iou-loss", "--fix-iou-loss-scale", "--per-pixel-msru", "--eval-running-stats", "--fix-accum-start",
     "--accum-iters", "2"],
    ["--lstm"],
    ["--high-res", "--upsamp-width", "8", "--upsamp-amplification", "16", "--dmn-freeze"],
])
def test_flags_train_and_save(toy_data, work, flags):
    results = run(toy_data, work, "--epochs", "1", "--max-batches-per-epoch", "4", *flags)
    assert len(results["evaluations"]) == 1
    state = read_state_dict(work / "weights" / "dmn_best_weights.pth")
    assert ("upsample.out_layer.weight" in state) == ("--high-res" in flags)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_resume_continues_exactly(toy_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = ["--max-batches-per-epoch", "5"]
    straight = tmp_path / "straight"
    run(toy_data, straight, "--epochs", "2", *steps)
    resumed = tmp_path / "resumed"
    run(toy_data, resumed, "--epochs", "1", *steps)
    resume_file = resumed / "weights" / "dmn_unc_train_resume.pth"
    run(toy_data, resumed, "--epochs", "2", "--resume", str(resume_file), *steps)
    a = torch.load(straight / "weights" / "dmn_unc_train_resume.pth", weights_only=True)
    b = torch.load(resume_file, weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0)


class CrashAfter:
    """A loader that raises after ``batches`` batches, as a killed process stops mid-epoch."""

    def __init__(self, loader, batches: int):
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index == self.batches:
                raise RuntimeError("simulated crash")
            yield batch


def test_restart_with_the_same_command_continues_exactly(toy_data, tmp_path, monkeypatch):
    """Stopped in epoch 2 after its batch 3 (the state is from epoch 1's end and the backup after batch 2, which holds
    gradients of an unfinished accumulation group), the same command resumes there and ends exactly as an
    uninterrupted run: model, optimizer, LR, step losses."""
    monkeypatch.chdir(tmp_path)
    flags = ["--epochs", "3", "--max-batches-per-epoch", "5", "--accum-iters", "3", "--backup-iters", "2"]
    straight = tmp_path / "straight"
    run(toy_data, straight, *flags)

    restarted = tmp_path / "restarted"
    real_epoch = train.train_one_epoch
    calls: list[tuple[int, int, int]] = []
    crashes = [True]  # the first run's epoch 2 crashes, once

    def crash_in_epoch_2(model, loader, optimizer, epoch, *args, **kwargs):
        calls.append((epoch, kwargs["start_batch"], len(loader)))
        if epoch == 2 and crashes:
            crashes.pop()
            loader = CrashAfter(loader, 4)
        return real_epoch(model, loader, optimizer, epoch, *args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", crash_in_epoch_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(toy_data, restarted, *flags)
    assert calls == [(1, 0, 5), (2, 0, 5)]
    calls.clear()
    run(toy_data, restarted, *flags)
    # Only what was not saved is trained again: epoch 2 from batch 3 (the backup after batch 2), then epoch 3.
    assert calls == [(2, 3, 2), (3, 0, 5)]

    a = torch.load(straight / "weights" / "dmn_unc_train_resume.pth", weights_only=True)
    b = torch.load(restarted / "weights" / "dmn_unc_train_resume.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0)
    for key, value in a["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(b["optimizer"]["state"][key][name], value[name], rtol=0, atol=0)
    assert a["scheduler"] == b["scheduler"]
    for epoch, losses in a["loss_history"].items():
        torch.testing.assert_close(b["loss_history"][epoch], losses, rtol=0, atol=0)
    assert [e["max_iou"] for e in a["evaluations"]] == [e["max_iou"] for e in b["evaluations"]]
    assert not list((restarted / "weights").glob("*.tmp"))


def test_rng_states_survive_a_saved_state(tmp_path):
    """torch, numpy and Python RNG states go through a state file (loaded weights_only) and come back: the draws after
    restoring repeat the draws after capturing."""
    import random

    import numpy as np

    from dmn_pytorch.training_state import atomic_torch_save, capture_rng_states, restore_rng_states

    def draw() -> tuple:
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(), random.random()

    np.random.randn()  # leaves a cached Gaussian in numpy's state
    atomic_torch_save({"rng": capture_rng_states()}, tmp_path / "state.pth")
    expected = draw()
    restore_rng_states(torch.load(tmp_path / "state.pth", weights_only=True)["rng"])
    assert draw() == expected
    assert not list(tmp_path.glob("*.tmp"))


def test_another_runs_state_is_not_overwritten(toy_data, work, monkeypatch):
    """The same --save-folder under other training flags: one line naming the file and the fix; the file kept."""
    run(toy_data, work, "--epochs", "1", "--max-batches-per-epoch", "1")
    state = work / "weights" / "dmn_unc_train_resume.pth"
    before = state.read_bytes()
    base = TOY_MODEL + ["--data", str(toy_data), "--split-root", str(work.parent / "splits"), "--save-folder",
                        str(work / "weights"), "--snapshot", str(work / "weights" / "none.pth"),
                        "--optim-snapshot", str(work / "weights" / "none_optim.pth")]
    message = cli_error(monkeypatch, base + ["--epochs", "1", "--max-batches-per-epoch", "1", "--lr", "0.002"])
    assert str(state) in message and "--lr 0.001 there, 0.002 here" in message and "--resume" in message
    assert state.read_bytes() == before
    # The demo's and the language check's stages start over: their driver discards the state first.
    argv = base + ["--epochs", "1", "--max-batches-per-epoch", "1", "--lr", "0.002"]
    train.discard_training_state(argv)
    train.main(argv)
    assert torch.load(state, weights_only=True)["run_args"]["lr"] == 0.002


def test_batch_one_equals_padded_batch_path(toy_data, work):
    """One optimisation step through the batched code path (padding collate) at B=1 equals the original path."""
    from dmn_pytorch.data.referit_loader import collate_padded
    from dmn_pytorch.engine import TrainConfig, train_one_epoch

    args = train.get_args_parser().parse_args(TOY_MODEL + ["--data", str(toy_data), "--split-root",
                                                           str(work.parent / "splits")])
    train_set, _ = train.build_datasets(args)
    subset = torch.utils.data.Subset(train_set, [0, 1, 2])
    states = []
    for collate in (None, lambda b: collate_padded(b, pad_index=0)):
        torch.manual_seed(0)
        model = train.build_model(args, len(train_set.corpus))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = torch.utils.data.DataLoader(subset, batch_size=1, collate_fn=collate)
        result = train_one_epoch(model, loader, optimizer, 1, TrainConfig(accum_iters=1), torch.device("cpu"))
        states.append((result.losses, model.state_dict()))
    assert states[0][0] == pytest.approx(states[1][0], rel=1e-6)
    for key, value in states[0][1].items():
        torch.testing.assert_close(states[1][1][key], value, rtol=1e-5, atol=1e-6)


def cli_error(monkeypatch, argv: list[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["dmn_pytorch.train", *argv])
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stderr(stderr):
        train.cli()
    assert exc.value.code == 2
    message = stderr.getvalue().rstrip("\n").splitlines()[-1]  # progress bars may come before it
    assert message.startswith("dmn_pytorch.train: error:")
    return message


def test_user_errors_are_one_line(toy_data, work, monkeypatch, tmp_path):
    base = TOY_MODEL + ["--split-root", str(tmp_path / "splits"), "--save-folder", str(work)]
    assert "--dataset 'coco'" in cli_error(monkeypatch, base + ["--data", str(toy_data), "--dataset", "coco"])
    assert "make dmn-data" in cli_error(monkeypatch, base + ["--data", str(tmp_path / "nowhere")])
    assert "--vis-size 560" in cli_error(monkeypatch, base + ["--data", str(toy_data), "--vis-size", "2688"])
    # A checkpoint with another vocabulary size.
    args = train.get_args_parser().parse_args(TOY_MODEL)
    other = train.build_model(args, 57).state_dict()
    torch.save(other, tmp_path / "other_vocab.pth")
    message = cli_error(monkeypatch, base + ["--data", str(toy_data), "--snapshot", str(tmp_path / "other_vocab.pth")])
    assert "57 words" in message and "vocabulary size mismatch" in message


def test_foreign_checkpoint_error_names_the_file(toy_data, work, monkeypatch, tmp_path):
    """A checkpoint of another project (numpy objects in its pickle, as difnet's): the message keeps the file and
    the fix, not torch.load's last line."""
    import numpy as np

    foreign = tmp_path / "difnet_best.pth"
    torch.save({"epoch": 3, "best_cider": np.float64(1.1), "state_dict": {"encoder.weight": torch.zeros(2)}}, foreign)
    argv = TOY_MODEL + ["--data", str(toy_data), "--split-root", str(tmp_path / "splits"), "--save-folder", str(work),
                        "--snapshot", str(foreign), "--epochs", "0"]
    message = cli_error(monkeypatch, argv)
    assert str(foreign) in message and "numpy" in message and "DMN weights file" in message


def test_empty_query_is_one_line(toy_data, tmp_path, monkeypatch):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    queries = data / "referit/splits/referit/referit_query_test.json"
    table = json.loads(queries.read_text())
    first = next(iter(table))
    table[first] = ["   "]
    queries.write_text(json.dumps(table))
    argv = TOY_MODEL + ["--data", str(data), "--split-root", str(tmp_path / "splits"), "--dataset", "referit",
                        "--val", "test", "--eval-first", "--epochs", "0", "--save-folder", str(tmp_path / "w")]
    assert "empty query" in cli_error(monkeypatch, argv)


@pytest.fixture()
def visdom_server(tmp_path):
    """A real visdom server on loopback (started without its CDN asset download, which needs internet)."""
    port = free_port()
    code = ("import sys; from visdom.server.run_server import main; "
            f"sys.argv = ['visdom', '-port', '{port}', '--hostname', '127.0.0.1', '-env_path', r'{tmp_path / 'env'}']; "
            "main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("visdom server did not start")
    yield port
    proc.terminate()
    proc.wait(timeout=20)


def test_visdom_receives_loss_and_iou_plots(toy_data, work, visdom_server):
    from visdom import Visdom

    run(toy_data, work, "--epochs", "1", "--max-batches-per-epoch", "3", "--visdom", "127.0.0.1",
        "--visdom-port", str(visdom_server), "--env", "dmn-test")
    vis = Visdom(server="http://127.0.0.1", port=visdom_server, env="dmn-test", use_incoming_socket=False)
    windows = json.loads(vis.get_window_data(env="dmn-test"))
    by_title = {w["title"]: w for w in windows.values()}
    assert set(by_title) == {"Training loss per iteration", "Epoch training loss", "Current Model IoU Value"}
    assert len(by_title["Training loss per iteration"]["content"]["data"][0]["y"]) == 3
    (iou,) = by_title["Current Model IoU Value"]["content"]["data"][0]["y"]
    saved = json.loads((work / "weights" / "eval_unc_val.json").read_text())
    assert iou == pytest.approx(saved["evaluations"][-1]["max_iou"])


def test_imagenet_warning_only_when_no_checkpoint_replaces_the_trunk(toy_data, work, caplog):
    """Without --no-pretrained and without ImageNet weights: training from scratch warns; evaluating a full
    checkpoint does not (the checkpoint overwrites the trunk)."""
    with_pretrained = [a for a in TOY_MODEL if a != "--no-pretrained"]
    weights = work / "weights"
    common = with_pretrained + ["--data", str(toy_data), "--split-root", str(work.parent / "splits"),
                                "--save-folder", str(weights), "--optim-snapshot", str(weights / "none_optim.pth")]
    train.main(common + ["--snapshot", str(weights / "none.pth"), "--epochs", "1", "--max-batches-per-epoch", "1"])
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "ImageNet" in r.getMessage()]
    assert len(warnings) == 1 and "RANDOM" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level("INFO", logger="dmn_pytorch"):
        train.main(common + ["--snapshot", str(weights / "dmn_best_weights.pth"), "--epochs", "0", "--eval-first"])
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "not needed" in caplog.text


def test_visdom_absent_never_fails(toy_data, work, caplog):
    port = free_port()
    results = run(toy_data, work, "--epochs", "1", "--max-batches-per-epoch", "2", "--visdom", "http://127.0.0.1",
                  "--visdom-port", str(port))
    assert results["evaluations"] and "visdom disabled" in caplog.text


@pytest.mark.slow
def test_torchrun_ddp_two_processes(toy_data, tmp_path):
    """Two CPU processes (gloo) train together; rank 0 evaluates and saves, the LR schedule stays in step."""
    weights = tmp_path / "weights"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "dmn_pytorch.train", *TOY_MODEL, "--data", str(toy_data), "--split-root", str(tmp_path / "splits"),
           "--save-folder", str(weights), "--snapshot", str(weights / "none.pth"), "--epochs", "2",
           "--max-batches-per-epoch", "2"]
    subprocess.run(cmd, check=True, cwd=Path(train.__file__).parents[1], timeout=600, capture_output=True)
    saved = json.loads((weights / "eval_unc_val.json").read_text())
    assert [e["epoch"] for e in saved["evaluations"]] == [1, 2]
    assert torch.load(weights / "dmn_unc_train_resume.pth", weights_only=True)["epoch"] == 3


def test_accumulation_schedule():
    """Original: optimizer steps at batches 0, 3, 6 for --accum-iters 3; --fix-accum-start: at 2, 5."""
    from dmn_pytorch.engine import TrainConfig, train_one_epoch
    from dmn_pytorch.models import DMN

    torch.manual_seed(0)
    model = DMN(10, emb_size=4, hid_size=4, vis_size=560, num_filters=1, mixed_size=4, hid_mixed_size=4,
                lang_layers=1, mixed_layers=1, backend="dpn_toy", mix_we=False)
    batches = [(torch.randn(1, 3, 64, 64), torch.rand(1, 64, 64), torch.randint(0, 10, (1, 3))) for _ in range(7)]
    for fix, expected in ((False, 3), (True, 2)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        result = train_one_epoch(model, batches, optimizer, 1, TrainConfig(accum_iters=3, fix_accum_start=fix),
                                 torch.device("cpu"))
        assert len(result.losses) == expected
