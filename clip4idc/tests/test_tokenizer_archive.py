"""CLIP BPE tokenizer (parity with open_clip), compact vocabulary, and CLIP archive loading (JIT and plain)."""
import pytest
import torch

from engine import decode_caption
from modules.module_clip import CLIP, ClipArchiveError, ClipConfig, config_from_state_dict, load_clip_state_dict
from modules.tokenization_clip import EOT, SOT, ClipTokenizer, VocabularyError

SENTENCES = ["The large Purple square was removed", "someone added a small red circle!", "isn't it 12 cafés?"]


def test_bpe_matches_open_clip():
    import open_clip.tokenizer

    ours, theirs = ClipTokenizer(), open_clip.tokenizer.SimpleTokenizer()
    assert len(ours) == 49408 and ours.encoder[SOT] == 49406 and ours.encoder[EOT] == 49407 and ours.encoder["!"] == 0
    for s in SENTENCES:
        assert ours.encode(s) == theirs.encode(s)


def test_compact_vocabulary_keeps_order_and_round_trips():
    full, compact = ClipTokenizer(), ClipTokenizer.compact(SENTENCES)
    assert compact.encoder["!"] == 0 and compact.encoder[EOT] == len(compact) - 1 and len(compact) < 40
    for s in SENTENCES:
        ids = compact.encode(s)
        assert compact.decode(ids) == full.decode(full.encode(s))
        assert sorted(ids, key=lambda i: full.encoder[compact.decoder[i]]) == sorted(ids)  # same relative order
    with pytest.raises(VocabularyError, match="not in the"):
        compact.encode("a blue triangle")


def test_decode_cuts_at_end_of_text_and_exclamation():
    tok = ClipTokenizer()
    ids = tok.encode("the red circle moved") + [tok.encoder[EOT]] + tok.encode("junk")
    assert decode_caption(tok, ids) == "the red circle moved"
    assert decode_caption(tok, tok.encode("the red circle") + [0, 0] + tok.encode("moved")) == "the red circle"


def tiny_clip() -> CLIP:
    cfg = ClipConfig(embed_dim=16, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
                     vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
    return CLIP(cfg, intra_layers=1)


def test_plain_and_jit_archives_load(tmp_path):
    clip = tiny_clip().eval()
    plain = tmp_path / "plain.pt"
    torch.save(clip.state_dict(), plain)
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, :2] = torch.tensor([49406, 49407])
    jit = tmp_path / "jit.pt"
    torch.jit.trace_module(clip, {"encode_text": ids}, check_trace=False).save(str(jit))
    for path in (plain, jit):
        sd = load_clip_state_dict(str(path))
        assert set(sd) == set(clip.state_dict())
        cfg = config_from_state_dict(sd)
        assert (cfg.vision_layers, cfg.vision_width, cfg.image_resolution, cfg.transformer_layers) == (2, 64, 32, 1)
        torch.testing.assert_close(sd["visual.proj"], clip.visual.proj.detach())


def test_bad_archives_say_so(tmp_path):
    with pytest.raises(ClipArchiveError, match="make clip4idc-data"):
        load_clip_state_dict(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ClipArchiveError, match="neither a JIT archive nor a state dict"):
        load_clip_state_dict(str(junk))
