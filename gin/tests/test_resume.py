"""A training run stopped after its first epoch and started again with the same command ends exactly where an
uninterrupted run ends (models/UID_last.pth: weights, optimizer, scheduler, counters, every random state)."""
import pandas as pd
import pytest
import torch

import main_dist
from errors import CheckpointError
from util.checkpoint import read_checkpoint, save_checkpoint

from conftest import toy_flags


class Stopped(Exception):
    """Stands for a kill right after the first epoch's checkpoints were written."""


def stop_after_first_epoch(monkeypatch) -> None:
    save_last = main_dist.Run.save_last

    def save_then_stop(self, *args, **kwargs):
        save_last(self, *args, **kwargs)
        if self.num_epoch == 1:
            raise Stopped

    monkeypatch.setattr(main_dist.Run, "save_last", save_then_stop)


def epoch_rows(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if line[:1].isdigit()]


@pytest.fixture(scope="module")
def flags(small_toy, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("resume")
    pd.read_csv(small_toy / "csv_dir" / "val.csv").iloc[:8].to_csv(tmp / "val.csv", index=False)
    # --lstm_init=random (the default) draws from the torch generator on every forward: the resumed run repeats the
    # uninterrupted one only if the random state was restored too.
    args = toy_flags(small_toy, tmp) + [f"--ds_info.toy.val_csv_file={tmp / 'val.csv'}", "--resize_img=[64,64]",
                                        "--bs=4", "--max_train_batches=3", "--epochs=2", "--seed=0", "--lr=2e-3"]
    return dict(f[2:].split("=", 1) for f in args)


def test_restarted_run_ends_equal_to_an_uninterrupted_one(flags, monkeypatch):
    tmp = main_dist.Path(flags["tmp_path"])
    main_dist.main_dist("whole", flags)
    with monkeypatch.context() as patch:
        stop_after_first_epoch(patch)
        with pytest.raises(Stopped):
            main_dist.main_dist("cut", flags)
    assert read_checkpoint(tmp / "models" / "cut_last.pth")["num_epoch"] == 1
    main_dist.main_dist("cut", flags)  # the same command again

    whole, cut = read_checkpoint(tmp / "models" / "whole_last.pth"), read_checkpoint(tmp / "models" / "cut_last.pth")
    assert cut["num_epoch"] == whole["num_epoch"] == 2 and cut["num_it"] == whole["num_it"] == 6
    for key, value in whole["model_state_dict"].items():
        assert torch.equal(cut["model_state_dict"][key], value), key
    assert cut["optimizer_state_dict"]["state"][0]["step"] == 6
    rows = epoch_rows(tmp / "txt_logs" / "cut.txt")
    assert [row.split()[0] for row in rows] == ["1", "2"]  # the restart went on with epoch 2 (not 1 again, not 3)
    assert rows == epoch_rows(tmp / "txt_logs" / "whole.txt")  # losses and metrics of every epoch
    assert "resuming from" in (tmp / "ext_logs" / "cut.txt").read_text()


def test_a_torchrun_restart_of_a_finished_run_trains_nothing(flags, monkeypatch):
    tmp = main_dist.Path(flags["tmp_path"])
    main_dist.main_dist("done", flags)
    before = read_checkpoint(tmp / "models" / "done_last.pth")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    main_dist.main_dist("done", flags)
    after = read_checkpoint(tmp / "models" / "done_last.pth")
    assert after["num_epoch"] == 2 and len(epoch_rows(tmp / "txt_logs" / "done.txt")) == 2
    assert all(torch.equal(after["model_state_dict"][k], v) for k, v in before["model_state_dict"].items())


def test_a_uid_never_overwrites_another_runs_checkpoint(flags, tmp_path):
    """Run 'a' keeps a_last.pth, which is also the best-checkpoint name of run 'a_last': each refuses the other's."""
    flags = {**flags, "tmp_path": str(tmp_path)}
    models = tmp_path / "models"
    models.mkdir()
    save_checkpoint(models / "a_last.pth", torch.nn.Linear(1, 1), num_epoch=1, best_met=0.5)
    with pytest.raises(CheckpointError, match="best checkpoint of run 'a_last'"):
        main_dist.main_dist("a", flags)
    save_checkpoint(models / "b_last.pth", torch.nn.Linear(1, 1), num_epoch=1, best_met=0.5, last_of="b")
    with pytest.raises(CheckpointError, match="resumable state of run 'b'"):
        main_dist.main_dist("b_last", flags)
    (models / "c_last.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="c_last.pth could not be read .*move it away to start the run anew"):
        main_dist.main_dist("c", flags)
