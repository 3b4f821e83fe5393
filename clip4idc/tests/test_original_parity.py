"""Our model against outputs the original code computed on the same weights and inputs (fixtures/original_outputs.pt):
features, similarities, decoder log-probs, greedy captions, training updates, freezing and retrieval metrics.

Values are compared in float64 (both implementations run in double precision; machine-independent, 1e-9 relative),
once more in float32 and with CLIP stored in fp16, each within a bound derived next to its assertion."""
import argparse
from pathlib import Path

import pytest
import torch

from engine import prep_optimizer, train_one_epoch
from metrics import compute_metrics, pair_to_text_sim, text_to_pair_metrics
from modules.build import freeze_clip, inflate_conv2
from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.module_decoder import DecoderConfig
from modules.tokenization_clip import ClipTokenizer
from parity_weights import (CLIP_CONFIG, DECODER_CONFIG, INTRA_LAYERS, MAX_WORDS, SENTENCES, SOT, TRAIN, VOCAB,
                            LossRecorder, deterministic_state_dict, parity_inputs, retrieval_similarities,
                            training_batch)

pytestmark = pytest.mark.parity

EXPECTED = torch.load(Path(__file__).parent / "fixtures" / "original_outputs.pt")
REFERENCE = EXPECTED["float64"]
INPUTS = parity_inputs()


def assert_float64_close(ours: torch.Tensor, theirs: torch.Tensor, msg: str = "") -> None:
    """1e-9 relative to the tensor's largest value: both sides ran the same float64 operations, so only summation
    order (one ulp, 1.1e-16, per operation) can separate them."""
    assert ours.dtype == theirs.dtype == torch.float64, msg
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9 * float(theirs.abs().max()), msg=msg)


def our_model(task: str, dtype: torch.dtype = torch.float64, fp16: bool = False,
              linear_patch: str = "2d") -> CLIP4IDC:
    """The model on the deterministic weights: in ``dtype``, or with CLIP stored in fp16 as the original does."""
    decoder = DecoderConfig(**DECODER_CONFIG) if task == "caption" else None
    model = CLIP4IDC(ClipConfig(**CLIP_CONFIG), task, decoder, linear_patch, INTRA_LAYERS, fp16)
    if linear_patch == "2d":
        assert list(model.state_dict()) == EXPECTED[f"{task}_keys"]  # the same keys, in the same order
    if not fp16:
        model.to(dtype)
    state = deterministic_state_dict(model.state_dict())
    if linear_patch == "3d":
        conv1 = state["clip.visual.conv1.weight"]
        state["clip.visual.conv2.weight"] = inflate_conv2(conv1, model.clip.visual.conv2.weight.shape[2])
    model.load_state_dict(state, strict=True)
    return model.eval()


def features(model: CLIP4IDC) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    text, text_tokens = model.get_sequence_output(INPUTS["input_ids"])
    visual, visual_tokens = model.get_visual_output(INPUTS["bef_image"], INPUTS["aft_image"])
    return text, visual, text_tokens, visual_tokens


def similarity(model: CLIP4IDC) -> torch.Tensor:
    text, visual, _, _ = features(model)
    return model.get_similarity_logits(text, visual)


def logprobs(model: CLIP4IDC) -> torch.Tensor:
    _, visual_tokens = model.get_visual_output(INPUTS["bef_image"], INPUTS["aft_image"])
    logits = model.decoder_logits(visual_tokens, INPUTS["input_caption_ids"].view(-1, MAX_WORDS),
                                  INPUTS["decoder_mask"].view(-1, MAX_WORDS))
    return torch.log_softmax(logits, -1)


@torch.no_grad()
def test_retrieval_features_and_similarity():
    expected = REFERENCE["retrieval"]
    model = our_model("retrieval")
    text, visual, text_tokens, visual_tokens = features(model)
    for name, ours in (("text_pooled", text), ("visual_pooled", visual), ("text_tokens", text_tokens),
                       ("visual_tokens", visual_tokens)):
        assert_float64_close(ours, expected[name], msg=name)
    assert_float64_close(model.get_similarity_logits(text, visual), expected["similarity"])


@torch.no_grad()
def test_caption_logprobs_and_greedy_decoding():
    expected = REFERENCE["caption"]
    model = our_model("caption")
    ours = logprobs(model)
    assert_float64_close(ours, expected["logprobs"])
    targets = INPUTS["output_caption_ids"].view(-1)
    assert_float64_close(model.caption_loss(ours, targets), expected["eval_cross_entropy"])
    for use_cache in (False, True):  # the original's prefix re-run, and the cached decoder
        greedy = model.greedy_decode(INPUTS["bef_image"], INPUTS["aft_image"], SOT, MAX_WORDS, use_cache)
        assert torch.equal(greedy, expected["greedy"]), f"use_cache={use_cache}"


# Largest float32-vs-float64 gaps measured on these inputs (torch 2.14.1, AMD EPYC with AVX-512, one thread), the
# original's / ours: similarity 2.3e-6 / 2.2e-6, pooled and token features 2.2e-6 / 2.2e-6, log-probs 2.6e-6 / 3.1e-6;
# ours under ATEN_CPU_CAPABILITY=default / =avx2 / MKL_ENABLE_INSTRUCTIONS=AVX2: at most 3.0e-6 / 2.4e-6 / 3.1e-6.
# 1e-5 is 3x the largest gap (values of size <= 10, float32 rounding 6e-8 relative per operation).
FLOAT32_TOLERANCE = dict(atol=1e-5, rtol=0)


@torch.no_grad()
def test_float32_path_against_the_float64_reference():
    retrieval, caption = our_model("retrieval", torch.float32), our_model("caption", torch.float32)
    text, visual, text_tokens, visual_tokens = features(retrieval)
    for name, ours in (("text_pooled", text), ("visual_pooled", visual), ("text_tokens", text_tokens),
                       ("visual_tokens", visual_tokens), ("similarity", retrieval.get_similarity_logits(text, visual))):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours.double(), REFERENCE["retrieval"][name], **FLOAT32_TOLERANCE, msg=name)
        torch.testing.assert_close(EXPECTED["float32"]["retrieval"][name].double(), REFERENCE["retrieval"][name],
                                   **FLOAT32_TOLERANCE, msg=f"original's {name}")
    torch.testing.assert_close(logprobs(caption).double(), REFERENCE["caption"]["logprobs"], **FLOAT32_TOLERANCE)
    # Greedy ids agree when every step's best token leads the second by far more than the float32 gap: the smallest
    # lead along the reference's greedy path (teacher-forced on its own ids, the same causal computation; 9.5e-3).
    top2 = greedy_path_logprobs(our_model("caption"), REFERENCE["caption"]["greedy"]).topk(2, dim=-1).values
    assert (top2[..., 0] - top2[..., 1]).min() > 10 * FLOAT32_TOLERANCE["atol"]
    for use_cache in (False, True):
        greedy = caption.greedy_decode(INPUTS["bef_image"], INPUTS["aft_image"], SOT, MAX_WORDS, use_cache)
        assert torch.equal(greedy, REFERENCE["caption"]["greedy"]), f"use_cache={use_cache}"


def greedy_path_logprobs(model: CLIP4IDC, greedy: torch.Tensor) -> torch.Tensor:
    _, visual_tokens = model.get_visual_output(INPUTS["bef_image"], INPUTS["aft_image"])
    ids = torch.cat([torch.full((greedy.size(0), 1), SOT), greedy[:, :-1]], 1)
    return torch.log_softmax(model.decoder_logits(visual_tokens, ids, torch.ones_like(ids)), -1)


def fp16_stored(dtypes: dict[str, torch.dtype]) -> set[str]:
    return {k for k, v in dtypes.items() if v == torch.float16}


@torch.no_grad()
def test_fp16_clip_storage_matches_the_original():
    """The original keeps CLIP's Linear/Conv weights and biases, attention in-projections, ``proj`` and
    ``text_projection`` in fp16 (LayerNorms, embeddings, logit scale, the pair parameters and the decoder stay fp32);
    ours with fp16=True stores exactly the same entries in fp16."""
    retrieval, caption = our_model("retrieval", fp16=True), our_model("caption", fp16=True)
    for model, name in ((retrieval, "retrieval_dtypes"), (caption, "caption_dtypes")):
        dtypes = {k: v.dtype for k, v in model.state_dict().items()}
        assert dtypes == EXPECTED["fp16"][name]
        assert {str(v) for v in dtypes.values()} == {"torch.float16", "torch.float32"}
    assert "clip.visual.transformer.resblocks.0.attn.in_proj_weight" in fp16_stored(EXPECTED["fp16"]["caption_dtypes"])
    assert not any(k.startswith("decoder.") or "ln_" in k for k in fp16_stored(EXPECTED["fp16"]["caption_dtypes"]))
    # fp16 keeps 11 significant bits: unit roundoff u = 2^-11 = 4.9e-4. The pooled text and pair vectors leave the
    # last fp16 matmul (the projections) rounded to fp16, a relative error of u per component on each side, which
    # moves a cosine by up to 2u; the similarity is logit_scale (20) times that cosine: bound 20 * 2u = 2.0e-2.
    # Measured from the reference: the original 4.9e-3; ours 4.9e-3, 3.6e-3 / 4.5e-3 / 4.9e-3 under
    # ATEN_CPU_CAPABILITY=default / =avx2 / MKL_ENABLE_INSTRUCTIONS=AVX2 (fp16 arithmetic differs between kernels:
    # ours and the original's recorded fp16 values differ by 2.4e-3 under =default), against 2.2e-6 for fp32 storage,
    # so the fp16 path must also stay clear of the float32 tolerance.
    u = 2.0 ** -11
    sim_error = (similarity(retrieval).double() - REFERENCE["retrieval"]["similarity"]).abs().max()
    assert 10 * FLOAT32_TOLERANCE["atol"] < sim_error < 20 * 2 * u
    assert (EXPECTED["fp16"]["similarity"].double() - REFERENCE["retrieval"]["similarity"]).abs().max() < 20 * 2 * u
    # The decoder stays fp32 but reads visual tokens rounded to fp16 (relative error u): a logit of size <= 10 moves
    # by <= 10u and a log-softmax by at most twice the largest logit change: bound 2 * 10u = 9.8e-3. Measured: 1.0e-3
    # (ours and the original, under all three settings), 3.1e-6 for fp32 storage.
    lp_error = (logprobs(caption).double() - REFERENCE["caption"]["logprobs"]).abs().max()
    assert 10 * FLOAT32_TOLERANCE["atol"] < lp_error < 2 * 10 * u
    assert (EXPECTED["fp16"]["logprobs"].double() - REFERENCE["caption"]["logprobs"]).abs().max() < 2 * 10 * u


@pytest.mark.parametrize("task", ["retrieval", "caption"])
def test_training_steps_match(task):
    """Three updates with each stage's BertAdam groups and schedule, gradient clipping, the logit-scale clamp and
    (captioning) the decoder's dropout drawing the same masks: the same losses and the same trained model."""
    expected = REFERENCE[task]
    model = LossRecorder(our_model(task))
    optimizer = prep_optimizer(model.module, task, TRAIN["lr"], TRAIN["coef_lr"], TRAIN["warmup_proportion"],
                               TRAIN["t_total"])
    args = argparse.Namespace(task_type=task, datatype="clevr", precision="fp32", gradient_accumulation_steps=1,
                              n_display=1, rank=0, epochs=1)
    torch.manual_seed(TRAIN["seed"])
    batches = [training_batch(INPUTS, task)] * TRAIN["steps"]
    mean_loss, _ = train_one_epoch(model, batches, optimizer, torch.device("cpu"), args, 0, 0)
    assert_float64_close(torch.tensor(model.losses, dtype=torch.float64), expected["train_losses"])
    assert mean_loss == pytest.approx(expected["train_mean_loss"], rel=1e-9)
    trained = model.module.eval()
    assert_float64_close(trained.clip.logit_scale.detach(), expected["trained_logit_scale"])
    with torch.no_grad():
        if task == "retrieval":
            assert_float64_close(similarity(trained), expected["trained_similarity"])
        else:
            assert_float64_close(logprobs(trained), expected["trained_logprobs"])
            greedy = trained.greedy_decode(INPUTS["bef_image"], INPUTS["aft_image"], SOT, MAX_WORDS)
            assert torch.equal(greedy, expected["trained_greedy"])


@pytest.mark.parametrize("case", sorted(EXPECTED["frozen"]))
def test_freezing_matches(case):
    task, datatype, layers = case.split("_")
    model = our_model(task)
    freeze_clip(model, int(layers), datatype, task, "2d")
    assert [n for n, p in model.clip.named_parameters() if not p.requires_grad] == EXPECTED["frozen"][case]


@torch.no_grad()
def test_3d_patch_embedding_from_a_2d_checkpoint():
    """--linear_patch 3d without conv2 weights: conv1 inflated into the centre tap, as in from_pretrained."""
    _, visual, _, visual_tokens = features(our_model("retrieval", linear_patch="3d"))
    assert_float64_close(visual, REFERENCE["patch3d"]["visual_pooled"])
    assert_float64_close(visual_tokens.sum(-1), REFERENCE["patch3d"]["visual_tokens_sum"])


def test_retrieval_metrics_match():
    square, grouped = retrieval_similarities()
    expected = EXPECTED["metrics"]
    for ours, theirs in ((compute_metrics(square.numpy()), expected["square"]),
                         (text_to_pair_metrics(grouped.numpy()), expected["text_to_pair"]),
                         (compute_metrics(pair_to_text_sim(grouped.numpy())), expected["pair_to_text"])):
        assert ours == pytest.approx({k: theirs[k] for k in ("R1", "R5", "R10", "MR", "MeanR")})


def test_bpe_tokenizer_matches():
    """The vocabulary from the open-clip-torch wheel tokenizes, numbers and decodes as the original's own copy."""
    tokenizer, expected = ClipTokenizer(), EXPECTED["tokenizer"]
    assert [tokenizer.tokenize(s) for s in SENTENCES] == expected["tokens"]
    assert [tokenizer.encode(s) for s in SENTENCES] == expected["ids"]
    assert [tokenizer.convert_ids_to_tokens(i) for i in expected["ids"]] == expected["decoded"]
    assert [tokenizer.vocab["<|startoftext|>"], tokenizer.vocab["<|endoftext|>"], len(tokenizer)] == expected["special"]


def test_fixture_matches_these_inputs():
    """The compact vocabulary's last two ids are start- and end-of-text, as in CLIP's BPE (pooling takes argmax)."""
    assert EXPECTED["commit"] == "ca49461"
    assert INPUTS["input_ids"].max() == VOCAB - 1 and SOT == VOCAB - 2
