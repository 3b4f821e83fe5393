"""DIFNet's captioning model in its four modes, built from one config (state-dict keys as the original's)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .containers import StatefulModule
from .decoders import TransformerDecoder
from .encoders import DifnetEncoder, TransformerEncoder

MODES = ("base", "base_lrp", "difnet", "difnet_lrp")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model; defaults are the values the original hard-codes."""

    mode: str = "base"
    vocab_size: int = 10201
    padding_idx: int = 1
    bos_idx: int = 2
    max_len: int = 54
    d_in: int = 2048  # grid feature width
    n_seg_classes: int = 133  # COCO panoptic classes
    d_model: int = 512
    d_ff: int = 2048
    h: int = 8
    n_enc: int = 3
    n_dec: int = 3
    dropout: float = 0.1
    n_fusion: int = 1  # Lf: IILN layers of the DIF encoder
    n_iters: int = 2  # T: iterations of the IILN layers
    fused_attention: bool = False  # torch's scaled_dot_product_attention (not used while recording for LRP)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.d_model % self.h:
            raise ValueError(f"d_model {self.d_model} is not divisible by the {self.h} heads")

    @property
    def uses_segmentation(self) -> bool:
        return self.mode.startswith("difnet")

    @property
    def spare_norms(self) -> bool:
        """Mode `difnet` (not `difnet_lrp`) builds never-used `layer_norm1`s in every MHA and decoder FFN."""
        return self.mode == "difnet"


class FlattenSegmentation(nn.Module):
    """(b, C, 7, 7) class maps -> (b, 49, C): cells in row-major order, like the grid rows."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), self.n_classes, -1).permute(0, 2, 1)


class CaptioningModel(StatefulModule):
    """Grid (and, in the difnet modes, segmentation) features -> encoder -> decoder log-probabilities."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, d_k = cfg.d_model, cfg.d_model // cfg.h
        layer_sizes = (d, d_k, d_k, cfg.h, cfg.d_ff, cfg.dropout)
        if cfg.uses_segmentation:
            self.encoder = DifnetEncoder(cfg.n_enc, *layer_sizes, n_fusion=cfg.n_fusion, n_iters=cfg.n_iters,
                                         spare_norm=cfg.spare_norms, fused=cfg.fused_attention)
        else:
            self.encoder = TransformerEncoder(cfg.n_enc, *layer_sizes, fused=cfg.fused_attention)
        self.decoder = TransformerDecoder(cfg.vocab_size, cfg.max_len, cfg.n_dec, cfg.padding_idx, *layer_sizes,
                                          spare_norms=cfg.spare_norms, fused=cfg.fused_attention)
        self.embed_image = nn.Sequential(nn.Linear(cfg.d_in, d), nn.ReLU(), nn.Dropout(p=cfg.dropout), nn.LayerNorm(d))
        if cfg.uses_segmentation:
            self.embed_pixel = nn.Sequential(FlattenSegmentation(cfg.n_seg_classes), nn.Linear(cfg.n_seg_classes, d),
                                             nn.ReLU(), nn.Dropout(p=cfg.dropout), nn.LayerNorm(d))
        self.init_weights()

    def init_weights(self) -> None:
        # xavier on every matrix, as the original: this includes word_emb (its pad row becomes non-zero) and the
        # frozen position table; attention biases were zeroed by the attention modules, other biases keep defaults
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    @property
    def bos_idx(self) -> int:
        return self.cfg.bos_idx

    def encode(self, images: torch.Tensor, pixels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """images (b, 49, d_in) grid features, pixels (b, C, 7, 7) segmentation (ignored by the base modes)."""
        grid = self.embed_image(images)
        if not self.cfg.uses_segmentation:
            return self.encoder(grid)
        return self.encoder(grid, self.embed_pixel(pixels))

    def forward(self, images: torch.Tensor, seq: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced log-probabilities (b, L, vocab) of the next token at every position of ``seq``."""
        enc_output, mask_enc = self.encode(images, pixels)
        return self.decoder(seq, enc_output, mask_enc)

    def relprop_encode_decode(self, R: torch.Tensor, alpha: float = 1.0) -> dict[str, torch.Tensor]:
        """Relevance of the decoder input embeddings (``emb_out``) and of the encoder output (``enc_out``), from
        relevance ``R`` (b, L, vocab) on the output of the last ``forward`` recorded under ``lrp.recording``.

        As in the original, the encoder is not traversed: ``emb_inp`` is the encoder-output relevance.
        """
        with torch.no_grad():
            R_dec, R_enc = self.decoder.relprop(R, alpha)
        return {"emb_out": R_dec, "enc_out": R_enc, "emb_inp": R_enc}
