"""Checkpoint contract and forward-pass faithfulness of the captioner."""
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from models import TransformerConfig, TransformerModel
from models.attention import XLinearMultiHeadedAttention

MANIFEST = Path(__file__).resolve().parent / "fixtures" / "spatial_captioning.state_dict.tsv"

TINY = dict(vocab_size=11, seq_length=6, num_layers=2, input_encoding_size=32, ff_size=48, heads=4,
            img_feat_size=20, num_grids=16, dropout=0.0)


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) if t.dim() else "scalar"


def test_state_dict_equals_manifest():
    model = TransformerModel(TransformerConfig())  # README XE command + use_grid: 9487 words, 6 layers, 512/2048
    rows = [line.rstrip("\n").split("\t") for line in MANIFEST.read_text().splitlines() if line.strip()]
    assert [(k, _shape(v)) for k, v in model.state_dict().items()] == [tuple(r) for r in rows]
    assert sum(p.numel() for p in model.parameters()) == 56_794_390
    buffers = model.state_dict()
    assert buffers["model.src_embed.rows"].tolist() == list(range(12))
    assert buffers["model.src_embed.cols"].tolist() == [0] * 12


def test_without_grid_has_no_spatial_encoding():
    model = TransformerModel(TransformerConfig(use_grid=False))
    assert len(model.state_dict()) == 346 and sum(p.numel() for p in model.parameters()) == 56_518_422


def _reference_xlinear(module: XLinearMultiHeadedAttention, query, key, value, mask):
    """The original's computation, with the full (B,H,Q,K,D) value map, written out step by step."""
    b = query.size(0)
    h, d = module.heads, module.d_k
    q1, k, q2, v = [lin(x.reshape(-1, x.size(-1))).view(b, -1, h, d).transpose(1, 2)
                    for lin, x in zip(module.linears, (query, key, query, value))]
    mask = mask.unsqueeze(1)
    att = module.attention
    key_map = att.embed(torch.einsum("bhqd,bhkd->bhqkd", q1, k))
    alpha = att.spatial(key_map).squeeze(-1).masked_fill(mask == 0, -1e9).softmax(-1)
    pooled = torch.sum(key_map * mask.unsqueeze(-1), -2) / torch.sum(mask.unsqueeze(-1), -2)
    channel = att.squeeze(pooled)
    val_map = torch.einsum("bhqd,bhkd->bhqkd", q2, v)
    out = torch.einsum("bhqk,bhqkd->bhqd", alpha, val_map) * channel
    return out.transpose(1, 2).reshape(b, -1, h * d)


def test_xlinear_matches_materialised_reference():
    torch.manual_seed(0)
    module = XLinearMultiHeadedAttention(1, 16, dropout=0.0).eval()
    query, memory = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    mask = torch.ones(3, 1, 7, dtype=torch.long)
    mask[1, :, 4:] = 0
    out = module(query, memory, memory, mask)
    ref = _reference_xlinear(module, query, memory, memory, mask)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the channel gate and masked keys matter: changing a masked key leaves the output unchanged
    memory2 = memory.clone()
    memory2[1, 5] += 10
    torch.testing.assert_close(module(query, memory2, memory2, mask)[1], out[1])


def test_forward_shapes_log_probs_and_embedding_scale():
    torch.manual_seed(0)
    model = TransformerModel(TransformerConfig(**TINY)).eval()
    feats, vec = torch.rand(2, 4, 20), torch.rand(2, 4, 16)
    seq = torch.tensor([[0, 3, 4, 0, 0, 0, 0, 0], [0, 5, 6, 7, 8, 9, 10, 0]])
    out = model(feats, seq, None, vec)
    assert out.shape == (2, 7, 12)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 7))
    emb = model.model.tgt_embed[0]
    torch.testing.assert_close(emb(torch.tensor([1])), emb.embedding.weight[1:2] * math.sqrt(32))


def test_causal_and_padding_masks():
    torch.manual_seed(0)
    model = TransformerModel(TransformerConfig(**TINY)).eval()
    feats, vec = torch.rand(1, 4, 20), torch.rand(1, 4, 16)
    seq = torch.tensor([[0, 3, 4, 5, 6, 0, 0, 0]])
    base = model(feats, seq, None, vec)
    changed = seq.clone()
    changed[0, 4] = 9  # a later word must not change earlier outputs
    torch.testing.assert_close(model(feats, changed, None, vec)[:, :4], base[:, :4])
    # padded boxes (mask 0) do not change the outputs
    mask = torch.tensor([[1, 1, 1, 0]])
    noisy = feats.clone()
    noisy[0, 3] = 100
    torch.testing.assert_close(model(noisy, seq, mask, vec), model(feats, seq, mask, vec))


def test_grid_vectors_change_the_output_only_with_use_grid():
    torch.manual_seed(0)
    feats, vec = torch.rand(1, 4, 20), torch.rand(1, 4, 16)
    seq = torch.tensor([[0, 3, 4, 5, 0, 0, 0, 0]])
    with_grid = TransformerModel(TransformerConfig(**TINY)).eval()
    assert not torch.allclose(with_grid(feats, seq, None, vec), with_grid(feats, seq, None, torch.zeros_like(vec)))
    no_grid = TransformerModel(TransformerConfig(**{**TINY, "use_grid": False})).eval()
    torch.testing.assert_close(no_grid(feats, seq, None, vec), no_grid(feats, seq, None, torch.zeros_like(vec)))


def test_spatial_encoding_uses_row_and_column_sums():
    torch.manual_seed(0)
    model = TransformerModel(TransformerConfig(**TINY)).eval()
    pe = model.model.src_embed
    feat, vec = torch.rand(1, 2, 32), torch.rand(1, 2, 16)
    grid = vec.view(1, 2, 4, 4)
    expected = pe.fc3(feat) + pe.fc1(grid.sum(-1)) + pe.fc2(grid.sum(-2))
    torch.testing.assert_close(pe(feat, vec), expected)


def test_greedy_matches_full_forward_argmax():
    """Greedy decoding re-decodes the prefix: its per-step log-probs equal a teacher-forced pass on its output."""
    torch.manual_seed(1)
    model = TransformerModel(TransformerConfig(**TINY)).eval()
    feats, vec = torch.rand(3, 4, 20), torch.rand(3, 4, 16)
    with torch.no_grad():
        seq, logps = model.sample(feats, None, vec, {"sample_max": 1})
        full = model(feats, F.pad(seq, (1, 1)), None, vec)
    for i in range(3):
        n = int((seq[i] > 0).sum())
        steps = min(n + 1, 6)
        torch.testing.assert_close(full[i, :steps].max(-1).values, logps[i, :steps], rtol=1e-5, atol=1e-5)


def test_beam_search_unk_penalty_and_width():
    torch.manual_seed(2)
    model = TransformerModel(TransformerConfig(**{**TINY, "vocab_size": 5, "seq_length": 3})).eval()
    feats, vec = torch.rand(2, 4, 20), torch.rand(2, 4, 16)
    with torch.no_grad():
        greedy, _ = model.sample(feats, None, vec, {"beam_size": 1})
        beam1, _ = model.sample(feats, None, vec, {"beam_size": 2})
        model.model.generator.proj.bias.data[5] = 50.0  # UNK (last index) would win every step...
        penal, _ = model.sample(feats, None, vec, {"beam_size": 3})
    assert (penal != 5).all()  # ...but beam search subtracts 1000 from it
    assert len(model.done_beams) == 2 and all(len(b) == 3 for b in model.done_beams)
    scores = [b["p"] for b in model.done_beams[0]]
    assert scores == sorted(scores, reverse=True)
    assert beam1.shape == greedy.shape == (2, 3)
