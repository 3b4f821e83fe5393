"""Our model against outputs the original code computed on the same weights and inputs (fixtures/original_outputs.pt):
features, similarities, decoder log-probs, greedy captions, training updates, freezing and retrieval metrics."""
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

EXPECTED = torch.load(Path(__file__).parent / "fixtures" / "original_outputs.pt")
INPUTS = parity_inputs()
FP32 = dict(atol=1e-5, rtol=0)


def our_model(task: str, fp16: bool = False, linear_patch: str = "2d") -> CLIP4IDC:
    decoder = DecoderConfig(**DECODER_CONFIG) if task == "caption" else None
    model = CLIP4IDC(ClipConfig(**CLIP_CONFIG), task, decoder, linear_patch, INTRA_LAYERS, fp16)
    if linear_patch == "2d":
        assert list(model.state_dict()) == EXPECTED[f"{task}_keys"]  # the same keys, in the same order
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
    expected = EXPECTED["retrieval"]
    model = our_model("retrieval")
    text, visual, text_tokens, visual_tokens = features(model)
    for name, ours in (("text_pooled", text), ("visual_pooled", visual), ("text_tokens", text_tokens),
                       ("visual_tokens", visual_tokens)):
        torch.testing.assert_close(ours, expected[name], **FP32, msg=name)
    torch.testing.assert_close(model.get_similarity_logits(text, visual), expected["similarity_fp32"], **FP32)


@torch.no_grad()
def test_caption_logprobs_and_greedy_decoding():
    expected = EXPECTED["caption"]
    model = our_model("caption")
    ours = logprobs(model)
    torch.testing.assert_close(ours, expected["logprobs_fp32"], **FP32)
    targets = INPUTS["output_caption_ids"].view(-1)
    torch.testing.assert_close(model.caption_loss(ours, targets), expected["eval_cross_entropy"], **FP32)
    greedy = model.greedy_decode(INPUTS["bef_image"], INPUTS["aft_image"], SOT, MAX_WORDS)
    assert torch.equal(greedy, expected["greedy"])


@torch.no_grad()
def test_fp16_clip_storage_matches_the_original():
    """The original keeps CLIP's weights in fp16 (LayerNorm in fp32, decoder in fp32); ours with fp16=True does the
    same operations, so it lands on the same numbers, 1e-3 away from the fp32 path."""
    sim = similarity(our_model("retrieval", fp16=True))
    torch.testing.assert_close(sim, EXPECTED["retrieval"]["similarity_fp16"], **FP32)
    assert (sim - EXPECTED["retrieval"]["similarity_fp32"]).abs().max() > 1e-4  # fp16 storage does change them
    torch.testing.assert_close(logprobs(our_model("caption", fp16=True)), EXPECTED["caption"]["logprobs_fp16"], **FP32)


@pytest.mark.parametrize("task", ["retrieval", "caption"])
def test_training_steps_match(task):
    """Three updates with each stage's BertAdam groups and schedule, gradient clipping, the logit-scale clamp and
    (captioning) the decoder's dropout drawing the same masks: the same losses and the same trained model."""
    expected = EXPECTED[task]
    model = LossRecorder(our_model(task))
    optimizer = prep_optimizer(model.module, task, TRAIN["lr"], TRAIN["coef_lr"], TRAIN["warmup_proportion"],
                               TRAIN["t_total"])
    args = argparse.Namespace(task_type=task, datatype="clevr", precision="fp32", gradient_accumulation_steps=1,
                              n_display=1, rank=0, epochs=1)
    torch.manual_seed(TRAIN["seed"])
    batches = [training_batch(INPUTS, task)] * TRAIN["steps"]
    mean_loss, _ = train_one_epoch(model, batches, optimizer, torch.device("cpu"), args, 0, 0)
    torch.testing.assert_close(torch.tensor(model.losses), expected["train_losses"], **FP32)
    assert mean_loss == pytest.approx(expected["train_mean_loss"], abs=1e-5)
    trained = model.module.eval()
    torch.testing.assert_close(trained.clip.logit_scale.detach(), expected["trained_logit_scale"], **FP32)
    with torch.no_grad():
        if task == "retrieval":
            torch.testing.assert_close(similarity(trained), expected["trained_similarity"], **FP32)
        else:
            torch.testing.assert_close(logprobs(trained), expected["trained_logprobs"], **FP32)
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
    torch.testing.assert_close(visual, EXPECTED["patch3d"]["visual_pooled"], **FP32)
    torch.testing.assert_close(visual_tokens.sum(-1), EXPECTED["patch3d"]["visual_tokens_sum"], atol=1e-4, rtol=0)


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
