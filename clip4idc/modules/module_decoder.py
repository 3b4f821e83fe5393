"""UniVL-style captioning decoder: a small encoder over the visual tokens, a decoder cross-attending to it layer by
layer, and an LM head whose projection (and the input tables) are tied to CLIP's token/position embeddings."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields

import torch
from torch import nn


@dataclass
class DecoderConfig:
    vocab_size: int = 49408
    hidden_size: int = 512
    num_hidden_layers: int = 12  # in decoder_config.json but unused by the original
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    max_target_embeddings: int = 77
    num_decoder_layers: int = 3

    @classmethod
    def from_model_dir(cls, decoder_model: str) -> "DecoderConfig":
        """Read ``decoder_config.json`` from ``modules/<decoder_model>`` or from the directory ``decoder_model``."""
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), decoder_model)
        directory = here if os.path.isdir(here) else decoder_model
        path = os.path.join(directory, "decoder_config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--decoder_model {decoder_model!r}: no decoder_config.json at {path}")
        values = json.load(open(path))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def gelu(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class LayerNorm(nn.LayerNorm):
    """BERT's TF-style LayerNorm (epsilon inside the square root, biased variance) = torch's LayerNorm."""

    def __init__(self, hidden_size: int, eps: float = 1e-12):
        super().__init__(hidden_size, eps=eps)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = LayerNorm(cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return gelu(self.dense(hidden))


class BertOutput(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = LayerNorm(cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"hidden size {cfg.hidden_size} is not a multiple of {cfg.num_attention_heads} heads")
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.attend(q, self.split_heads(self.key(k)), self.split_heads(self.value(v)), additive_mask)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``x`` split into heads, [B, heads, L, head_size] each (what the decode cache keeps)."""
        return self.split_heads(self.key(x)), self.split_heads(self.value(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               additive_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention of the queries ``q`` [B, Lq, D] over keys/values already projected and split into heads."""
        q = self.split_heads(self.query(q))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        if additive_mask is not None:
            scores = scores + additive_mask
        context = self.dropout(scores.softmax(-1)) @ v
        context = context.permute(0, 2, 1, 3).contiguous()
        return context.view(*context.shape[:-2], self.num_heads * self.head_size)


class DecoderAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.att = MultiHeadAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.att(q, kv, kv, additive_mask), q)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.slf_attn = DecoderAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.slf_attn(x, x, mask)
        return self.output(self.intermediate(x), x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.slf_attn = DecoderAttention(cfg)
        self.enc_attn = DecoderAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, self_mask: torch.Tensor, enc_mask: torch.Tensor) -> torch.Tensor:
        x = self.enc_attn(self.slf_attn(x, x, self_mask), enc, enc_mask)
        return self.output(self.intermediate(x), x)

    def step(self, x: torch.Tensor, cache: "LayerCache", enc_mask: torch.Tensor) -> torch.Tensor:
        """``forward`` for the newest position only [B, 1, D]: its key/value join the cache, the earlier positions'
        are read from it (no causal mask needed: the cache holds no later position)."""
        key, value = self.slf_attn.att.project_kv(x)
        cache.self_keys = key if cache.self_keys is None else torch.cat([cache.self_keys, key], 2)
        cache.self_values = value if cache.self_values is None else torch.cat([cache.self_values, value], 2)
        x = self.slf_attn.output(self.slf_attn.att.attend(x, cache.self_keys, cache.self_values, None), x)
        x = self.enc_attn.output(self.enc_attn.att.attend(x, cache.enc_keys, cache.enc_values, enc_mask), x)
        return self.output(self.intermediate(x), x)


@dataclass
class LayerCache:
    """One decoder layer's projected keys/values: of the visual tokens (fixed) and of the caption so far (growing)."""

    enc_keys: torch.Tensor
    enc_values: torch.Tensor
    self_keys: torch.Tensor | None = None
    self_values: torch.Tensor | None = None


@dataclass
class DecodeCache:
    layers: list[LayerCache]
    enc_mask: torch.Tensor
    length: int = 0  # caption positions decoded so far


class DecoderEmbeddings(nn.Module):
    def __init__(self, cfg: DecoderConfig, word_weight: nn.Parameter, position_weight: nn.Parameter):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_target_embeddings, cfg.hidden_size)
        # Tied to CLIP's token and positional embeddings.
        self.word_embeddings.weight = word_weight
        self.position_embeddings.weight = position_weight
        self.LayerNorm = LayerNorm(cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Embeddings of ``input_ids`` [B, L] at positions ``start`` .. ``start + L - 1``."""
        positions = torch.arange(start, start + input_ids.size(1), device=input_ids.device).unsqueeze(0)
        positions = positions.expand_as(input_ids)
        return self.dropout(self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions)))


class Encoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.layer = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.num_decoder_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layer:
            x = layer(x, mask)
            outputs.append(x)
        return outputs


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.layer = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)])

    def forward(self, x: torch.Tensor, encoder_outs: list[torch.Tensor], self_mask: torch.Tensor,
                enc_mask: torch.Tensor) -> torch.Tensor:
        for layer, enc in zip(self.layer, encoder_outs):  # decoder layer i attends to encoder layer i
            x = layer(x, enc, self_mask, enc_mask)
        return x


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = LayerNorm(cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, cfg: DecoderConfig, embedding_weight: nn.Parameter):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(embedding_weight.size(0)))
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(embedding_weight.size(1), embedding_weight.size(0), bias=False)
        self.decoder.weight = embedding_weight  # output projection tied to the token embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x)) + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: DecoderConfig, embedding_weight: nn.Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, embedding_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


class DecoderClassifier(nn.Module):
    def __init__(self, cfg: DecoderConfig, embedding_weight: nn.Parameter):
        super().__init__()
        self.cls = BertOnlyMLMHead(cfg, embedding_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls(x)


class DecoderModel(nn.Module):
    def __init__(self, cfg: DecoderConfig, word_weight: nn.Parameter, position_weight: nn.Parameter):
        super().__init__()
        self.config = cfg
        self.embeddings = DecoderEmbeddings(cfg, word_weight, position_weight)
        self.decoder = Decoder(cfg)
        self.encoder = Encoder(cfg)
        self.classifier = DecoderClassifier(cfg, word_weight)

    def forward(self, input_ids: torch.Tensor, encoder_outs: torch.Tensor, answer_mask: torch.Tensor,
                encoder_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, vocab] for caption inputs ``input_ids`` [B, L] given visual tokens ``encoder_outs``."""
        x = self.embeddings(input_ids)
        dtype = x.dtype
        enc_mask = (1.0 - encoder_mask[:, None, None, :].to(dtype)) * -10000.0
        length = input_ids.size(1)
        causal = torch.triu(torch.ones(length, length, device=x.device, dtype=dtype), diagonal=1)[None, None]
        blocked = ((1.0 - answer_mask[:, None, None, :].to(dtype)) + causal).gt(0).to(dtype)
        encoder_layers = self.encoder(encoder_outs, enc_mask)
        return self.classifier(self.decoder(x, encoder_layers, blocked * -10000.0, enc_mask))

    def start_cache(self, encoder_outs: torch.Tensor, encoder_mask: torch.Tensor) -> DecodeCache:
        """Run the encoder over the visual tokens once and project every decoder layer's cross-attention keys/values."""
        enc_mask = (1.0 - encoder_mask[:, None, None, :].to(encoder_outs.dtype)) * -10000.0
        layers = [LayerCache(*layer.enc_attn.att.project_kv(enc))
                  for layer, enc in zip(self.decoder.layer, self.encoder(encoder_outs, enc_mask))]
        return DecodeCache(layers, enc_mask)

    def step(self, input_ids: torch.Tensor, cache: DecodeCache) -> torch.Tensor:
        """Logits [B, vocab] of the position after ``input_ids`` [B, 1] (the newest token), updating ``cache``; equal
        to ``forward``'s last position on the whole prefix, at the cost of one position."""
        x = self.embeddings(input_ids, start=cache.length)
        for layer, layer_cache in zip(self.decoder.layer, cache.layers):
            x = layer.step(x, layer_cache, cache.enc_mask)
        cache.length += 1
        return self.classifier(x)[:, -1]
