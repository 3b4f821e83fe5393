"""Checkpoint contract (manifests), forward shapes and the GARAN/AFS behaviour of the original."""
from pathlib import Path

import pytest
import torch
import yaml

from config import DEFAULT_CFG, GIN_DIR, load_config
from models import build_model
from models.garan import GaranAttention
from util.checkpoint import load_checkpoint, save_checkpoint

REFERENCE = Path(__file__).resolve().parent / "data"  # copies of shared/reference manifests


def manifest_lines(model) -> list[str]:
    return [f"{k}\t{'x'.join(map(str, v.shape)) if v.dim() else 'scalar'}" for k, v in model.state_dict().items()]


def reference(name: str) -> list[str]:
    return (REFERENCE / f"{name}.state_dict.tsv").read_text().splitlines()


@pytest.mark.parametrize("cfg_file,manifest,params", [("cfg.yaml", "gin", 62_317_150), ("zsgnet.yaml", "zsgnet", 37_643_349)])
def test_state_dict_equals_manifest(cfg_file, manifest, params):
    cfg = load_config(GIN_DIR / "configs" / cfg_file)
    model = build_model(cfg, 9, load_pretrained=False)
    assert manifest_lines(model) == reference(manifest)
    assert sum(p.numel() for p in model.parameters()) == params


def narrow_cfg(**extra):
    cfg = load_config(DEFAULT_CFG)
    cfg.update({"backbone_width": 8, "backbone_layers": [1, 1, 1, 1], "afs_hidden": 16, "afs_out": 32, "fpn_dim": 16,
                "head_dim": 16, "lstm_dim": 16, "resize_img": [128, 128], **extra})
    return cfg


def fake_batch(b=2, size=128, t=5):
    return {"img": torch.rand(b, 3, size, size), "qvec": torch.randn(b, t, 300), "qlens": torch.tensor([3.0, 5.0][:b])}


def test_forward_shapes_gin_and_six_levels():
    model = build_model(narrow_cfg(), 9, load_pretrained=False).eval()
    out = model(fake_batch())
    # 128 input: P3..P8 = 16, 8, 4, 2, 1, 1 cells; 9 anchors each.
    assert out["feat_sizes"].tolist() == [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1], [1, 1]]
    n = 9 * (256 + 64 + 16 + 4 + 1 + 1)
    assert out["att_out"].shape == (2, n, 1) and out["bbx_out"].shape == (2, n, 4)
    assert [m.shape for m in out["att_maps"]] == [(2, 16, 16), (2, 8, 8), (2, 4, 4)]


def test_zsgnet_has_no_attention_maps_and_608_uses_four_levels():
    cfg = narrow_cfg(arch="zsgnet")
    out = build_model(cfg, 9, load_pretrained=False).eval()(fake_batch())
    assert out["att_maps"] == [] and len(out["feat_sizes"]) == 6
    cfg = narrow_cfg(resize_img=[608, 608])
    out = build_model(cfg, 9, load_pretrained=False).eval()(fake_batch(size=608))
    assert out["feat_sizes"].tolist() == [[38, 38], [19, 19], [10, 10], [5, 5]]


def test_lstm_zeros_init_is_deterministic_and_random_is_not():
    torch.manual_seed(0)
    model = build_model(narrow_cfg(lstm_init="zeros"), 9, load_pretrained=False).eval()
    batch = fake_batch()
    assert torch.equal(model(batch)["att_out"], model(batch)["att_out"])
    model.lstm_init = "random"
    assert not torch.allclose(model(batch)["att_out"], model(batch)["att_out"])


def test_phrase_vector_is_output_at_last_token_in_original_order():
    model = build_model(narrow_cfg(lstm_init="zeros"), 9, load_pretrained=False).eval()
    qvec, qlens = torch.randn(3, 6, 300), torch.tensor([2.0, 6.0, 4.0])
    got = model.encode_phrase(qvec, qlens)
    for i, n in enumerate(qlens.long().tolist()):
        # One sequence alone, unpacked: forward half at n-1 has read all n tokens; backward half only token n-1.
        out, _ = model.lstm(qvec[i, :n, None], (torch.zeros(2, 1, 16), torch.zeros(2, 1, 16)))
        fwd = out[n - 1, 0, :16]
        bwd, _ = model.lstm(qvec[i, n - 1:n, None], (torch.zeros(2, 1, 16), torch.zeros(2, 1, 16)))
        assert torch.allclose(got[i, :16], fwd, atol=1e-6)
        assert torch.allclose(got[i, 16:], bwd[0, 0, 16:], atol=1e-6)


def test_garan_diffused_map_is_spatially_transposed():
    """With the collect/diffuse path made position-dependent only through Kd, the output must follow Kd transposed."""
    torch.manual_seed(0)
    g = GaranAttention(4, 4, n_head=1, dropout=0.0).eval()
    with torch.no_grad():
        for conv in (g.w_kc, g.w_kd, g.w_vs):
            conv.weight.copy_(torch.eye(4)[:, :, None, None])
            conv.bias.zero_()
        g.w_qs.weight.copy_(torch.eye(4))
        g.w_qs.bias.zero_()
    v = torch.zeros(1, 4, 3, 3)
    v[0, 0, 0, 2] = 5.0  # a feature at row 0, column 2 only
    lang = torch.tensor([[4.0, 0.0, 0.0, 0.0]])
    g.layer_norm = torch.nn.Identity()
    g.layer_acti = torch.nn.Identity()
    out, att = g(lang, v)
    diffused = out - v
    # The gate sigmoid(Kd.q/2) is largest where the feature is (0, 2); the original's reshape puts it at (2, 0).
    gate = diffused[0, 0]
    assert gate.argmax().item() == 2 * 3 + 0
    assert att[0].argmax().item() == 0 * 3 + 2  # the returned attention map is not transposed


def test_module_prefixed_checkpoint_loads_strictly(tmp_path):
    cfg = narrow_cfg()
    a = build_model(cfg, 9, load_pretrained=False)
    save_checkpoint(tmp_path / "m.pth", a, num_epoch=3, best_met=0.5)
    raw = torch.load(tmp_path / "m.pth", weights_only=False)
    assert all(k.startswith("module.") for k in raw["model_state_dict"])
    b = build_model(cfg, 9, load_pretrained=False)
    ckpt = load_checkpoint(tmp_path / "m.pth", b, strict=True)
    assert ckpt["num_epoch"] == 3
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_cfg_yaml_is_the_gin_default():
    cfg = yaml.safe_load((GIN_DIR / "configs" / "cfg.yaml").read_text())
    assert cfg["arch"] == "gin" and cfg["resize_img"] == [320, 320] and cfg["use_att_loss"] is True


def test_torchvision_imagenet_file_loads_into_the_encoder(tmp_path):
    import torchvision

    from models.resnet import ResNet, load_imagenet_weights

    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), tmp_path / "resnet50-19c8e357.pth")
    encoder = ResNet()
    assert load_imagenet_weights(encoder, tmp_path / "resnet50-19c8e357.pth")
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), reference.state_dict().values()))
    assert not load_imagenet_weights(ResNet(), tmp_path / "absent.pth")
