"""CLIP4IDC: CLIP with pair fusion; stage 1 trains it contrastively, stage 2 adds the captioning decoder."""
from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from modules.module_clip import CLIP, ClipConfig, convert_weights, full_precision
from modules.module_decoder import DecoderConfig, DecoderModel

logger = logging.getLogger(__name__)


class AllGather(torch.autograd.Function):
    """Concatenate a tensor over ranks; the backward keeps only this rank's slice of the gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.batch_size = dist.get_rank(), tensor.shape[0]
        output = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(output, tensor)
        return torch.cat(output, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output[ctx.batch_size * ctx.rank: ctx.batch_size * (ctx.rank + 1)]


def allgather(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return AllGather.apply(tensor)
    return tensor


def symmetric_infonce(sim_matrix: torch.Tensor) -> torch.Tensor:
    """½ (CE over rows + CE over columns) with the diagonal as target (CLIP4Clip's CrossEn both ways)."""
    rows = -torch.diag(F.log_softmax(sim_matrix, dim=-1)).mean()
    cols = -torch.diag(F.log_softmax(sim_matrix.T, dim=-1)).mean()
    return (rows + cols) / 2


def bert_init(module: nn.Module, std: float) -> None:
    """BERT initialisation applied by the original to every Linear/Embedding of the whole model."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


class CLIP4IDC(nn.Module):
    def __init__(self, clip_cfg: ClipConfig, task_type: str, decoder_cfg: DecoderConfig | None = None,
                 linear_patch: str = "2d", intra_layers: int = 9, fp16: bool = False):
        super().__init__()
        if task_type not in ("retrieval", "caption"):
            raise ValueError(f"--task_type must be retrieval or caption, got {task_type!r}")
        self.task_type = task_type
        self.clip = CLIP(clip_cfg, linear_patch, intra_layers).float()
        if fp16:
            convert_weights(self.clip)
        if task_type == "caption":
            assert decoder_cfg is not None
            decoder_cfg.vocab_size = clip_cfg.vocab_size
            if not decoder_cfg.hidden_size == clip_cfg.transformer_width == clip_cfg.embed_dim:
                raise ValueError(f"decoder hidden_size {decoder_cfg.hidden_size} must equal the CLIP text width "
                                 f"{clip_cfg.transformer_width} and embed dim {clip_cfg.embed_dim} (tied tables, "
                                 "visual tokens as its input); pick a matching --decoder_model")
            self.decoder = DecoderModel(decoder_cfg, self.clip.token_embedding.weight, self.clip.positional_embedding)
        std = decoder_cfg.initializer_range if decoder_cfg is not None else 0.02
        self.apply(lambda m: bert_init(m, std))

    def get_sequence_output(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled text [B, 1, D], token features [B, L, D]) in fp32 (fp64 for an fp64 model)."""
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        pooled, hidden = self.clip.encode_text(input_ids)
        return full_precision(pooled).view(input_ids.size(0), -1, pooled.size(-1)), full_precision(hidden)

    def get_visual_output(self, bef_image: torch.Tensor, aft_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled pair [B, 1, D], visual tokens [B, 2T, D]) in fp32 (fp64 for an fp64 model) for images [B, 1, 3, H, W]
        each."""
        image = torch.cat([bef_image, aft_image], 1)
        b, pair, channel, h, w = image.shape
        pooled, hidden = self.clip.encode_image(image.view(b * pair, channel, h, w), video_frame=pair)
        return full_precision(pooled).view(b, -1, pooled.size(-1)), full_precision(hidden)

    def get_similarity_logits(self, sequence_output: torch.Tensor, visual_output: torch.Tensor) -> torch.Tensor:
        """logit_scale.exp() · cos(text, pair), [N_text, N_pair]; gathered over ranks while training."""
        if self.training:
            visual_output, sequence_output = allgather(visual_output.contiguous()), allgather(sequence_output.contiguous())
        visual_output = visual_output.squeeze(1)
        visual_output = visual_output / visual_output.norm(dim=-1, keepdim=True)
        sequence_output = sequence_output.squeeze(1)
        sequence_output = sequence_output / sequence_output.norm(dim=-1, keepdim=True)
        return self.clip.logit_scale.exp() * sequence_output @ visual_output.t()

    def decoder_logits(self, visual_tokens: torch.Tensor, input_caption_ids: torch.Tensor,
                       decoder_mask: torch.Tensor) -> torch.Tensor:
        encoder_mask = torch.ones(visual_tokens.shape[:2], device=visual_tokens.device, dtype=torch.long)
        return self.decoder(input_caption_ids, encoder_outs=visual_tokens, answer_mask=decoder_mask,
                            encoder_mask=encoder_mask)

    def caption_loss(self, logits: torch.Tensor, output_caption_ids: torch.Tensor) -> torch.Tensor:
        # ignore_index=0 also ignores a genuine "!" (BPE id 0), as the original does.
        return F.cross_entropy(full_precision(logits.reshape(-1, logits.size(-1))), output_caption_ids.reshape(-1),
                               ignore_index=0)

    def forward(self, input_ids: torch.Tensor, bef_image: torch.Tensor, aft_image: torch.Tensor,
                input_caption_ids: torch.Tensor | None = None, decoder_mask: torch.Tensor | None = None,
                output_caption_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss: symmetric InfoNCE (retrieval) or caption cross-entropy (caption)."""
        sequence_output, _ = self.get_sequence_output(input_ids)  # stage 2 also runs the text tower, unused
        visual_output, visual_tokens = self.get_visual_output(bef_image, aft_image)
        if self.task_type == "retrieval":
            return symmetric_infonce(self.get_similarity_logits(sequence_output, visual_output))
        logits = self.decoder_logits(visual_tokens, input_caption_ids.view(-1, input_caption_ids.shape[-1]),
                                     decoder_mask.view(-1, decoder_mask.shape[-1]))
        return self.caption_loss(logits, output_caption_ids)

    @torch.no_grad()
    def greedy_decode(self, bef_image: torch.Tensor, aft_image: torch.Tensor, sot_id: int, steps: int,
                      use_cache: bool = True) -> torch.Tensor:
        """Greedy ids [B, steps] from start-of-text over the pair's visual tokens (no early stop, as the original).
        ``use_cache=False`` re-runs the decoder on the whole prefix at every step, as the original does."""
        _, visual_tokens = self.get_visual_output(bef_image, aft_image)
        return self.greedy_from_tokens(visual_tokens, sot_id, steps, use_cache)[0]

    @torch.no_grad()
    def greedy_from_tokens(self, visual_tokens: torch.Tensor, sot_id: int, steps: int,
                           use_cache: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Greedy ids [B, steps] and each step's logits [B, vocab] over the visual tokens [B, T, D]."""
        ids = torch.full((visual_tokens.size(0), 1), sot_id, dtype=torch.long, device=visual_tokens.device)
        cache = self.decoder.start_cache(visual_tokens, torch.ones(visual_tokens.shape[:2], dtype=torch.long,
                                                                   device=visual_tokens.device)) if use_cache else None
        step_logits = []
        for _ in range(steps):
            if cache is None:
                logits = self.decoder_logits(visual_tokens, ids, torch.ones_like(ids))[:, -1]
            else:
                logits = self.decoder.step(ids[:, -1:], cache)
            step_logits.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
        return ids[:, 1:], step_logits
