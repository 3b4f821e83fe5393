"""A pair's caption and similarities do not depend on the batch it is decoded in, nor on what the process decoded
before; the evaluation script prints the same metrics on every run. (Captioning is greedy: the original's evaluation has
no beam search.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CODE, ROOT, clevr_args
from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.module_decoder import DecoderConfig
from parity_weights import (CLIP_CONFIG, DECODER_CONFIG, INTRA_LAYERS, MAX_WORDS, SOT, deterministic_state_dict, normal,
                            parity_inputs)

pytestmark = pytest.mark.parity

PAIRS, BATCH = 9, 4  # batches of 4, 4 and a final batch of one
FLOAT32_ULP = torch.finfo(torch.float32).eps


def model(task: str) -> CLIP4IDC:
    """The parity model (deterministic weights): captions that differ from pair to pair."""
    decoder = DecoderConfig(**DECODER_CONFIG) if task == "caption" else None
    net = CLIP4IDC(ClipConfig(**CLIP_CONFIG), task, decoder, "2d", INTRA_LAYERS)
    net.load_state_dict(deterministic_state_dict(net.state_dict()), strict=True)
    return net.eval()


def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    bef = normal((PAIRS, 1, 3, 56, 56), g).float()
    aft = bef.clone()
    aft[:, :, :, 8:40, 8:40] = normal((PAIRS, 1, 3, 32, 32), g).float()
    return bef, aft


def batches(size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, PAIRS, size)]


@torch.no_grad()
def test_greedy_captions_do_not_depend_on_the_batch():
    captioner, (bef, aft) = model("caption"), pairs()

    def decode(part: slice) -> torch.Tensor:
        return captioner.greedy_decode(bef[part], aft[part], SOT, MAX_WORDS)

    one_at_a_time = [torch.cat([decode(part) for part in batches(1)]) for _ in range(2)]
    batched = [decode(part) for part in batches(BATCH)]
    assert [len(b) for b in batched] == [4, 4, 1]
    assert torch.equal(one_at_a_time[0], one_at_a_time[1])
    assert torch.equal(one_at_a_time[0], torch.cat(batched))
    assert len({tuple(ids) for ids in one_at_a_time[0].tolist()}) >= PAIRS - 2  # not one caption for every pair


@torch.no_grad()
def test_similarities_do_not_depend_on_the_batch():
    retrieval, (bef, aft) = model("retrieval"), pairs()
    texts, _ = retrieval.get_sequence_output(parity_inputs()["input_ids"])
    pooled = [retrieval.get_visual_output(bef[part], aft[part])[0] for part in batches(1)]
    pooled_batched = torch.cat([retrieval.get_visual_output(bef[part], aft[part])[0] for part in batches(BATCH)])
    # The pair features go through the same per-row operations at any batch size: 0 difference measured (AVX-512,
    # ATEN_CPU_CAPABILITY=default and =avx2); 4 float32 ulps of the largest value allowed for other kernels.
    scale = float(pooled_batched.abs().max())
    torch.testing.assert_close(torch.cat(pooled), pooled_batched, rtol=0, atol=4 * FLOAT32_ULP * scale)
    # The similarity is one [texts x D] @ [D x pairs] product whose summation order may follow the number of columns:
    # 4.8e-7 (one ulp at values up to 4.6) measured between 1 and 9 columns; 4 ulps of the largest value allowed.
    alone = torch.cat([retrieval.get_similarity_logits(texts, p) for p in pooled], 1)
    together = retrieval.get_similarity_logits(texts, pooled_batched)
    torch.testing.assert_close(alone, together, rtol=0, atol=4 * FLOAT32_ULP * float(together.abs().max()))


def eval_run(toy_root: Path, out: Path, batch_size_val: int) -> tuple[list[str], list]:
    """main_task_caption.py --do_eval (random toy CLIP, seeded) in a fresh process: its metric lines and captions."""
    args = ["--do_eval", "--gt_dir", str(toy_root / "gt"), "--no_meteor", "--decoder_model", "decoder-tiny",
            "--batch_size_val", str(batch_size_val)] + clevr_args(toy_root, out)
    args[args.index("--max_words") + 1] = "8"
    done = subprocess.run([sys.executable, str(CODE / "main_task_caption.py"), *args], capture_output=True, text=True,
                          cwd=CODE, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, check=True)
    metrics = [line.split(" - clip4idc - ")[1] for line in done.stderr.splitlines()
               if ">>>" in line or "cross-entropy" in line]
    return metrics, json.loads((out / "hyp_ep_eval.json").read_text())


def test_the_evaluation_prints_the_same_metrics_on_every_run(toy_root, tmp_path):
    """Two runs of the evaluation, the second with batches of 9 (64 test pairs: the last batch holds one)."""
    first_metrics, first_captions = eval_run(toy_root, tmp_path / "first", 64)
    second_metrics, second_captions = eval_run(toy_root, tmp_path / "second", 9)
    assert len(first_metrics) == 7  # BLEU and METEOR/ROUGE/CIDEr lines of total, sc and nsc; the cross-entropy
    assert first_metrics == second_metrics
    assert first_captions == second_captions
