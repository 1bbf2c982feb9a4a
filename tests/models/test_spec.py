"""ModelSpec: parameter and KV-cache arithmetic against independent references, JSON, bad configs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from retarget.errors import RetargetError
from retarget.models.archs import GenericArch, arch_class, supported_model_types
from retarget.models.spec import ModelSpec

# SmolLM2-135M config.json (HuggingFaceTB/SmolLM2-135M; same numbers in mlc-llm's model_preset.py)
SMOLLM2 = dict(model_type="llama", hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True,
               max_position_embeddings=8192, torch_dtype="bfloat16")


def test_smollm2_params_and_kv_bytes():
    spec = ModelSpec.from_hf_config(SMOLLM2, "smollm2-135m")
    # The HF model card / hub page reports 134.5M parameters for this checkpoint.
    assert spec.params_total == pytest.approx(134.5e6, rel=2e-3)
    assert spec.params_active == spec.params_total  # dense
    # K and V, 30 layers x 3 KV heads x head_dim 64, fp16
    assert spec.kv_cache_bytes_per_token(2) == 2 * 30 * 3 * 64 * 2 == 23040
    assert spec.attention_kind == "gqa" and spec.num_layers == 30 and len(spec.blocks) == 1
    assert spec.native_format == {"all": "bf16"}


# Tiny configs of every supported family; transformers builds each on the meta device (no weights) and
# its parameter count is the reference. Biases and a few extra norms are ignored by ModelSpec (see
# spec.py), which tiny dims magnify to at most ~1% (gpt-oss biases); real sizes are far below that.
_TINY = dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, vocab_size=300)
TINY_CONFIGS = {
    "llama": dict(_TINY, num_hidden_layers=3, intermediate_size=160),
    "olmo2": dict(_TINY, num_hidden_layers=3, num_key_value_heads=6, intermediate_size=160),
    "qwen2": dict(_TINY, num_hidden_layers=3, intermediate_size=160),
    "qwen3": dict(_TINY, num_hidden_layers=3, head_dim=32, intermediate_size=160, tie_word_embeddings=True),
    "qwen3_moe": dict(_TINY, num_hidden_layers=3, head_dim=32, intermediate_size=160,
                      moe_intermediate_size=48, num_experts=6, num_experts_per_tok=2),
    "mixtral": dict(_TINY, num_hidden_layers=3, intermediate_size=160, num_local_experts=4,
                    num_experts_per_tok=2),
    "deepseek_v3": dict(_TINY, num_hidden_layers=3, num_key_value_heads=6, intermediate_size=160,
                        moe_intermediate_size=48, n_routed_experts=6, num_experts_per_tok=2,
                        n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=40, kv_lora_rank=24,
                        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_group=2, topk_group=1),
    "deepseek_v2": dict(_TINY, num_hidden_layers=3, num_key_value_heads=6, intermediate_size=160,
                        moe_intermediate_size=48, n_routed_experts=6, num_experts_per_tok=2,
                        n_shared_experts=2, first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=24,
                        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16),
    "glm4_moe": dict(_TINY, num_hidden_layers=3, head_dim=32, intermediate_size=160, moe_intermediate_size=48,
                     n_routed_experts=6, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1),
    "gpt_oss": dict(_TINY, num_hidden_layers=2, head_dim=16, intermediate_size=48, num_local_experts=4,
                    num_experts_per_tok=2, sliding_window=8),
    "gemma3_text": dict(_TINY, num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
                        intermediate_size=160, sliding_window=16),
    "falcon_h1": dict(_TINY, num_hidden_layers=2, num_attention_heads=4, head_dim=24, intermediate_size=160,
                      mamba_d_ssm=128, mamba_n_heads=8, mamba_d_head=16, mamba_n_groups=2, mamba_d_state=16),
    "jamba": dict(_TINY, num_hidden_layers=8, intermediate_size=160, num_experts=4, num_experts_per_tok=2,
                  mamba_d_state=8, mamba_dt_rank=6, attn_layer_period=4, attn_layer_offset=2,
                  expert_layer_period=2, expert_layer_offset=1, use_mamba_kernels=False),
    "minimax": dict(_TINY, num_hidden_layers=4, head_dim=16, intermediate_size=48, num_local_experts=4,
                    num_experts_per_tok=2, layer_types=["linear_attention", "full_attention"] * 2),
    "llama4_text": dict(_TINY, num_hidden_layers=4, head_dim=16, intermediate_size=48,
                        intermediate_size_mlp=160, num_local_experts=4, num_experts_per_tok=1,
                        interleave_moe_layer_step=2),
    "hunyuan_v1_moe": dict(_TINY, num_hidden_layers=3, head_dim=16, intermediate_size=48, num_experts=4,
                           moe_topk=2),
    "longcat_flash": dict(_TINY, num_layers=2, num_hidden_layers=4, num_key_value_heads=6,
                          ffn_hidden_size=160, expert_ffn_hidden_size=48, n_routed_experts=4,
                          zero_expert_num=2, moe_topk=2, q_lora_rank=40, kv_lora_rank=24,
                          qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16),
}


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_params_match_transformers_meta_model(model_type):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    kwargs = TINY_CONFIGS[model_type]
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    reference = sum(p.numel() for p in model.parameters())
    spec = ModelSpec.from_hf_config({"model_type": model_type, **kwargs})
    assert spec.params_total == pytest.approx(reference, rel=0.012)


def test_every_architecture_class_has_a_fixture():
    """A new registered architecture cannot land without a transformers-checked tiny config."""
    classes = {arch_class(t) for t in supported_model_types()}
    generic = {c for c in classes if issubclass(c, GenericArch)}  # fixtures in test_spec_generic.py
    assert classes - generic == {arch_class(t) for t in TINY_CONFIGS}


def test_layer_patterns():
    gemma = ModelSpec.from_hf_config({"model_type": "gemma3_text", **TINY_CONFIGS["gemma3_text"]})
    windows = [layer.attention.window for layer in gemma.layers()]
    assert windows == [16] * 5 + [None] + [16]  # 5 local : 1 global
    jamba = ModelSpec.from_hf_config({"model_type": "jamba", **TINY_CONFIGS["jamba"]})
    assert [layer.attention is not None for layer in jamba.layers()] == [i % 4 == 2 for i in range(8)]
    assert [layer.mlp.kind for layer in jamba.layers()] == ["dense", "moe"] * 4
    assert jamba.ssm_layers == 6 and jamba.attention_kind == "gqa"
    minimax = ModelSpec.from_hf_config({"model_type": "minimax", **TINY_CONFIGS["minimax"]})
    assert [layer.attention.kind for layer in minimax.layers()] == ["linear", "gqa"] * 2


def test_kv_bytes_mla_window_and_linear():
    ds = ModelSpec.from_hf_config({"model_type": "deepseek_v3", **TINY_CONFIGS["deepseek_v3"]})
    # MLA caches the kv latent plus one shared RoPE key per token and layer, whatever the head count
    assert ds.kv_cache_bytes_per_token(1) == 3 * (24 + 8)
    gemma = ModelSpec.from_hf_config({"model_type": "gemma3_text", **TINY_CONFIGS["gemma3_text"]})
    per_layer = 2 * 1 * 32 * 2
    assert gemma.kv_cache_bytes_per_token() == 7 * per_layer
    # at 64 tokens, the 6 local layers hold only their 16-token window
    assert gemma.kv_cache_bytes(64) == per_layer * (64 + 6 * 16)
    minimax = ModelSpec.from_hf_config({"model_type": "minimax", **TINY_CONFIGS["minimax"]})
    assert minimax.kv_cache_bytes_per_token(2) == 2 * (2 * 2 * 16 * 2)  # only the 2 softmax layers grow
    assert minimax.state_bytes_per_sequence(2) == 2 * 6 * 16 * 16 * 2  # 2 linear layers, 6 heads, 16x16


def test_moe_active_and_expert_bytes():
    spec = ModelSpec.from_hf_config({"model_type": "mixtral", **TINY_CONFIGS["mixtral"]})
    expert = 3 * 96 * 160
    assert spec.params_total - spec.params_active == 3 * (4 - 2) * expert
    assert spec.expert_params == 3 * 4 * expert
    mixed = spec.weight_bytes({"experts": 4.25, "other": 16})
    other = spec.params_total - spec.expert_params
    assert mixed == pytest.approx((spec.expert_params * 4.25 + other * 16) / 8)
    assert spec.weight_bytes(16) == 2 * spec.params_total


def _kinds(spec: ModelSpec) -> dict[tuple[object, object, object], int]:
    """Layers per (attention, ssm, mlp), counted layer by layer."""
    return dict(Counter((layer.attention, layer.ssm, layer.mlp) for layer in spec.layers()))


def test_counts_follow_a_copy_with_other_layers():
    """Counts are computed once per spec object; a `model_copy` with other blocks is a new spec whose counts are
    its own (the Jamba pattern's layer kinds, then a copy with its MoE layers made dense)."""
    jamba = ModelSpec.from_hf_config({"model_type": "jamba", **TINY_CONFIGS["jamba"]})
    assert {(g.attention, g.ssm, g.mlp): n for g, n in jamba.layer_kinds} == _kinds(jamba)
    assert len(jamba.layer_kinds) == 3 < len(jamba.blocks)
    before = (jamba.params_total, jamba.expert_params)
    dense = [g.model_copy(update={"mlp": g.mlp.model_copy(update={
        "kind": "dense", "experts": 0, "top_k": 0, "intermediate": g.mlp.intermediate or g.mlp.expert_intermediate})})
        for g in jamba.blocks]
    copy = jamba.model_copy(update={"blocks": dense})
    assert copy.expert_params == 0 and copy.params_total < before[0]
    assert {(g.attention, g.ssm, g.mlp): n for g, n in copy.layer_kinds} == _kinds(copy)
    assert (jamba.params_total, jamba.expert_params) == before


def test_json_round_trip():
    spec = ModelSpec.from_hf_config({"model_type": "jamba", **TINY_CONFIGS["jamba"]}, "tiny-jamba")
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec and again.params_total == spec.params_total
    assert spec.to_dict()["version"] == 1


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c.pop("hidden_size"), "hidden_size"),
    (lambda c: c.update(num_attention_heads="nine"), "num_attention_heads"),
    (lambda c: c.update(num_hidden_layers=-3), "num_hidden_layers"),
    (lambda c: c.pop("model_type"), "model_type"),
    (lambda c: c.update(num_key_value_heads=4), "heads"),  # 9 heads are not divisible into 4 KV groups
])
def test_bad_config_names_the_field(mutate, field):
    config = dict(SMOLLM2)
    mutate(config)
    with pytest.raises(RetargetError, match=field):
        ModelSpec.from_hf_config(config, source="config.json")


def test_per_layer_list_of_wrong_length_names_the_field():
    config = {"model_type": "gemma3_text", **TINY_CONFIGS["gemma3_text"],
              "layer_types": ["full_attention"] * 3}
    with pytest.raises(RetargetError, match="layer_types"):
        ModelSpec.from_hf_config(config)


def test_bad_spec_dict_and_version():
    data = ModelSpec.from_hf_config(SMOLLM2).to_dict()
    with pytest.raises(RetargetError, match="version"):
        ModelSpec.from_dict({**data, "version": 99}, source="spec.json")
    with pytest.raises(RetargetError, match="vocab_size"):
        ModelSpec.from_dict({**data, "vocab_size": 0}, source="spec.json")


def test_gguf_metadata_gives_the_same_spec_as_the_hf_config(tmp_path):
    """Write SmolLM2's hyper-parameters with gguf-py's writer, read them back, build the spec."""
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "smollm2.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("SmolLM2-135M")
    writer.add_block_count(30)
    writer.add_embedding_length(576)
    writer.add_feed_forward_length(1536)
    writer.add_head_count(9)
    writer.add_head_count_kv(3)
    writer.add_context_length(8192)
    writer.add_vocab_size(49152)
    writer.add_tensor("token_embd.weight", np.zeros((2, 2), dtype=np.float32))  # no output.weight: tied
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    metadata = {key: field.contents() for key, field in reader.fields.items()}
    spec = ModelSpec.from_gguf_metadata(metadata, tensor_names=[t.name for t in reader.tensors])
    reference = ModelSpec.from_hf_config(SMOLLM2, "SmolLM2-135M")
    assert spec.name == "SmolLM2-135M"
    assert spec.blocks == reference.blocks and spec.params_total == reference.params_total
    assert spec.tie_word_embeddings and spec.vocab_size == 49152
    del metadata["llama.vocab_size"]  # without the key, the tokenizer's token list gives the size
    assert ModelSpec.from_gguf_metadata({**metadata, "tokenizer.ggml.tokens": ["a"] * 500}).vocab_size == 500
    with pytest.raises(RetargetError, match="general.architecture"):
        ModelSpec.from_gguf_metadata({**metadata, "general.architecture": "rwkv6"})
