"""An item's prediction does not depend on the batch it is in, or on what the process decoded before.

The evaluation loader of ``train.py`` is batch 1 (as the original), so the batched path is the model's forward on the
same toy items stacked by the training collate (queries right-padded, ``lengths`` given), in eval mode; with the
original's train-mode BatchNorm a batch shares statistics by design.
"""
from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from dmn_pytorch import train
from dmn_pytorch.data.referit_loader import collate_padded
from dmn_pytorch.utils.word_utils import PAD_TOKEN
from shared_eval.masks import THRESHOLDS, MaskIoU

pytestmark = pytest.mark.parity

TOY_MODEL = ["--dataset", "unc", "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "4",
             "--lang-layers", "2", "--mixed-layers", "2", "--mix-we", "--size", "48", "--emb-size", "16",
             "--hid-size", "16", "--mixed-size", "16", "--hid-mixed-size", "16", "--no-pretrained", "--workers", "0",
             "--log-interval", "1000"]
ITEMS = 5
# Largest |batched - alone| of the logits measured on an AMD EPYC (AVX-512, and ATEN_CPU_CAPABILITY=default / =avx2,
# MKL_ENABLE_INSTRUCTIONS=AVX2): float32 3.0e-8 (as built, logits up to 0.16) and 8.9e-8 (high-res per-pixel, up to
# 0.33); float64 8.3e-17. Bounds: ~17x and ~120x the largest.
LOGITS_ATOL = {torch.float32: 1.5e-6, torch.float64: 1e-14}


@pytest.fixture(scope="module")
def data_flags(toy_data, tmp_path_factory) -> list[str]:
    return ["--data", str(toy_data), "--split-root", str(tmp_path_factory.mktemp("splits"))]


def predictions(model, dataset, pad_index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (items, 1, h, w) and the 39 thresholded masks (items, 39, H, W) as the evaluation computes them."""
    dtype = next(model.parameters()).dtype
    collate = partial(collate_padded, pad_index=pad_index) if batch_size > 1 else None
    loader = DataLoader(Subset(dataset, range(ITEMS)), batch_size=batch_size, collate_fn=collate)
    scores = MaskIoU(align_corners=True)
    thresholds = torch.from_numpy(THRESHOLDS.astype("float32"))  # compared in float32, as the evaluation does
    logits, masks = [], []
    with torch.no_grad():
        for batch in loader:
            imgs, gts, words = batch[:3]
            lengths = batch[3] if batch_size > 1 else None
            out = model(imgs.to(dtype), words, lengths)
            prob = scores.probabilities(out[:, 0], tuple(gts.shape[-2:]))
            logits.append(out)
            masks.append(prob[:, None] > thresholds[None, :, None, None])
    return torch.cat(logits), torch.cat(masks)


@pytest.mark.parametrize("flags", [[], ["--high-res", "--upsamp-width", "8", "--per-pixel-msru"]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_one_equals_batch_n(data_flags, flags, dtype):
    args = train.get_args_parser().parse_args(TOY_MODEL + data_flags + flags)
    _, val_set = train.build_datasets(args)
    assert len({len(val_set[i][2]) for i in range(ITEMS)}) > 1, "the items' queries should differ in length"
    pad_index = val_set.corpus.dictionary[PAD_TOKEN]
    torch.manual_seed(0)
    model = train.build_model(args, len(val_set.corpus)).to(dtype).eval()
    alone, alone_masks = predictions(model, val_set, pad_index, 1)
    batched, batched_masks = predictions(model, val_set, pad_index, ITEMS)
    in_pairs, in_pairs_masks = predictions(model, val_set, pad_index, 2)  # batches of 2, 2 and a final 1
    again, again_masks = predictions(model, val_set, pad_index, 1)
    assert torch.equal(again, alone) and torch.equal(again_masks, alone_masks)
    for other in (batched, in_pairs):
        torch.testing.assert_close(other, alone, rtol=0, atol=LOGITS_ATOL[dtype])
    if dtype == torch.float64:  # float32 rounding may move a pixel across one of the 39 thresholds
        assert torch.equal(batched_masks, alone_masks) and torch.equal(in_pairs_masks, alone_masks)


def test_evaluation_twice_in_one_process_prints_the_same_metrics(toy_data, tmp_path, caplog):
    def evaluate_once(name: str) -> tuple[dict, list[str]]:
        caplog.clear()
        weights = tmp_path / name
        results = train.main(TOY_MODEL + ["--data", str(toy_data), "--split-root", str(tmp_path / "splits"),
                                          "--save-folder", str(weights), "--snapshot", str(weights / "none.pth"),
                                          "--optim-snapshot", str(weights / "none.pth"), "--eval-first",
                                          "--epochs", "0"])
        table = [r.getMessage() for r in caplog.records if "accumulated IoUs" in r.getMessage()]
        return results, table

    with caplog.at_level("INFO", logger="dmn_pytorch"):
        first, first_table = evaluate_once("first")
        second, second_table = evaluate_once("second")
    assert first_table and first_table == second_table
    assert first == second
