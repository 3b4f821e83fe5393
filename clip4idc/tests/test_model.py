"""State-dict contracts, parameter counts, freezing, and the forward pass against independent computations."""
from pathlib import Path

import pytest
import torch

from modules.build import freeze_clip
from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.module_decoder import DecoderConfig

FIXTURES = Path(__file__).parent / "fixtures"


def manifest(name: str) -> list[tuple[str, str]]:
    lines = (FIXTURES / f"clip4idc.{name}.state_dict.tsv").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines if line]


def shape_str(t: torch.Tensor) -> str:
    return "scalar" if t.dim() == 0 else "x".join(str(s) for s in t.shape)


def full_size(task: str) -> CLIP4IDC:
    """ViT-B/32 CLIP4IDC on the meta device: real shapes, no memory."""
    with torch.device("meta"):
        return CLIP4IDC(ClipConfig(), task, DecoderConfig.from_model_dir("decoder-base") if task == "caption" else None)


@pytest.mark.parametrize("task", ["retrieval", "caption"])
def test_state_dict_equals_manifest(task):
    model = full_size(task)
    ours = [(k, shape_str(v)) for k, v in model.state_dict().items()]
    assert ours == manifest(task)


def test_parameter_counts_and_tying():
    stage1, stage2 = full_size("retrieval"), full_size("caption")
    assert sum(p.numel() for p in stage1.parameters()) == 151_357_185
    assert sum(p.numel() for p in stage2.parameters()) == 173_740_545
    assert sum(v.numel() for v in stage2.state_dict().values()) == 224_373_761
    assert stage2.decoder.embeddings.word_embeddings.weight is stage2.clip.token_embedding.weight
    assert stage2.decoder.classifier.cls.predictions.decoder.weight is stage2.clip.token_embedding.weight
    assert stage2.decoder.embeddings.position_embeddings.weight is stage2.clip.positional_embedding


@pytest.mark.parametrize("task,datatype,trainable", [
    ("retrieval", "clevr", 123_620_865), ("retrieval", "spot", 123_620_865),
    ("caption", "clevr", 146_004_225), ("caption", "spot", 171_301_121),
])
def test_freeze_layer_zero_trainable_counts(task, datatype, trainable):
    model = full_size(task)
    frozen = freeze_clip(model, 0, datatype, task, "2d")
    assert "visual.conv1.weight" in frozen and "visual.ln_pre.weight" in frozen
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable


def test_freeze_minus_one_and_3d_quirk_freeze_nothing():
    model = full_size("retrieval")
    assert freeze_clip(model, -1, "clevr", "retrieval", "2d") == []
    assert freeze_clip(model, 6, "clevr", "retrieval", "3d") == []


def small_clip_cfg(vocab: int = 40, embed_dim: int = 32) -> ClipConfig:
    return ClipConfig(embed_dim=embed_dim, image_resolution=32, vision_layers=3, vision_width=64, vision_patch_size=16,
                      context_length=77, vocab_size=vocab, transformer_width=64, transformer_heads=1,
                      transformer_layers=2)


def test_text_tower_matches_open_clip():
    """Our text tower with the same weights gives open_clip's text features (same architecture, independent code)."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    cfg = small_clip_cfg(vocab=49408)
    model = CLIP4IDC(cfg, "retrieval", intra_layers=1).eval()
    ref = open_clip.CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=3, width=64, patch_size=16, image_size=32,
                                                               head_width=64),
                         text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
                         quick_gelu=True).eval()
    own = {k[5:]: v for k, v in model.state_dict().items() if k.startswith("clip.") and "visual" not in k}
    missing = ref.load_state_dict(own, strict=False)
    assert not [k for k in missing.missing_keys if not k.startswith("visual.") and k != "attn_mask"]
    text = torch.zeros(3, 77, dtype=torch.long)
    text[:, 0], text[0, 1:4], text[1, 1:2], text[2, 1:6] = 49406, torch.tensor([320, 1746, 49407]), 49407, 5
    text[2, 6] = 49407
    ours = model.get_sequence_output(text)[0].squeeze(1)
    with torch.no_grad():
        theirs = ref.encode_text(text)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_pair_tower_reduces_to_open_clip_per_image_when_fusion_is_neutral():
    """With every block per-image and the pair parameters zero, each CLS token is open_clip's image feature
    (ln_mid of an already normalised token is the identity up to eps), so the pooled vector is their mean."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP4IDC(small_clip_cfg(), "retrieval", intra_layers=3).eval()
    visual = model.clip.visual
    with torch.no_grad():
        for p in (visual.bef_embedding, visual.aft_embedding, visual.joint_positional_embedding):
            p.zero_()
    ref = open_clip.CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=3, width=64, patch_size=16, image_size=32,
                                                               head_width=64),
                         text_cfg=CLIPTextCfg(context_length=77, vocab_size=40, width=64, heads=1, layers=2),
                         quick_gelu=True).eval()
    own = {k[5:]: v for k, v in model.state_dict().items() if k.startswith("clip.visual.")
           and not any(n in k for n in ("bef_", "aft_", "joint_", "ln_mid"))}
    ref.load_state_dict(own, strict=False)
    bef, aft = torch.randn(2, 1, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    pooled, tokens = model.get_visual_output(bef, aft)
    with torch.no_grad():
        f_bef, f_aft = ref.encode_image(bef[:, 0]), ref.encode_image(aft[:, 0])
    torch.testing.assert_close(tokens[:, 0], f_bef, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tokens[:, visual.tokens_per_image], f_aft, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pooled.squeeze(1), (f_bef + f_aft) / 2, atol=1e-4, rtol=1e-4)


def test_joint_blocks_mix_before_and_after():
    """After fusion the before-CLS depends on the after image; with every block per-image it does not."""
    torch.manual_seed(0)
    bef, aft = torch.randn(1, 1, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    for intra, mixes in ((1, True), (3, False)):
        model = CLIP4IDC(small_clip_cfg(), "retrieval", intra_layers=intra).eval()
        t1 = model.get_visual_output(bef, aft)[1][:, 0]
        t2 = model.get_visual_output(bef, aft * 2)[1][:, 0]
        assert (not torch.allclose(t1, t2, atol=1e-6)) == mixes


def test_decoder_is_causal_and_ignores_padding_targets():
    torch.manual_seed(0)
    cfg = small_clip_cfg(embed_dim=64)
    dec = DecoderConfig(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_decoder_layers=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = CLIP4IDC(cfg, "caption", dec, intra_layers=1).eval()
    bef, aft = torch.randn(2, 1, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    _, tokens = model.get_visual_output(bef, aft)
    ids = torch.tensor([[38, 5, 7, 9], [38, 5, 7, 11]])
    logits = model.decoder_logits(tokens, ids, torch.ones_like(ids))
    torch.testing.assert_close(logits[:, :3], model.decoder_logits(tokens, ids[:, :3], torch.ones_like(ids[:, :3])))
    assert torch.allclose(logits[0, :3], model.decoder_logits(tokens, torch.tensor([[38, 5, 7, 11]]),
                                                               torch.ones(1, 4, dtype=torch.long))[0, :3])
    target = torch.tensor([[5, 7, 0, 0], [5, 7, 9, 0]])
    manual = torch.cat([torch.nn.functional.cross_entropy(logits[0, :2], target[0, :2], reduction="none"),
                        torch.nn.functional.cross_entropy(logits[1, :3], target[1, :3], reduction="none")]).mean()
    torch.testing.assert_close(model.caption_loss(logits, target), manual)


def test_fp16_storage_matches_the_original_split():
    """convert_weights casts Linear/Conv/attention/proj tensors only: 195 fp16 state-dict entries at full size."""
    model = CLIP4IDC(small_clip_cfg(embed_dim=64), "caption", DecoderConfig(hidden_size=64, num_attention_heads=4,
                                                                intermediate_size=128), intra_layers=1, fp16=True)
    sd = model.state_dict()
    half = {k for k, v in sd.items() if v.dtype == torch.float16}
    assert "clip.visual.proj" in half and "clip.text_projection" in half
    assert "clip.transformer.resblocks.0.attn.in_proj_weight" in half
    assert not any(k.startswith("decoder.") and "word_embeddings" not in k and "classifier.cls.predictions.decoder"
                   not in k for k in half)
    for k in ("clip.logit_scale", "clip.visual.ln_mid.weight", "clip.token_embedding.weight",
              "clip.visual.joint_positional_embedding"):
        assert sd[k].dtype == torch.float32
    with torch.device("meta"):
        big = CLIP4IDC(ClipConfig(), "caption", DecoderConfig(), fp16=True)
    assert sum(v.dtype == torch.float16 for v in big.state_dict().values()) == 195


def test_bf16_autocast_alternative_runs_close_to_fp32():
    """--precision bf16: fp32 weights under bf16 autocast give a loss close to the fp32 one (CPU autocast here)."""
    from util import autocast

    torch.manual_seed(0)
    model = CLIP4IDC(small_clip_cfg(), "retrieval", intra_layers=1)
    ids = torch.randint(1, 30, (4, 1, 8))
    ids[..., -1] = 39
    bef, aft = torch.randn(4, 1, 3, 32, 32), torch.randn(4, 1, 3, 32, 32)
    fp32 = model(ids, bef, aft)
    with autocast("bf16", torch.device("cpu")):
        bf16 = model(ids, bef, aft)
    assert model.clip.visual.conv1.weight.dtype == torch.float32
    assert torch.isfinite(bf16) and abs(float(bf16) - float(fp32)) < 0.05 * float(fp32)
