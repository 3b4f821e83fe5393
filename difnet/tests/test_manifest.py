"""State dicts equal the original's checkpoint manifests; checkpoints in the original's format load strictly."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import load_checkpoint, load_weights
from models import MODES, CaptioningModel, ModelConfig
from parity_weights import V, deterministic_state_dict, parity_inputs

FIXTURES = Path(__file__).parent / "fixtures"
# parameter counts stated in the spec (V = 10,201), frozen position table included
PARAMETERS = {"base": 33_602_560, "base_lrp": 33_602_560, "difnet": 33_690_624, "difnet_lrp": 33_678_336}


def manifest(mode: str) -> list[tuple[str, str]]:
    lines = (FIXTURES / f"difnet.{mode}.state_dict.tsv").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines]


def shape_string(t: torch.Tensor) -> str:
    return "scalar" if t.dim() == 0 else "x".join(map(str, t.shape))


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_equals_manifest(mode):
    model = CaptioningModel(ModelConfig(mode=mode))
    assert [(k, shape_string(v)) for k, v in model.state_dict().items()] == manifest(mode)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[mode]
    sd = model.state_dict()
    assert sd["decoder.running_mask_self_attention"].dtype == torch.uint8
    assert sd["decoder.running_seq"].dtype == torch.int64
    # frozen position table, trainable rest (33,650,176 trainable parameters in difnet_lrp)
    if mode == "difnet_lrp":
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 33_650_176


def test_original_format_checkpoint_loads_strictly(tmp_path):
    """A checkpoint dict as the original's train.py writes it (numpy RNG state included) loads with strict=True."""
    source = CaptioningModel(ModelConfig(mode="difnet_lrp"))
    path = tmp_path / "DIFNet_lrp.pth"
    torch.save({
        "torch_rng_state": torch.get_rng_state(), "cuda_rng_state": torch.empty(0, dtype=torch.uint8),
        "numpy_rng_state": np.random.get_state(), "random_rng_state": random.getstate(), "epoch": 30,
        "val_loss": 2.1, "val_cider": 1.3, "state_dict": source.state_dict(), "optimizer": {}, "scheduler": {},
        "patience": 5, "best_cider": 1.3, "use_rl": True,
    }, path)
    target = CaptioningModel(ModelConfig(mode="difnet_lrp"))
    load_weights(target, load_checkpoint(str(path))["state_dict"], str(path), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_lrp_weights_in_difnet_mode_give_the_same_function():
    """difnet_lrp weights in mode difnet (strict=False: 24 never-used LayerNorm tensors missing) compute the same
    log-probabilities: the LRP modes only add relevance propagation."""
    lrp = CaptioningModel(ModelConfig(mode="difnet_lrp", vocab_size=V))
    lrp.load_state_dict(deterministic_state_dict(lrp.state_dict()))
    plain = CaptioningModel(ModelConfig(mode="difnet", vocab_size=V))
    missing, unexpected = plain.load_state_dict(lrp.state_dict(), strict=False)
    assert len(missing) == 24 and not unexpected and all("layer_norm1" in k for k in missing)
    grid, seg, seq = parity_inputs()
    with torch.no_grad():
        assert torch.equal(lrp.eval()(grid, seq, seg), plain.eval()(grid, seq, seg))
