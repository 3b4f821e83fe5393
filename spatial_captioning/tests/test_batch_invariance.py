"""An image's caption does not depend on the batch it is decoded in, nor on what the process decoded before."""
import logging

import numpy as np
import pytest
import torch

import eval as eval_script
from dataloader import ImageItem, collate
from models import TransformerConfig, TransformerModel
from parity_weights import CONFIG, deterministic_state_dict
from toy_runs import data_args

pytestmark = pytest.mark.parity

# Boxes per image, so that a batch pads most images (masked boxes) and a lone image is not padded.
BOX_COUNTS = (6, 3, 5, 4, 1, 6, 2)
DECODINGS = {"greedy": {"sample_max": 1, "beam_size": 1}, "beam3": {"beam_size": 3},
             "diverse4x2": {"beam_size": 4, "group_size": 2, "diversity_lambda": 0.5}}


@pytest.fixture(scope="module")
def model_and_images():
    """The parity test's deterministic weights (without its UNK preference, so greedy captions end) and seven images
    in the loader's item format."""
    model = TransformerModel(TransformerConfig(**CONFIG))
    state = deterministic_state_dict(model.state_dict())
    state["model.generator.proj.bias"][-1] = 0.0
    model.load_state_dict(state, strict=True)
    rng = np.random.default_rng(5)
    items = []
    for cocoid, boxes in enumerate(BOX_COUNTS):
        feats = (rng.random((boxes, CONFIG["img_feat_size"])) * 2).astype(np.float32)
        grid = rng.random((boxes, CONFIG["num_grids"])) * (rng.random((boxes, CONFIG["num_grids"])) > 0.6)
        captions = np.zeros((1, CONFIG["seq_length"]), dtype=np.int64)
        items.append(ImageItem(feats, grid.astype(np.float32), captions, captions.astype(np.uint32),
                               {"ix": cocoid, "id": cocoid, "file_path": ""}))
    return model.eval(), items


def decode(model, items, opt: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(captions, log-probs of their words up to and including the end token; 0 after it)."""
    batch = collate(items, 1, CONFIG["seq_length"])  # padded to the batch's most boxes, as eval.py's batches
    with torch.no_grad():
        seq, logprobs = model.sample(batch["img_feats"], batch["img_masks"], batch["boxes"], opt)
    # Past the end token a row's log-probs are whatever the loop computed while other rows went on (as in the
    # original): they depend on the batch by construction and no loss reads them (RewardCriterion masks them).
    counted = torch.cat([torch.ones_like(seq[:, :1]), seq[:, :-1] > 0], 1).bool()
    return seq, logprobs * counted


def decode_in_batches(model, items, opt: dict, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [decode(model, items[s:s + size], opt) for s in range(0, len(items), size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@pytest.mark.parametrize("name", sorted(DECODINGS))
def test_caption_does_not_depend_on_the_batch(model_and_images, name):
    """One at a time (twice, in one process), all seven as one batch, and batches of three (the last of one)."""
    model, items = model_and_images
    opt = DECODINGS[name]
    alone_first = decode_in_batches(model, items, opt, 1)
    together = decode(model, items, opt)
    alone_again = decode_in_batches(model, items, opt, 1)
    threes = decode_in_batches(model, items, opt, 3)
    assert len({tuple(row) for row in together[0].tolist()}) > 2  # captions differ between images
    assert (together[0] > 0).sum(1).min() >= 3  # and are not empty
    for other in (alone_first, alone_again, threes):
        assert torch.equal(other[0], together[0])
        # Log-probs of the counted words: measured max difference between batch sizes 2.1e-6 (values down to -2.4),
        # 1.3e-6 / 1.2e-6 / 2.1e-6 under ATEN_CPU_CAPABILITY=default / =avx2 / MKL_ENABLE_INSTRUCTIONS=AVX2; float32
        # rounding only (0 to 2.7e-15 with the same model in float64). Tolerance about five times that: 1e-5.
        torch.testing.assert_close(other[1], together[1], atol=1e-5, rtol=0)


def test_eval_twice_prints_the_same_metrics(xe_run, toy_dir, tmp_path, monkeypatch, caplog):
    """Two runs of the same eval.py command in one process (the second after the first's decoding)."""
    argv = ["--device", "cpu", "--model", str(xe_run / "model.pth"), "--infos_path", str(xe_run / "infos_xe.pkl"),
            *data_args(toy_dir)[2:10], "--language_eval", "1", "--meteor", "0", "--dump_images", "0",
            "--ann_file", str(toy_dir / "annotations" / "captions_val2014.json"), "--beam_size", "3",
            "--batch_size", "5", "--verbose_beam", "0"]
    caplog.set_level(logging.INFO, logger="eval")
    printed, written = [], []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        caplog.clear()
        eval_script.main(argv)
        printed.append([r.getMessage() for r in caplog.records if r.name == "eval" and '"CIDEr"' in r.getMessage()])
        written.append((tmp_path / run / "vis" / "vis.json").read_bytes())
    assert len(printed[0]) == 1 and printed[0] == printed[1]
    assert written[0] == written[1]
