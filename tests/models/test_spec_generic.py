"""ModelSpec from configs of model types without their own rules (retarget.models.archs.GenericArch):
parameter counts against transformers' own models of each type, built on the meta device."""

from __future__ import annotations

import pytest

from retarget.errors import RetargetError
from retarget.models.archs import GenericArch, arch_class, supported_model_types
from retarget.models.spec import ModelSpec

_T = dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, vocab_size=300, num_hidden_layers=3,
          intermediate_size=160, pad_token_id=0)
_MOE = dict(_T, moe_intermediate_size=48)
_GPT = dict(n_embd=96, n_head=6, n_layer=3, vocab_size=300, n_inner=160, n_positions=64)
# One small config per model type; keys as each type's config class names them.
GENERIC_CONFIGS = {
    "phi3": _T, "granite": _T, "cohere": _T, "stablelm": _T, "olmo": _T, "helium": dict(_T, head_dim=16),
    "apertus": dict(_T, hidden_act="silu"),
    "hunyuan_v1_dense": dict(_T, head_dim=16), "seed_oss": dict(_T, head_dim=16), "ernie4_5": dict(_T, head_dim=16),
    "glm": dict(_T, head_dim=16), "glm4": dict(_T, head_dim=16), "smollm3": _T,
    "gemma": dict(_T, head_dim=32), "gemma2": dict(_T, head_dim=32, sliding_window=16),
    "vaultgemma": dict(_T, head_dim=32, sliding_window=16),
    "cohere2": dict(_T, head_dim=16, sliding_window=16), "exaone4": dict(_T, sliding_window=16),
    "olmo3": dict(_T, sliding_window=16), "ministral": dict(_T, head_dim=16, sliding_window=16),
    "olmoe": dict(_T, num_experts=4, num_experts_per_tok=2),
    "granitemoe": dict(_T, num_local_experts=4, num_experts_per_tok=2),
    "granitemoeshared": dict(_T, num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=64),
    "phimoe": dict(_T, num_local_experts=4, num_experts_per_tok=2),
    "ernie4_5_moe": dict(_MOE, head_dim=16, moe_num_experts=4, moe_k=2, moe_num_shared_experts=1,
                         moe_layer_start_index=1, moe_layer_end_index=2),
    "dots1": dict(_MOE, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1),
    "dbrx": dict(d_model=96, n_heads=6, n_layers=3, vocab_size=300, max_seq_len=64,
                 attn_config=dict(kv_n_heads=2), ffn_config=dict(ffn_hidden_size=48, moe_num_experts=4,
                                                                  moe_top_k=2)),
    "starcoder2": _T, "nemotron": dict(_T, head_dim=16), "arcee": dict(_T, head_dim=16),
    "persimmon": dict(_T, num_key_value_heads=6), "phi": dict(_T, num_key_value_heads=6),
    "gpt_neox": dict(_T, num_key_value_heads=6),
    "falcon": dict(hidden_size=96, num_attention_heads=6, num_hidden_layers=3, vocab_size=300, multi_query=True,
                   ffn_hidden_size=160),
    "gpt2": _GPT, "gptj": dict(_GPT, rotary_dim=8), "gpt_bigcode": dict(_GPT, multi_query=True),
}


def _config_and_reference(model_type: str, kwargs: dict) -> tuple[dict, int]:
    """The config.json transformers writes for MODEL_TYPE with KWARGS, and its model's weight count."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    # ModelSpec ignores biases (spec.py); count weights only, so tiny dims do not magnify them
    return config.to_dict(), sum(p.numel() for name, p in model.named_parameters() if not name.endswith("bias"))


def test_generic_rule_classes_have_fixtures():
    """Every GenericArch subclass is checked here; 25+ model types are read without rules of their own."""
    rules = {arch_class(t) for t in supported_model_types() if issubclass(arch_class(t), GenericArch)}
    assert rules <= {arch_class(t) for t in GENERIC_CONFIGS}
    assert sum(arch_class(t) is None for t in GENERIC_CONFIGS) >= 25


@pytest.mark.parametrize("model_type", sorted(GENERIC_CONFIGS))
def test_params_match_transformers(model_type):
    config, reference = _config_and_reference(model_type, GENERIC_CONFIGS[model_type])
    spec = ModelSpec.from_hf_config(config)
    # norms differ by a few hidden-size vectors between families (LayerNorm vs RMSNorm, QK norms)
    assert spec.params_total == pytest.approx(reference, rel=0.02)


def test_layer_rules_of_generic_configs():
    gemma2 = ModelSpec.from_hf_config({"model_type": "gemma2", **GENERIC_CONFIGS["gemma2"],
                                       "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]})
    assert [layer.attention.window for layer in gemma2.layers()] == [16, None, 16]
    ernie = ModelSpec.from_hf_config({"model_type": "ernie4_5_moe", **GENERIC_CONFIGS["ernie4_5_moe"]})
    assert [layer.mlp.kind for layer in ernie.layers()] == ["dense", "moe", "moe"]
    assert ernie.blocks[-1].mlp.shared_experts == 1 and ernie.blocks[-1].mlp.top_k == 2
    falcon = ModelSpec.from_hf_config({"model_type": "falcon", **GENERIC_CONFIGS["falcon"]})
    assert falcon.attention_kind == "mqa" and not falcon.blocks[0].mlp.gated
    gpt2 = ModelSpec.from_hf_config({"model_type": "gpt2", **_GPT, "n_inner": None})
    assert gpt2.blocks[0].mlp.intermediate == 4 * 96  # n_inner None: 4 x hidden


@pytest.mark.parametrize("config, message", [
    ({**_T, "model_type": "qwen3_next", "layer_types": ["linear_attention", "full_attention", "full_attention"]},
     "layer_types: layer types not modelled: linear_attention"),
    ({**_T, "model_type": "bamba", "mamba_d_state": 16}, "mamba_d_state: recurrent"),
    ({**_T, "model_type": "t5", "is_encoder_decoder": True}, "is_encoder_decoder"),
    ({**_T}, "model_type: missing"),
])
def test_unmodelled_layers_are_named_in_one_line(config, message):
    with pytest.raises(RetargetError, match=message) as err:
        ModelSpec.from_hf_config(config, source="config.json")
    assert "\n" not in str(err.value)
