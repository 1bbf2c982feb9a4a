"""The default artifact opens in the clients users already have: optimum's ORTModelForCausalLM and
onnxruntime-genai generate the same greedy tokens as retarget's own runtime, and stop at the model's EOS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from retarget.export.client_metadata import genai_config, optional_logits_to_keep, write_client_files
from retarget.export.runtime import OrtCausalLM

NEW_TOKENS = 24
QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def artifact(smollm2, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The graph `retarget compile` writes by default (recipe auto on cpu-x86: GPTQ int4 of the GGUF's blocks),
    with its client files; built without compile's evaluation."""
    from retarget.export.onnx_export import export_artifact
    from retarget.hw_profiles import load_profile
    from retarget.plan import plan_recipe
    from retarget.quantize.api import quantized_copy, quantized_weights

    plan = plan_recipe("auto", load_profile("cpu-x86"), has_source_blocks=True, source_element="int")
    quantized, _ = quantized_copy(smollm2, plan.weights)
    out = tmp_path_factory.mktemp("clients")
    export_artifact(smollm2.model, quantized, quantized_weights(quantized), plan, out)
    write_client_files(smollm2, out)
    return out


@pytest.fixture(scope="module")
def chat(smollm2) -> list[int]:
    return smollm2.tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)


@pytest.fixture(scope="module")
def ours(artifact: Path, chat: list[int], smollm2) -> list[int]:
    """retarget's runtime: greedy, stopping at the GGUF's own EOS id."""
    eos = smollm2.model.config.eos_token_id
    runtime = OrtCausalLM(artifact / "model.onnx")
    assert "logits_to_keep" in runtime.input_names  # still fed (1 while decoding) though clients may omit it
    return runtime.generate(chat, NEW_TOKENS, stop=frozenset({eos}))


def test_tokenizer_files_name_the_models_eos(artifact: Path, smollm2) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    eos = smollm2.model.config.eos_token_id  # the GGUF's tokenizer.ggml.eos_token_id
    shipped = AutoTokenizer.from_pretrained(artifact)
    assert shipped.eos_token_id == eos == 2 and shipped.eos_token == "<|im_end|>"
    assert shipped.bos_token_id == smollm2.model.config.bos_token_id
    assert GenerationConfig.from_pretrained(artifact).eos_token_id == eos
    assert json.loads((artifact / "genai_config.json").read_text())["model"]["eos_token_id"] == eos
    # the chat template travels with the tokenizer and renders the same prompt
    assert shipped.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True) == \
        smollm2.tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)


def test_answer_ends_at_eos(ours: list[int], smollm2) -> None:
    assert len(ours) < NEW_TOKENS  # stopped at <|im_end|>, not at the budget
    assert "Paris" in smollm2.tokenizer.decode(ours)


def test_optimum_generates_our_greedy_tokens(artifact: Path, chat: list[int], ours: list[int]) -> None:
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(artifact)
    assert "logits_to_keep" not in model.input_names  # an overridable initializer, not a required input
    out = model.generate(torch.tensor([chat]), max_new_tokens=NEW_TOKENS, do_sample=False)
    new = out[0, len(chat):].tolist()
    assert new[-1] == model.generation_config.eos_token_id  # stopped at the model's EOS
    assert new[:-1] == ours


def test_onnxruntime_genai_generates_our_greedy_tokens(artifact: Path, chat: list[int], ours: list[int],
                                                       smollm2) -> None:
    og = pytest.importorskip("onnxruntime_genai")

    model = og.Model(str(artifact))
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(chat) + NEW_TOKENS)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([chat], np.int32))
    new: list[int] = []
    while not generator.is_done():
        generator.generate_next_token()
        new.append(int(generator.get_next_tokens()[0]))
    assert new[-1] == 2  # genai stops at genai_config's eos_token_id (and emits it)
    assert new[:-1] == ours
    tokenizer = og.Tokenizer(model)  # genai's own tokenizer reads the shipped files alike
    assert tokenizer.decode(np.array(ours, np.int32)) == smollm2.tokenizer.decode(ours)
    assert tokenizer.encode(QUESTION).tolist() == smollm2.tokenizer(QUESTION, add_special_tokens=False)["input_ids"]


def test_quantized_cache_graph_gets_no_genai_config(smollm2) -> None:
    """A cache of codes and per-row scales is not one genai manages: no genai_config for it."""
    cfg = smollm2.model.config
    scale = helper.make_tensor_value_info("past_key_values.0.key_scale", TensorProto.FLOAT, [1, 3, None, 1])
    graph = helper.make_model(helper.make_graph([], "g", [scale], []))
    assert genai_config(cfg, smollm2.model.generation_config, graph, "model.onnx") is None


def test_logits_to_keep_default_keeps_every_position() -> None:
    """ONNX Runtime reads the initializer when the input is not fed, and the fed value when it is."""
    import onnxruntime as ort

    keep = helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    start = helper.make_node("Neg", ["logits_to_keep"], ["start"])
    end = helper.make_node("Constant", [], ["end"], value=helper.make_tensor("e", TensorProto.INT64, [1], [2**62]))
    node = helper.make_node("Slice", ["x", "start", "end"], ["y"])
    proto = helper.make_model(helper.make_graph([start, end, node], "g", [x, keep], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    optional_logits_to_keep(proto)
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    values = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": values})[0], values)
    np.testing.assert_array_equal(session.run(None, {"x": values, "logits_to_keep": np.array([2])})[0], values[3:])
