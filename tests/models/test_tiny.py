"""Tiny random models: every family builds from transformers' own classes, runs, is deterministic, round-trips
through a Hugging Face folder, and decodes greedily with margins far above float noise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from retarget.errors import RetargetError
from retarget.models.load import check_model_ref, load_model
from retarget.models.registry import registry_entries
from retarget.models.tiny import TINY, build_tiny, greedy_margins, save_tiny, tiny_names, tiny_tokenizer

PROMPT = "The quick brown fox jumps over the lazy dog."


def _ids() -> torch.Tensor:
    return tiny_tokenizer()(PROMPT, return_tensors="pt")["input_ids"]


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(_ids()).logits


@pytest.mark.parametrize("name", tiny_names())
def test_family_builds_runs_and_is_deterministic(name: str) -> None:
    model = build_tiny(name)
    family = TINY[name]
    assert model.config.model_type == family.model_type
    assert model.config.vocab_size == len(tiny_tokenizer())
    for key, value in family.config.items():  # the family's features survive the config class
        if key not in ("layer_types", "rope_scaling") and hasattr(model.config, key):
            assert getattr(model.config, key) == value, key
    logits = _logits(model)
    assert logits.shape == (1, _ids().shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()
    assert 2.0 < logits[0, -1].std().item() < 8.0  # lm_head scaled for peaky, not saturated, logits
    torch.manual_seed(1234)  # the global RNG state does not leak into a build
    assert torch.equal(_logits(build_tiny(name)), logits)


def test_registry_model_types_have_a_tiny_family() -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    tiny_types = {f.model_type for f in TINY.values()}
    aliases = {"gemma3": "gemma3_text", "llama4": "llama4_text", "kimi_k2": "deepseek_v3",
               "hunyuan": "hunyuan_v1_moe", "minimax_m1": "minimax"}
    for entry in registry_entries().values():
        model_type = aliases.get(entry.config["model_type"], entry.config["model_type"])
        if model_type in CONFIG_MAPPING_NAMES:  # MiniMax-M2 is not in transformers 4.57
            assert model_type in tiny_types, entry.name


@pytest.mark.parametrize("name", ["qwen3", "gpt-oss", "gemma-3", "deepseek-v3"])
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    folder = save_tiny(name, tmp_path / name)
    loaded = load_model(str(folder))
    assert loaded.source_format == "hf-safetensors"
    # the folder loads with sdpa attention, build_tiny with eager: equal up to summation order
    torch.testing.assert_close(_logits(loaded.model), _logits(build_tiny(name)), atol=1e-4, rtol=0)


def test_tiny_reference_resolves_through_the_loader() -> None:
    assert check_model_ref("tiny:qwen3") == Path("tiny:qwen3")
    loaded = load_model("tiny:qwen3")
    assert loaded.source_format == "tiny" and loaded.model.config.model_type == "qwen3"
    with pytest.raises(RetargetError, match="unknown tiny model 'nope'"):
        check_model_ref("tiny:nope")


def test_registry_name_says_where_to_get_weights() -> None:
    with pytest.raises(RetargetError, match="Qwen/Qwen3-8B") as err:
        check_model_ref("qwen3-8b")
    assert "retarget compile ./qwen3-8b" in str(err.value) and "tiny:qwen3" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", tiny_names())
def test_greedy_margins_far_above_float_noise(name: str) -> None:
    from retarget.compile import CHAT_PROMPT

    chat = tiny_tokenizer().apply_chat_template([{"role": "user", "content": CHAT_PROMPT}],
                                                add_generation_prompt=True)
    tokens, margins = greedy_margins(build_tiny(name), torch.tensor([chat]), steps=32)
    assert len(tokens) == 32 and min(margins) > 1e-2, margins
