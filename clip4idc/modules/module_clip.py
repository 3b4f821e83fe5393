"""CLIP (ViT) towers; the visual tower fuses an image pair (before/after) after ``intra_layers`` per-image blocks."""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

_MODELS = {
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
}
_PT_NAME = {"ViT-B/32": "ViT-B-32.pt"}


class ClipArchiveError(RuntimeError):
    """A CLIP archive that is missing, unreadable or of the wrong size."""


@dataclass
class ClipConfig:
    """Sizes of a ViT CLIP; the defaults are OpenAI's ViT-B/32."""

    embed_dim: int = 512
    image_resolution: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 32
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_heads: int = 8
    transformer_layers: int = 12


def config_from_state_dict(state_dict: dict) -> ClipConfig:
    """Read the tower sizes off a CLIP state dict (keys without the ``clip.`` prefix)."""
    if "visual.proj" not in state_dict:
        raise ClipArchiveError("only ViT CLIP archives are supported (no 'visual.proj' key found)")
    vision_width = state_dict["visual.conv1.weight"].shape[0]
    patch = state_dict["visual.conv1.weight"].shape[-1]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    width = state_dict["ln_final.weight"].shape[0]
    return ClipConfig(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=len([k for k in state_dict if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        vision_width=vision_width,
        vision_patch_size=patch,
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=width,
        transformer_heads=width // 64,
        transformer_layers=len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks")}),
    )


def archive_path(pretrained_clip_name: str, pretrained_clip_path: str | None = None) -> str:
    """Where the CLIP archive is: ``--pretrained_clip_path``, else ``modules/ViT-B-32.pt``, else a file name."""
    if pretrained_clip_path:
        return pretrained_clip_path
    if pretrained_clip_name in _PT_NAME:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), _PT_NAME[pretrained_clip_name])
    return pretrained_clip_name


def load_clip_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A CLIP state dict from an OpenAI JIT archive or a plain ``torch.save``d state dict."""
    if not os.path.isfile(path):
        raise ClipArchiveError(
            f"CLIP archive not found: {path} (run 'make clip4idc-data', which fetches {_MODELS['ViT-B/32']}, "
            "or pass --pretrained_clip_path; for a randomly initialised small CLIP pass --clip_random_init)"
        )
    try:
        state_dict = torch.jit.load(path, map_location="cpu").eval().state_dict()
    except RuntimeError:
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise ClipArchiveError(f"{path} is neither a JIT archive nor a state dict: {err}") from err
    if not isinstance(state_dict, dict) or "visual.conv1.weight" not in state_dict:
        raise ClipArchiveError(f"{path} does not hold a CLIP state dict (no 'visual.conv1.weight' key)")
    for key in ("input_resolution", "context_length", "vocab_size"):
        state_dict.pop(key, None)
    return dict(state_dict)


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 when in a narrower float type (the original's ``.float()``); fp32 and fp64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 (fp64 for fp64 input) whatever the input dtype (fp16 weights elsewhere)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(full_precision(x)).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int, causal: bool = False):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.causal = causal

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.causal:  # built for the actual length, as the original's lazy mask
            mask = torch.full((x.size(0), x.size(0)), float("-inf"), device=x.device).triu_(1).to(x.dtype)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal: bool = False):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, causal) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisualTransformer(nn.Module):
    """ViT over a before/after pair: blocks ``< intra_layers`` per image, the rest over the 2x(grid²+1) joint tokens."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 linear_patch: str = "2d", intra_layers: int = 9):
        super().__init__()
        if not 0 <= intra_layers <= layers:
            raise ValueError(f"--intra_num_hidden_layers must be in 0..{layers}, got {intra_layers}")
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.intra_layers = intra_layers
        self.tokens_per_image = (input_resolution // patch_size) ** 2 + 1
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.tokens_per_image, width))
        self.joint_positional_embedding = nn.Parameter(scale * torch.randn(2 * self.tokens_per_image, width))
        self.bef_embedding = nn.Parameter(scale * torch.randn(width))
        self.aft_embedding = nn.Parameter(scale * torch.randn(width))
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.ln_pre = LayerNorm(width)
        self.ln_mid = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        if linear_patch not in ("2d", "3d"):
            raise ValueError(f"--linear_patch must be 2d or 3d, got {linear_patch!r}")
        self.linear_patch = linear_patch
        if linear_patch == "3d":
            self.conv2 = nn.Conv3d(3, width, kernel_size=(3, patch_size, patch_size), stride=(1, patch_size, patch_size),
                                   padding=(1, 0, 0), bias=False)

    def patchify(self, x: torch.Tensor, video_frame: int) -> torch.Tensor:
        if self.linear_patch == "3d":
            x3 = x.reshape(-1, video_frame, *x.shape[-3:]).permute(0, 2, 1, 3, 4)
            x3 = self.conv2(x3).permute(0, 2, 1, 3, 4)
            return x3.reshape(-1, *x3.shape[-3:])
        return self.conv1(x)

    def forward(self, x: torch.Tensor, video_frame: int = 2) -> torch.Tensor:
        """``x`` [2B, 3, H, W] (before, after interleaved per pair) -> joint hidden tokens [B, 2(grid²+1), width]."""
        x = self.patchify(x, video_frame)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)
        for block in self.transformer.resblocks[: self.intra_layers]:
            x = block(x)
        x = x.permute(1, 0, 2)
        x = x.view(x.size(0) // video_frame, video_frame, x.size(-2), x.size(-1))
        x = torch.cat([x[:, 0] + self.bef_embedding.to(x.dtype), x[:, 1] + self.aft_embedding.to(x.dtype)], dim=1)
        x = self.ln_mid(x + self.joint_positional_embedding.to(x.dtype)).permute(1, 0, 2)
        for block in self.transformer.resblocks[self.intra_layers:]:
            x = block(x)
        return x.permute(1, 0, 2)


class CLIP(nn.Module):
    def __init__(self, cfg: ClipConfig, linear_patch: str = "2d", intra_layers: int = 9):
        super().__init__()
        self.context_length = cfg.context_length
        # Parameters registered in the original's order so state_dict() keys come out in the same order.
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.transformer_width))
        self.text_projection = nn.Parameter(torch.empty(cfg.transformer_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.visual = VisualTransformer(cfg.image_resolution, cfg.vision_patch_size, cfg.vision_width, cfg.vision_layers,
                                        max(1, cfg.vision_width // 64), cfg.embed_dim, linear_patch, intra_layers)
        self.transformer = Transformer(cfg.transformer_width, cfg.transformer_layers, cfg.transformer_heads, causal=True)
        self.vocab_size = cfg.vocab_size
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.transformer_width)
        self.ln_final = LayerNorm(cfg.transformer_width)
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = (self.transformer.width ** -0.5) * ((2 * self.transformer.layers) ** -0.5)
        attn_std = self.transformer.width ** -0.5
        fc_std = (2 * self.transformer.width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=self.transformer.width ** -0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor, video_frame: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled pair vector [B, D] = mean of the two CLS tokens, all tokens [B, 2T, D])."""
        hidden = self.visual(image.type(self.dtype), video_frame=video_frame)
        hidden = self.visual.ln_post(hidden) @ self.visual.proj
        second_cls = self.visual.tokens_per_image  # 50 at ViT-B/32, hard-coded in the original
        pooled = torch.stack([hidden[:, 0], hidden[:, second_cls]], 1).mean(1)
        return pooled, hidden

    def encode_text(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled [B, D] at the end-of-text token (the largest id), all tokens [B, L, D]); no padding mask."""
        x = self.token_embedding(text).type(self.dtype)
        x = x + self.positional_embedding[: x.size(1)].type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        hidden = self.ln_final(x).type(self.dtype) @ self.text_projection
        pooled = hidden[torch.arange(hidden.shape[0]), text.argmax(dim=-1)]
        return pooled, hidden


def convert_weights(model: nn.Module) -> None:
    """Cast Linear/Conv weights and biases, attention in-projections, ``proj`` and ``text_projection`` to fp16."""

    def to_fp16(layer: nn.Module) -> None:
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            layer.weight.data = layer.weight.data.half()
            if layer.bias is not None:
                layer.bias.data = layer.bias.data.half()
        if isinstance(layer, nn.MultiheadAttention):
            for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                         "bias_k", "bias_v"):
                tensor = getattr(layer, attr)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("text_projection", "proj"):
            attr = getattr(layer, name, None)
            if isinstance(attr, torch.Tensor):
                attr.data = attr.data.half()

    model.apply(to_fp16)
