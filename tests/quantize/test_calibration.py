"""Calibration statistics against a direct torch computation; quantize_'s calibration plumbing; recipe names."""

from __future__ import annotations

import copy

import pytest
import torch

from retarget.errors import RetargetError
from retarget.quantize import AWQConfig, GPTQConfig, HQQConfig, collect_stats, config_from_name, quantize_
from retarget.quantize.api import linear_layers
from retarget.quantize.configs import known_recipe_forms


def _inputs_by_hand(model, tokens: list[int], seq_len: int) -> dict[str, torch.Tensor]:
    """Every Linear's inputs over all sequences, [T, K], captured one sequence at a time."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = [layer.register_forward_pre_hook(lambda m, a, n=name: seen.setdefault(n, []).append(a[0][0].clone()))
               for name, layer in linear_layers(model, include_lm_head=False).items()]
    with torch.no_grad():
        for seq in torch.tensor(tokens).view(-1, seq_len):
            model(input_ids=seq[None])
    for h in handles:
        h.remove()
    return {name: torch.cat(xs) for name, xs in seen.items()}


def test_stats_equal_direct_computation(tiny_llama, tiny_tokens) -> None:
    stats = collect_stats(tiny_llama, tiny_tokens, linear_layers(tiny_llama, include_lm_head=False), seq_len=64)
    inputs = _inputs_by_hand(tiny_llama, tiny_tokens, 64)
    assert set(stats) == set(inputs)
    for name, x in inputs.items():
        x = x.double()
        torch.testing.assert_close(stats[name].hessian.double(), x.T @ x, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(stats[name].abs_mean.double(), x.abs().mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats[name].abs_max.double(), x.abs().amax(0), rtol=0, atol=0)
        assert stats[name].tokens == len(tiny_tokens)
    # q/k/v read one tensor, as do gate/up: one LayerStats each
    attn = "model.layers.1.self_attn"
    assert stats[f"{attn}.q_proj"] is stats[f"{attn}.v_proj"] is not stats[f"{attn}.o_proj"]
    assert stats["model.layers.0.mlp.gate_proj"].names == ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"]


def test_too_few_tokens_is_an_error(tiny_llama) -> None:
    with pytest.raises(ValueError):
        collect_stats(tiny_llama, [1, 2, 3], linear_layers(tiny_llama), seq_len=64)


def test_calibrated_recipe_without_tokens_is_a_recipe_error(tiny_llama) -> None:
    with pytest.raises(RetargetError, match="calibration"):
        quantize_(tiny_llama, GPTQConfig())


def test_stats_are_reused_and_not_changed_by_a_transform(tiny_llama, tiny_tokens) -> None:
    stats = collect_stats(tiny_llama, tiny_tokens, linear_layers(tiny_llama, include_lm_head=False), seq_len=64)
    before = {n: s.hessian.clone() for n, s in stats.items()}
    for config in (GPTQConfig(group_size=32), AWQConfig(group_size=32)):
        assert quantize_(copy.deepcopy(tiny_llama), config, stats=stats) == 15  # 2 x 7 + lm_head
    assert all(torch.equal(before[n], s.hessian) for n, s in stats.items())


@pytest.mark.parametrize("config", [GPTQConfig(bits=4, group_size=128), GPTQConfig(bits=3, group_size=64,
                                    act_order=True), AWQConfig(bits=4, group_size=64), HQQConfig(bits=3, group_size=64),
                                    GPTQConfig(bits=4, group_size=None, symmetric=True),
                                    AWQConfig(bits=4, group_size=128, gptq=True)])
def test_names_round_trip(config) -> None:
    assert config_from_name(config.name) == config
    assert config.to_dict()["name"] == config.name


def test_unknown_recipe_lists_every_family() -> None:
    with pytest.raises(RetargetError) as err:
        config_from_name("gptq-int4-g128")
    for form in known_recipe_forms():
        assert form in str(err.value)
    assert any(form.startswith("gptq-") for form in known_recipe_forms())


def test_hqq_is_asymmetric_only() -> None:
    with pytest.raises(RetargetError):
        config_from_name("hqq-int4-g128-sym")


@pytest.mark.parametrize("recipe", ["int4-g32-asym", "gptq-int4-g32-asym", "awq-int4-g32-asym", "hqq-int4-g32-asym",
                                    "mse-int4-g32-asym"])
def test_every_integer_family_stores_lm_head_as_8_bit_rtn(tiny_llama, tiny_tokens, recipe: str) -> None:
    from retarget.quantize.weight import quantize_rtn

    stats = collect_stats(tiny_llama, tiny_tokens, linear_layers(tiny_llama, include_lm_head=False), seq_len=64)
    reference = quantize_rtn(tiny_llama.lm_head.weight, 8, 32, symmetric=True)
    model = copy.deepcopy(tiny_llama)
    quantize_(model, config_from_name(recipe), stats=stats)
    head, body = model.lm_head.qweight, model.model.layers[0].mlp.down_proj.qweight
    assert (head.bits, head.group_size, head.symmetric, body.bits) == (8, 32, True, 4)
    assert torch.equal(head.codes, reference.codes) and torch.equal(head.scale, reference.scale)
