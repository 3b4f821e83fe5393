"""Deterministic small weights and inputs shared by the parity test and the script that produced its expected values.

``fixtures/original_outputs.pt`` holds what the original code (sushizixin/CLIP4IDC ca49461, torch 2.14 CPU; float64,
float32 and fp16 storage)
computed on exactly these weights and inputs (``make_parity_fixture.py`` says how it was run).

The visual tower has 7 x 7 patches, so each image has 50 tokens: the original takes the after-image CLS at the
hard-coded index 50 (right for ViT-B/32 at 224 only), ours at ``tokens_per_image``; here both are the same token.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import nn

VOCAB = 64  # a compact vocabulary; start-of-text and end-of-text are its last two ids, as in CLIP's BPE
SOT, EOT = VOCAB - 2, VOCAB - 1
# Plain dicts so the fixture script needs nothing of ours (the original has a package ``modules`` too).
CLIP_CONFIG = dict(embed_dim=128, image_resolution=56, vision_layers=3, vision_width=128, vision_patch_size=8,
                   context_length=77, vocab_size=VOCAB, transformer_width=128, transformer_heads=2,
                   transformer_layers=2)
INTRA_LAYERS = 2
DECODER_CONFIG = dict(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=12, num_attention_heads=4,
                      intermediate_size=256, hidden_act="gelu", hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1, type_vocab_size=2, initializer_range=0.02,
                      max_target_embeddings=77, num_decoder_layers=2)
MAX_WORDS = 12
# A few updates in train mode (decoder dropout on, seeded) with each stage's BertAdam groups and schedule.
TRAIN = dict(seed=5, steps=3, lr=1e-3, coef_lr=0.5, warmup_proportion=0.1, t_total=10)
# Keys holding the same tensor as another key (the decoder's tables and head are CLIP's token/position tables).
TIED = {"decoder.embeddings.word_embeddings.weight": "clip.token_embedding.weight",
        "decoder.classifier.cls.predictions.decoder.weight": "clip.token_embedding.weight",
        "decoder.embeddings.position_embeddings.weight": "clip.positional_embedding"}
# Parameters used as ``x @ weight``, whose fan-in is the first dimension.
RIGHT_MULTIPLIED = ("clip.text_projection", "clip.visual.proj")


def normal(shape, generator: torch.Generator) -> torch.Tensor:
    """Standard normal draws, the same on every CPU: float32 ``randn`` of 16 or more values takes a vectorised path
    whose values depend on the CPU's instruction set (AVX-512 and ATEN_CPU_CAPABILITY=default differ by 1e-6
    relative), float64 ``randn`` does not."""
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _tensor_for(key: str, shape: torch.Size) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    noise = normal(shape, g)
    if key == "clip.logit_scale":
        return torch.tensor(math.log(20.0), dtype=torch.float64)
    if key.endswith("embedding") or key.endswith("embedding.weight"):
        return 0.1 * noise
    if len(shape) >= 2:
        fan_in = shape[0] if key in RIGHT_MULTIPLIED else math.prod(shape[1:])
        return noise / fan_in ** 0.5
    if key.endswith("weight"):  # LayerNorm gains
        return 1 + 0.1 * noise
    return 0.1 * noise


def deterministic_state_dict(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tensor per key, seeded by the key's name (tied keys share their source's tensor), rounded to values fp16
    holds exactly, so the original's fp16 CLIP copy and an fp32 one start from the same numbers."""
    out = {}
    for key, value in reference.items():
        source = TIED.get(key, key)
        out[key] = _tensor_for(source, value.shape).half().float()
    return out


def parity_inputs() -> dict[str, torch.Tensor]:
    """A batch of four pairs in the loaders' shapes: text [4, 1, 12], images [4, 1, 3, 56, 56], caption ids."""
    g = torch.Generator().manual_seed(2024)
    batch = 4
    bef = normal((batch, 1, 3, 56, 56), g).float()
    aft = bef.clone()
    aft[:, :, :, 16:40, 8:32] = normal((batch, 1, 3, 24, 24), g).float()  # the "change"
    input_ids = torch.zeros(batch, 1, MAX_WORDS, dtype=torch.long)
    input_mask = torch.zeros_like(input_ids)
    caption_in = torch.zeros_like(input_ids)
    caption_out = torch.zeros_like(input_ids)
    decoder_mask = torch.zeros_like(input_ids)
    for row, words in enumerate((10, 6, 3, 8)):
        tokens = torch.randint(1, SOT, (words,), generator=g)
        input_ids[row, 0, : words + 2] = torch.cat([torch.tensor([SOT]), tokens, torch.tensor([EOT])])
        input_mask[row, 0, : words + 2] = 1
        caption_in[row, 0, : words + 1] = torch.cat([torch.tensor([SOT]), tokens])
        caption_out[row, 0, : words + 1] = torch.cat([tokens, torch.tensor([EOT])])
        decoder_mask[row, 0, : words + 1] = 1
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": torch.zeros_like(input_ids),
            "bef_image": bef, "aft_image": aft, "image_mask": torch.ones(batch, 2, dtype=torch.long),
            "input_caption_ids": caption_in, "decoder_mask": decoder_mask, "output_caption_ids": caption_out}


def retrieval_similarities() -> tuple[torch.Tensor, torch.Tensor]:
    """A [6, 6] text-pair similarity with ties (integers), and a [4 pairs, 3 sentences, 4 pairs] multi-sentence one
    padded with -inf where a pair has fewer sentences (2, 3, 1 and 3 of them), no ties."""
    g = torch.Generator().manual_seed(77)
    square = torch.randint(0, 4, (6, 6), generator=g).float()
    grouped = normal((4, 3, 4), g).float()
    for pair, sentences in enumerate((2, 3, 1, 3)):
        grouped[pair, sentences:] = float("-inf")
    return square, grouped


# Sentences for the BPE tokenizer: case, extra spaces, an HTML entity, apostrophes, digits, accents, punctuation runs,
# and the special tokens written out.
SENTENCES = ("the blue car in the upper left is gone", "There's a person walking near the 2nd building!!",
             "  the   white truck  has moved &amp; parked ", "no change was made", "The red cube became GREEN.",
             "café signs don't match; 3 cars vs. 12 cars", "<|startoftext|>a bike appeared<|endoftext|>",
             "the small yellow metal cylinder that was behind the large rubber sphere has disappeared")


def training_batch(inputs: dict[str, torch.Tensor], task: str) -> list:
    """The loaders' batch layout: retrieval (ids, mask, segments, before, after, pair mask); CLEVR captioning adds the
    distractor image and the no-change caption (here the before images and the captions, both in reverse order), then
    the pair names."""
    head = [inputs[k] for k in ("input_ids", "input_mask", "segment_ids", "bef_image", "aft_image")]
    if task == "retrieval":
        return head + [inputs["image_mask"]]
    captions = [inputs[k] for k in ("input_caption_ids", "decoder_mask", "output_caption_ids")]
    return (head + [inputs["bef_image"].flip(0), inputs["image_mask"]] + captions + [c.flip(0) for c in captions]
            + [["name"] * len(head[0])])


class LossRecorder(nn.Module):
    """Stands where a training loop expects DistributedDataParallel (``.module``, the model's forward) on one process,
    and records each forward's loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model
        self.losses: list[float] = []

    def forward(self, *args, **kwargs):
        loss = self.module(*args, **kwargs)
        self.losses.append(loss.item())
        return loss
