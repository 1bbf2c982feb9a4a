"""Fixtures shared by tests/ and bench/: the bundled SmolLM2-135M, loaded once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """The bundled default model (float32 torch model, tokenizer, the GGUF's own Q4_1/Q8_0 blocks)."""
    from retarget.models.load import load_model
    from retarget.quantize.api import untie_lm_head

    loaded = load_model("default")
    untie_lm_head(loaded.model)
    return loaded
