"""Turn flags into the tokenizer, the model (CLIP archive + --init_model merged as the original) and the freezing."""
from __future__ import annotations

import logging
import math
import os

import torch

from modules.modeling import CLIP4IDC
from modules.module_clip import (ClipConfig, archive_path, config_from_state_dict,
                                 load_clip_state_dict)
from modules.module_decoder import DecoderConfig
from modules.tokenization_clip import ClipTokenizer, VocabularyError

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """An --init_model file that is missing or does not fit the model."""


def build_tokenizer(args) -> ClipTokenizer:
    if not args.compact_vocab:
        return ClipTokenizer()
    from dataloaders.datasets import corpus_sentences

    return ClipTokenizer.compact(corpus_sentences(args.datatype, args.data_path))


def read_checkpoint(path: str, flag: str, what: str, fix: str, missing_hint: str = ""):
    """``torch.load`` of the file a flag names; a missing or unreadable file is one CheckpointError with the fix."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{flag} not found: {path}{missing_hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{flag} {path} is not a readable {what} ({reason}); {fix}") from err


def load_init_model(path: str) -> dict[str, torch.Tensor]:
    state = read_checkpoint(path, "--init_model", "state dict", "pass a pytorch_model.bin.<epoch> written by "
                            "main_task_retrieval.py or main_task_caption.py")
    if not isinstance(state, dict) or not any(k.startswith("clip.") for k in state):
        raise CheckpointError(f"--init_model {path} holds no 'clip.*' keys: not a CLIP4IDC checkpoint; pass a "
                              "pytorch_model.bin.<epoch> written by main_task_retrieval.py or main_task_caption.py")
    return state


def clip_config_from_flags(args, vocab_size: int) -> ClipConfig:
    return ClipConfig(
        embed_dim=args.clip_embed_dim, image_resolution=args.image_resolution,
        vision_layers=args.clip_vision_layers, vision_width=args.clip_vision_width,
        vision_patch_size=args.clip_patch_size, context_length=77, vocab_size=vocab_size,
        transformer_width=args.clip_text_width, transformer_heads=max(1, args.clip_text_width // 64),
        transformer_layers=args.clip_text_layers,
    )


def inflate_conv2(conv1: torch.Tensor, depth: int) -> torch.Tensor:
    """3d patch kernel from the 2d one: the 2d kernel in the centre tap, zeros elsewhere."""
    weight = torch.zeros(conv1.shape[0], conv1.shape[1], depth, *conv1.shape[2:], dtype=conv1.dtype)
    weight[:, :, (depth - 1) // 2] = conv1
    return weight


def build_model(args, tokenizer: ClipTokenizer, fp16: bool) -> CLIP4IDC:
    """The original's from_pretrained: CLIP archive keys fill every clip.* key absent from --init_model; the model gets
    BERT init, then the merged state dict is loaded non-strictly."""
    state = load_init_model(args.init_model) if args.init_model else {}
    has_clip = any(k.startswith("clip.visual.conv1") for k in state)
    if has_clip:
        cfg = config_from_state_dict({k[5:]: v for k, v in state.items() if k.startswith("clip.")})
    elif args.clip_random_init:
        cfg = clip_config_from_flags(args, len(tokenizer))
    else:
        clip_state = load_clip_state_dict(archive_path(args.pretrained_clip_name, args.pretrained_clip_path))
        cfg = config_from_state_dict(clip_state)
        for key, value in clip_state.items():
            state.setdefault("clip." + key, value.clone())
    if cfg.image_resolution != args.image_resolution:
        logger.info("image resolution %d (from the weights) replaces --image_resolution %d", cfg.image_resolution,
                    args.image_resolution)
        args.image_resolution = cfg.image_resolution  # the loaders resize to what the visual tower expects
    if cfg.vocab_size != len(tokenizer):
        raise VocabularyError(
            f"the CLIP token table has {cfg.vocab_size} rows but the tokenizer has {len(tokenizer)} tokens "
            f"({'drop' if args.compact_vocab else 'add'} --compact_vocab, or use the checkpoint trained with it)")
    decoder_cfg = DecoderConfig.from_model_dir(args.decoder_model) if args.task_type == "caption" else None
    model = CLIP4IDC(cfg, args.task_type, decoder_cfg, args.linear_patch, args.intra_num_hidden_layers, fp16)
    if args.linear_patch == "3d" and "clip.visual.conv2.weight" not in state and "clip.visual.conv1.weight" in state:
        state["clip.visual.conv2.weight"] = inflate_conv2(state["clip.visual.conv1.weight"],
                                                          model.clip.visual.conv2.weight.shape[2])
    if state:
        load_non_strict(model, state)
    elif args.clip_random_init:
        # A random CLIP starts at OpenAI's training temperature 1/0.07 (CLIP4IDC's copy starts at 1, which it never
        # uses because the pretrained value replaces it; at 1 a from-scratch model barely learns).
        model.clip.logit_scale.data.fill_(math.log(1 / 0.07))
    return model


def load_non_strict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"checkpoint key {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(own[key].shape)} (check --clip_* sizes, --compact_vocab, --decoder_model)")
    result = model.load_state_dict(state, strict=False)
    for what, keys in (("not initialized from pretrained model", result.missing_keys),
                       ("from pretrained model not used", result.unexpected_keys)):
        if keys:
            logger.info("Weights of CLIP4IDC %s: %d keys (%s%s)", what, len(keys), ", ".join(keys[:4]),
                        ", ..." if len(keys) > 4 else "")


TOP_PARAMS = ("ln_final.", "text_projection", "logit_scale", "visual.ln_post.", "visual.proj",
              "visual.bef_embedding", "visual.aft_embedding", "visual.joint_positional_embedding", "visual.ln_mid")


def freeze_clip(model: CLIP4IDC, freeze_layer_num: int, datatype: str, task_type: str, linear_patch: str) -> list[str]:
    """Freeze CLIP below block ``freeze_layer_num`` as the original; returns the frozen names. -1 freezes nothing.

    Always trainable: ln_final, text_projection, logit_scale, visual ln_post/proj, the pair parameters, blocks with
    index >= freeze_layer_num. Frozen otherwise, even at 0: token/positional embeddings (token embedding kept for Spot
    captioning), visual class/positional embeddings, conv1 and ln_pre.
    """
    frozen: list[str] = []
    if freeze_layer_num <= -1:
        return frozen
    for name, param in model.clip.named_parameters():
        # The original's exception lives in the caption script only.
        if task_type == "caption" and datatype == "spot" and name.startswith("token_embedding.weight"):
            continue
        if name.startswith(TOP_PARAMS):
            continue
        if name.startswith(("visual.transformer.resblocks.", "transformer.resblocks.")):
            if int(name.split(".resblocks.")[1].split(".")[0]) >= freeze_layer_num:
                continue
        if linear_patch == "3d" and name.find("conv2.") != 0:
            continue  # the original tests str.find truthiness here, so with 3d patches nothing is frozen
        param.requires_grad = False
        frozen.append(name)
    return frozen
