"""Model structure and numerics: manifests, parity with the original's forward, batching, SRU equivalence."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from dmn_pytorch.models import DMN
from dmn_pytorch.models.checkpoint import CheckpointError, load_dmn_weights, load_pretrained_dpn, read_state_dict
from dmn_pytorch.models.dmn import location_maps
from dmn_pytorch.models.dpn import create_dpn
from dmn_pytorch.models.sru import OldSRU, _sru, fill_new_sru_keys
from reference_dmn import old_sru, reference_forward, spatial_maps

# Key/shape manifests of the released DMN state_dicts (copies of the project's reference manifests).
MANIFESTS = Path(__file__).resolve().parent / "fixtures"

README_FLAGS = dict(num_filters=10, lang_layers=3, mix_we=True)


def manifest(name: str) -> list[tuple[str, str]]:
    return [tuple(line.rstrip("\n").split("\t")) for line in open(MANIFESTS / name)]


def keys_and_shapes(model: torch.nn.Module) -> list[tuple[str, str]]:
    return [(k, "x".join(map(str, v.shape)) if v.dim() else "scalar") for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def full_models() -> dict[bool, DMN]:
    return {hr: DMN(12099, high_res=hr, **README_FLAGS) for hr in (False, True)}


@pytest.mark.parametrize("high_res,name,params", [
    (False, "dmn.state_dict.tsv", 124_825_538),
    (True, "dmn.highres.state_dict.tsv", 148_008_405),
])
def test_state_dict_equals_manifest(full_models, high_res, name, params):
    model = full_models[high_res]
    assert keys_and_shapes(model) == manifest(name)
    assert sum(p.numel() for p in model.parameters()) == params


def test_released_style_checkpoint_loads_strict(full_models):
    model = full_models[False]
    state = {k: torch.zeros(v.shape) if v.dim() else torch.tensor(0) for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)


def tiny(high_res: bool = False, per_pixel: bool = False, seed: int = 0, **kw) -> DMN:
    torch.manual_seed(seed)
    args = dict(emb_size=12, hid_size=10, vis_size=560, num_filters=3, mixed_size=9, hid_mixed_size=11,
                lang_layers=2, mixed_layers=2, backend="dpn_toy", mix_we=True, high_res=high_res,
                per_pixel_msru=per_pixel, upsampling_width=8)
    args.update(kw)
    model = DMN(30, **args)
    # Non-zero SRU biases so the gates' biases are exercised.
    for name, p in model.named_parameters():
        if name.endswith("rnn_lst.0.bias"):
            torch.nn.init.uniform_(p, -0.5, 0.5)
    return model


def test_location_maps_match_per_cell_loop():
    assert torch.equal(location_maps(3, 5), spatial_maps(3, 5))


@pytest.mark.parametrize("high_res", [False, True])
@pytest.mark.parametrize("mix_we", [True, False])
def test_forward_matches_original(high_res, mix_we):
    """Train mode (BatchNorm batch statistics, as the original's evaluation), one sample, T = 5."""
    model = tiny(high_res, mix_we=mix_we).train()
    img = torch.randn(1, 3, 96, 64)
    words = torch.tensor([[4, 3, 7, 3, 9]])
    with torch.no_grad():
        ours = model(img, words)
        ref = reference_forward(model, img, words)
    assert ours.shape == ref.shape == ((1, 1, 96, 64) if high_res else (1, 1, 3, 2))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_forward_with_gradients_matches_original():
    """The CPU training path (parallel-scan SRU) equals the sequential recurrence too."""
    model = tiny().train()
    img = torch.randn(1, 3, 64, 64)
    words = torch.tensor([[1, 3, 2]])
    ours = model(img, words)
    with torch.no_grad():
        ref = reference_forward(model, img, words)
    torch.testing.assert_close(ours.detach(), ref, atol=1e-5, rtol=1e-5)


def test_as_built_msru_keeps_last_positions_of_pixel_major_sequence():
    """Cell (i, j) holds sequence index h*w*T - h*w + i*w + j: pixel (index // T), step (index % T)."""
    model = tiny()
    base = model.langvis
    seen = {}

    def record(module, inputs, output):
        seen["seq"] = inputs[0]

    handle = base.mrnn.register_forward_hook(record)
    with torch.no_grad():
        model.eval()
        out, _ = base(torch.randn(1, 3, 64, 96), torch.tensor([[1, 2, 3]]))
    handle.remove()
    seq = seen["seq"]
    assert seq.shape[0] == 2 * 3 * 3
    with torch.no_grad():
        hidden = old_sru(base.mrnn.rnn_lst, seq)
    expected = base.output_collapse(hidden[-6:].permute(1, 2, 0).reshape(1, -1, 2, 3))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("per_pixel", [False, True])
def test_batch_with_padding_equals_samples_alone(per_pixel):
    """Eval-mode BatchNorm: a padded batch of queries of lengths 5, 2, 4 gives each sample's own logits."""
    model = tiny(per_pixel=per_pixel).eval()
    imgs = torch.randn(3, 3, 64, 64)
    queries = [torch.tensor([4, 3, 7, 3, 9]), torch.tensor([2, 5]), torch.tensor([8, 3, 1, 6])]
    words = torch.zeros(3, 5, dtype=torch.long)
    for b, q in enumerate(queries):
        words[b, : len(q)] = q
    with torch.no_grad():
        batched = model(imgs, words, torch.tensor([5, 2, 4]))
        alone = torch.cat([model(imgs[b : b + 1], q[None]) for b, q in enumerate(queries)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_per_pixel_order_differs_from_as_built():
    img, words = torch.randn(1, 3, 64, 64), torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        a = tiny(per_pixel=False).eval()(img, words)
        b = tiny(per_pixel=True).eval()(img, words)
    assert not torch.allclose(a, b, atol=1e-4)


def test_sru_260_configured_equals_old_sru():
    torch.manual_seed(1)
    for in_size, hidden in ((7, 7), (7, 9)):
        sru = OldSRU(in_size, hidden, 3)
        for p in sru.parameters():
            torch.nn.init.uniform_(p, -0.6, 0.6)
        x = torch.randn(40, 2, in_size)
        with torch.no_grad():
            kernel = sru(x)  # sru 2.6.0's own CPU kernel
        scan = sru(x)  # training path
        ref = old_sru(sru.rnn_lst, x)
        torch.testing.assert_close(kernel, ref, atol=4e-7, rtol=1e-6)
        torch.testing.assert_close(scan.detach(), ref, atol=1e-6, rtol=1e-6)


def test_sru_runs_in_float32_under_bf16_autocast():
    """sru's kernels take float32 only; under bf16 autocast the SRU must not hand them a bfloat16 U (it raised
    'expected scalar type Float but found BFloat16')."""
    torch.manual_seed(2)
    sru = OldSRU(7, 9, 2)
    x = torch.randn(30, 2, 7)
    with torch.no_grad():
        expected = sru(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            kernel = sru(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scan = sru(x)
    assert kernel.dtype == scan.dtype == torch.float32
    # the recurrence itself runs in float32, so only the bfloat16 input rounding (2^-9 relative) moves the output
    torch.testing.assert_close(kernel, expected, atol=2e-2, rtol=0)
    torch.testing.assert_close(scan.detach(), expected, atol=1e-6, rtol=1e-6)


def test_old_sru_keys_fill_plain_sru_260_and_reproduce_outputs():
    """An old-SRU state (weight, bias only) loaded into sru 2.6.0's own SRU with weight_c = 0, scale_x = 1
    reproduces the old maths; sru 2.x defaults (identity activation, peephole) do not."""
    torch.manual_seed(2)
    ours = OldSRU(6, 8, 2)
    for p in ours.parameters():
        torch.nn.init.uniform_(p, -0.6, 0.6)
    old_state = ours.state_dict()
    assert sorted(old_state) == ["rnn_lst.0.bias", "rnn_lst.0.weight", "rnn_lst.1.bias", "rnn_lst.1.weight"]
    plain = _sru.SRU(6, 8, num_layers=2, use_tanh=True, v1=True, rescale=False, highway_bias=0.0)
    filled = dict(old_state)
    for i in range(2):
        filled[f"rnn_lst.{i}.weight_c"] = torch.zeros(16)
        filled[f"rnn_lst.{i}.scale_x"] = torch.ones(1)
    plain.load_state_dict(filled, strict=True)
    defaults = _sru.SRU(6, 8, num_layers=2)
    defaults.load_state_dict({**filled, **{k: v for k, v in defaults.state_dict().items() if "weight_c" in k}})
    x = torch.randn(12, 1, 6)
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], ours(x), atol=4e-7, rtol=1e-6)
        assert not torch.allclose(defaults(x)[0], ours(x), atol=1e-3)
    # And the reverse: an sru 2.x state with the equivalent values loads into ours.
    ours.load_state_dict(fill_new_sru_keys(filled), strict=True)


def test_learned_peephole_is_refused():
    state = {"langvis.mrnn.rnn_lst.0.weight_c": torch.ones(4)}
    with pytest.raises(ValueError, match="peephole"):
        fill_new_sru_keys(state)


def test_vocabulary_mismatch_names_both_sizes():
    model = tiny()
    state = tiny().state_dict()
    state["langvis.emb.weight"] = torch.zeros(31, 12)
    with pytest.raises(CheckpointError, match="31 words.*30"):
        load_dmn_weights(model, state, "ckpt.pth")


def test_legacy_checkpoint_without_num_batches_tracked_loads(tmp_path):
    """The format PyTorch <= 0.4.0 wrote (the released weights' era): no BatchNorm num_batches_tracked, BatchNorm
    state version 1 in the metadata."""
    source, model = tiny(True, seed=5), tiny(True, seed=6)
    state = source.state_dict()
    legacy = OrderedDict((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    legacy._metadata = OrderedDict((k, dict(v, version=1) if f"{k}.num_batches_tracked" in state else v)
                                   for k, v in state._metadata.items())
    assert len(legacy) < len(state)
    torch.save(legacy, tmp_path / "legacy.pth")
    load_dmn_weights(model, read_state_dict(tmp_path / "legacy.pth"), "legacy.pth")
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_low_res_weights_load_into_high_res_model():
    low, high = tiny(False, seed=3), tiny(True, seed=4)
    load_dmn_weights(high, low.state_dict(), "low.pth")
    torch.testing.assert_close(high.langvis.comb_conv.weight, low.langvis.comb_conv.weight)


def test_dpn92_feature_pyramid_shapes():
    dpn = create_dpn("dpn92")
    assert dpn.feature_channels == [64, 336, 704, 1552, 2688]
    assert sum(p.numel() for p in dpn.parameters()) == 34_979_392


def test_pretrained_dpn_loads_from_data_folder(tmp_path, caplog):
    dpn = create_dpn("dpn68")
    assert not load_pretrained_dpn(dpn, "dpn68", tmp_path)
    assert "RANDOM initialisation" in caplog.text
    source = create_dpn("dpn68")
    state = {**source.state_dict(), "classifier.weight": torch.zeros(1000, 832, 1, 1), "classifier.bias": torch.zeros(1000)}
    (tmp_path / "weights").mkdir()
    torch.save(state, tmp_path / "weights" / "dpn68-66bebafa7.pth")
    assert load_pretrained_dpn(dpn, "dpn68", tmp_path)
    torch.testing.assert_close(dpn.features.conv1_1.conv.weight, source.features.conv1_1.conv.weight)


@pytest.mark.parametrize("high_res", [False, True])
def test_readme_model_forward_matches_original(full_models, high_res):
    """The README-sized model (dpn92, widths 1000/1005, 10 filters, 3+3 SRU layers) on a 64 x 96 image."""
    model = full_models[high_res].train()
    torch.manual_seed(5)
    img = torch.randn(1, 3, 64, 96)
    words = torch.tensor([[11, 3, 12000, 3, 7]])
    with torch.no_grad():
        ours = model(img, words)
        ref = reference_forward(model, img, words)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
