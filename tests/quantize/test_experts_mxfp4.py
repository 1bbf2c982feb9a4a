"""gpt-oss checkpoints with native MXFP4 experts: the blocks are read as source weights that agree with
transformers' own MXFP4 decoder, and the `keep` recipe carries them over unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

from retarget.models.load import load_model
from retarget.models.tiny import build_tiny, save_tiny
from retarget.quantize import KeepSourceConfig, quantization_report, quantize_, quantized_weights
from retarget.quantize.experts import expert_matrix, fused_experts
from retarget.quantize.fp4 import quantize_mxfp4_weight
from retarget.quantize.mxfp4_source import pack_mxfp4, read_mxfp4_experts


def _mxfp4_folder(folder: Path) -> dict[str, torch.Tensor]:
    """tiny:gpt-oss saved like OpenAI's checkpoint: experts as *_blocks / *_scales, quant_method mxfp4. Returns
    transformers' own dequantization of each fused parameter ([E, in, out])."""
    save_tiny("gpt-oss", folder)
    state = load_file(folder / "model.safetensors")
    decoded = {}
    for path, (module, layout) in fused_experts(build_tiny("gpt-oss")).items():
        for matrix in layout.matrices:
            count = getattr(module, matrix).shape[0]
            blocks, scales = pack_mxfp4([quantize_mxfp4_weight(expert_matrix(module, matrix, e)) for e in range(count)])
            del state[f"{path}.{matrix}"]
            state[f"{path}.{matrix}_blocks"], state[f"{path}.{matrix}_scales"] = blocks, scales
            decoded[f"{path}.{matrix}"] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (folder / "config.json").write_text(json.dumps(config))
    return decoded


def test_mxfp4_experts_read_as_source_and_kept(tmp_path: Path) -> None:
    decoded = _mxfp4_folder(tmp_path / "gpt-oss-mxfp4")
    source = read_mxfp4_experts(tmp_path / "gpt-oss-mxfp4")
    config = build_tiny("gpt-oss").config
    assert len(source) == 2 * config.num_local_experts * config.num_hidden_layers
    for name, value in decoded.items():  # transformers' decoder and ours agree bit for bit
        for e in range(value.shape[0]):
            qw = source[f"{name}.{e}"]
            assert qw.element == "e2m1" and qw.scale_format == "e8m0" and qw.group_size == 32
            assert torch.equal(qw.dequantize(), value[e].T)
    loaded = load_model(str(tmp_path / "gpt-oss-mxfp4"))
    assert loaded.source_weights.keys() == source.keys()
    model = loaded.model
    quantize_(model, KeepSourceConfig(), loaded.source_weights)
    kept = quantized_weights(model)
    for key, qw in source.items():
        assert torch.equal(kept[key].codes, qw.codes) and torch.equal(kept[key].scale, qw.scale)
        path, matrix, e = key.rsplit(".", 2)
        assert torch.equal(expert_matrix(model.get_submodule(path), matrix, int(e)), qw.dequantize())
    assert quantization_report(model).quantized_matrices == len(source)  # no other source blocks: Linears float
