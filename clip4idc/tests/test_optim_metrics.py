"""BertAdam against its formula on a hand example; schedules; optimizer groups; recall metrics by hand."""
import math

import numpy as np
import pytest
import torch

from engine import prep_optimizer
from metrics import compute_metrics, group_similarity, pair_to_text_sim, text_to_pair_metrics
from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.optimization import BertAdam, warmup_constant, warmup_cosine, warmup_linear


def test_schedules():
    assert warmup_linear(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_linear(0.55, 0.1) == pytest.approx(0.5)
    assert warmup_linear(1.2, 0.1) == 0.0
    assert warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.5, 0.1) == pytest.approx(0.5)  # cosine of the whole progress: ½(1+cos(π/2))
    assert warmup_constant(0.7, 0.1) == 1.0


def test_bertadam_hand_example():
    """Two steps on p=[3, -4] (grad norm 5 -> clipped to 1), then a small-gradient step; no bias correction."""
    p = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
    opt = BertAdam([p], lr=0.1, warmup=0.5, t_total=4, schedule="warmup_linear", b1=0.9, b2=0.99, e=1e-6,
                   weight_decay=0.1, max_grad_norm=1.0)
    # step 0: schedule(0/4) = 0 -> no change, but the moments move.
    p.grad = torch.tensor([3.0, -4.0])
    opt.step()
    assert p.tolist() == [3.0, -4.0]
    g = np.array([0.6, -0.8])  # clipped to norm 1
    m, v = 0.1 * g, 0.01 * g * g
    assert opt.state[p]["next_m"].numpy() == pytest.approx(m)
    # step 1: lr · schedule(1/4 = 0.25, warmup 0.5) = 0.1 · 0.5
    p.grad = torch.tensor([0.3, 0.0])
    opt.step()
    g = np.array([0.3, 0.0])
    m, v = 0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g
    w = np.array([3.0, -4.0])
    w = w - 0.05 * (m / (np.sqrt(v) + 1e-6) + 0.1 * w)
    assert p.detach().numpy() == pytest.approx(w, rel=1e-5)
    assert opt.get_lr() == [pytest.approx(0.1 * warmup_linear(2 / 4, 0.5))]


def test_optimizer_groups_follow_the_original():
    cfg = ClipConfig(embed_dim=16, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
                     vocab_size=30, transformer_width=64, transformer_heads=1, transformer_layers=1)
    model = CLIP4IDC(cfg, "retrieval", intra_layers=1)
    opt = prep_optimizer(model, "retrieval", lr=1e-4, coef_lr=1e-3, warmup=0.1, t_total=10)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups]
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(1e-7), 1e-4, pytest.approx(1e-7), 1e-4]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.2, 0.0, 0.0]
    assert groups[1] == ["clip.visual.aft_embedding", "clip.visual.bef_embedding",
                         "clip.visual.joint_positional_embedding", "clip.visual.ln_mid.weight"]
    assert groups[3] == ["clip.visual.ln_mid.bias"]
    assert "clip.visual.ln_pre.weight" in groups[0]  # CLIP's ln_*.weight is decayed (no "LayerNorm" in the name)
    assert opt.defaults["b2"] == 0.98 and opt.defaults["schedule"] == "warmup_cosine"


def test_recall_metrics_by_hand():
    # 3 pairs, sentences per pair 2, 1, 2 -> similarity [5 sentences, 3 pairs]
    sim = np.array([[0.9, 0.1, 0.0],   # pair 0: rank 1
                    [0.2, 0.8, 0.1],   # pair 0: rank 2
                    [0.1, 0.3, 0.5],   # pair 1: rank 2
                    [0.0, 0.1, 0.7],   # pair 2: rank 1
                    [0.6, 0.2, 0.1]])  # pair 2: rank 3
    grouped = group_similarity(sim, [2, 3, 5])
    assert grouped.shape == (3, 2, 3) and np.isinf(grouped[1, 1]).all()
    tv = text_to_pair_metrics(grouped)
    assert tv["R1"] == pytest.approx(40.0) and tv["R5"] == 100.0
    assert tv["MR"] == 2.0 and tv["MeanR"] == pytest.approx(9 / 5)
    # pair -> text: best sentence of each group per pair
    vt_sim = pair_to_text_sim(grouped)
    assert vt_sim[1].tolist() == pytest.approx([0.8, 0.3, 0.2])
    vt = compute_metrics(vt_sim)
    assert vt["R1"] == pytest.approx(200 / 3) and vt["MeanR"] == pytest.approx(4 / 3)
    assert not math.isnan(vt["MR"])
