"""Our DMN against logits computed by the original DMN code (BCV-Uniandes/DMS + SRU@43c85ed) on the same weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmn_pytorch.models import DMN
from parity_weights import CONFIGS, DICT_SIZE, deterministic_state_dict, parity_inputs

EXPECTED = torch.load(Path(__file__).parent / "fixtures" / "original_outputs.pt")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_the_original_code(name):
    model = DMN(DICT_SIZE, **CONFIGS[name])
    assert list(model.state_dict()) == EXPECTED[name]["keys"]
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    model.train()  # the original evaluated with BatchNorm in train mode
    image, words = parity_inputs()
    with torch.no_grad():
        logits = model(image, words)
    torch.testing.assert_close(logits, EXPECTED[name]["logits"], atol=1e-5, rtol=1e-5)
