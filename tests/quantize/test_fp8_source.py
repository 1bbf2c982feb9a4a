"""DeepSeek-V3 checkpoints with native FP8 128 x 128 blocks (weight + weight_scale_inv): read as source weights,
loaded dequantized into the float model without a GPU, and carried over by the `keep` recipe."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from retarget.errors import RetargetError
from retarget.models.load import load_model
from retarget.models.tiny import build_tiny, save_tiny
from retarget.quantize.fp8 import quantize_fp8
from retarget.quantize.fp8_source import fp8_block_weight, read_fp8_blocks

QUANT = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128], "activation_scheme": "dynamic"}


def _fp8_folder(folder: Path, ue8m0: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """tiny:deepseek-v3 saved like DeepSeek's release: every Linear but lm_head as float8_e4m3fn + float32
    weight_scale_inv per 128 x 128 block. Returns (codes, scale_inv) per module path, as written."""
    save_tiny("deepseek-v3", folder)
    state = load_file(folder / "model.safetensors")
    written = {}
    for name, module in build_tiny("deepseek-v3").named_modules():
        if isinstance(module, nn.Linear) and name != "lm_head":
            qw = quantize_fp8(state[f"{name}.weight"], "block128", ue8m0)
            codes, scale_inv = qw.codes.view(torch.float8_e4m3fn), qw.block_scale()
            state[f"{name}.weight"], state[f"{name}.weight_scale_inv"] = codes, scale_inv
            written[name] = codes, scale_inv
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": QUANT}))
    return written


def _decoded(codes: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    """DeepSeek's decoding, written out: fp8 value x scale_inv of its 128 x 128 block."""
    n, k = codes.shape
    return codes.float() * scale_inv.repeat_interleave(128, 0).repeat_interleave(128, 1)[:n, :k]


@pytest.fixture(scope="module")
def fp8_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    folder = tmp_path_factory.mktemp("fp8") / "ds"
    return folder, _fp8_folder(folder)


def test_fp8_blocks_read_as_source(fp8_folder: tuple[Path, dict]) -> None:
    folder, written = fp8_folder
    source = read_fp8_blocks(folder, {"quantization_config": QUANT})
    assert source.keys() == written.keys() and len(source) > 20
    for name, (codes, scale_inv) in written.items():
        qw = source[name]
        assert (qw.element, qw.group_size, qw.block_rows, qw.scale_format) == ("e4m3", 128, 128, "fp32")
        assert torch.equal(qw.codes, codes.view(torch.uint8)) and torch.equal(qw.block_scale(), scale_inv)
        assert torch.equal(qw.dequantize(), _decoded(codes, scale_inv))


@pytest.mark.parametrize("ue8m0", [False, True])
def test_power_of_two_scales_recorded_as_ue8m0(ue8m0: bool) -> None:
    qw = quantize_fp8(torch.randn(300, 200), "block128", ue8m0)  # 3 x 2 blocks, partial at both edges
    codes, scale_inv = qw.codes.view(torch.float8_e4m3fn), qw.block_scale()
    read = fp8_block_weight(codes, scale_inv, (128, 128))
    assert read.scale_format == ("e8m0" if ue8m0 else "fp32")
    assert torch.equal(read.dequantize(), _decoded(codes, scale_inv))
    with pytest.raises(RetargetError, match=r"the blocks need \[3, 2\]"):
        fp8_block_weight(codes, scale_inv[:2], (128, 128), "w")


def test_fp8_folder_loads_dequantized(fp8_folder: tuple[Path, dict]) -> None:
    folder, written = fp8_folder
    loaded = load_model(str(folder))
    assert loaded.source_weights.keys() == written.keys()
    for name, (codes, scale_inv) in written.items():
        assert torch.equal(loaded.model.get_submodule(name).weight, _decoded(codes, scale_inv))
    reference = build_tiny("deepseek-v3")  # lm_head, norms, router and embeddings stay as saved
    assert torch.equal(loaded.model.lm_head.weight, reference.lm_head.weight)


def test_fp8_folder_without_its_scale_is_refused(fp8_folder: tuple[Path, dict], tmp_path: Path) -> None:
    shutil.copytree(fp8_folder[0], tmp_path / "ds")
    state = load_file(tmp_path / "ds" / "model.safetensors")
    del state["model.layers.0.self_attn.o_proj.weight_scale_inv"]
    save_file(state, tmp_path / "ds" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RetargetError, match="o_proj.weight"):
        load_model(str(tmp_path / "ds"))


def initializer_bytes(graph: onnx.GraphProto, data_type: int = onnx.TensorProto.FLOAT) -> dict[str, int]:
    """Bytes of each initializer of DATA_TYPE, by name."""
    size = onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    return {t.name: size * math.prod(t.dims) for t in graph.initializer if t.data_type == data_type}


@pytest.fixture
def one_torch_thread():
    """ORT and torch alternate step by step in the decode check; on 2 cores torch's second thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("recipe", ["keep", "int4-g128-asym"])
def test_fp8_folder_compiles(fp8_folder: tuple[Path, dict], tmp_path: Path, recipe: str) -> None:
    """`keep` carries the FP8 blocks unchanged into FP8 QDQ (cpu-x86's ORT dequantizes float8e4m3fn), the routed
    experts (decoded for MoE) and MLA's kv_b (split into the absorbed W_UK / W_UV) included; int4 converts
    the decoded weights; either artifact matches the torch model quantized the same way, decode included."""
    from retarget.eval.verify import PARITY_ATOL, verify_artifact
    from retarget.export.onnx_export import export_artifact
    from retarget.hw_profiles import load_profile
    from retarget.plan import plan_recipe
    from retarget.quantize import quantize_
    from retarget.quantize.api import quantized_weights, untie_lm_head

    loaded = load_model(str(fp8_folder[0]))
    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=True, source_element="e4m3")
    assert plan.lowering == ("qdq-fp8" if recipe == "keep" else "matmulnbits")
    assert plan_recipe("auto", load_profile("cpu-x86"), True, source_element="e4m3").weights.name == "int4-g128-asym"
    reference = loaded.model
    untie_lm_head(reference)
    quantized = copy.deepcopy(reference)
    quantize_(quantized, plan.weights, loaded.source_weights)
    qweights = quantized_weights(quantized)
    if recipe == "keep":  # every FP8 block as stored, nothing else quantized
        assert qweights.keys() == loaded.source_weights.keys()
        assert all(torch.equal(qweights[k].codes, qw.codes) and torch.equal(qweights[k].scale, qw.scale)
                   for k, qw in loaded.source_weights.items())
    (tmp_path / "out").mkdir()
    export_artifact(reference, quantized, qweights, plan, tmp_path / "out")
    graph = onnx.load(tmp_path / "out" / "model.onnx", load_external_data=False).graph
    fp8_bytes, float_bytes = initializer_bytes(graph, onnx.TensorProto.FLOAT8E4M3FN), initializer_bytes(graph)
    if recipe == "keep":  # every FP8 element of the checkpoint goes in as one byte once, experts and kv_b too
        # E4M3 codes: float8e4m3fn behind DequantizeLinear; uint8 for routed experts (ONNX's Gather, which picks the
        # experts a step routes to before they are decoded, takes no float8 tensor)
        fp8_bytes |= initializer_bytes(graph, onnx.TensorProto.UINT8)
        written = fp8_folder[1]
        assert sum(fp8_bytes.values()) == sum(codes.numel() for codes, _ in written.values())
        for scope in (".experts.", "kv_b_proj"):  # no float copy: their float32 bytes are the block scales, one per
            blocks = {k: v for k, v in written.items() if scope in k}  # 128-column block of each row
            assert len(blocks) > 2 and sum(v for k, v in fp8_bytes.items() if scope in k) == \
                sum(codes.numel() for codes, _ in blocks.values())
            assert sum(v for k, v in float_bytes.items() if scope in k) == \
                4 * sum(codes.shape[0] * scale_inv.shape[1] for codes, scale_inv in blocks.values())
    else:
        assert not fp8_bytes
    torch.manual_seed(0)
    tokens = torch.randint(0, reference.config.vocab_size, (48,)).tolist()
    verification = verify_artifact(quantized, plan, tmp_path / "out", tokens)[1]
    assert verification["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    assert verification["decode"]["max_abs_logit_diff"]["value"] <= PARITY_ATOL
