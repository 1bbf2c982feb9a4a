"""The registry API as docs/decoder-graph.md shows it: the worked example (a new block kind, its lowering and a
family describer) runs as written and its graph matches the torch model it describes."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import torch

from retarget.export.decoder import FAMILIES, LOWERINGS, build_decoder
from retarget.export.runtime import OrtCausalLM
from retarget.models.tiny import build_tiny
from retarget.quantize.api import untie_lm_head

DOC = Path(__file__).parents[2] / "docs" / "decoder-graph.md"


def test_worked_example_registers_a_block_and_a_family(tmp_path: Path) -> None:
    code = re.search(r"## Worked example.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the documentation's own example
    try:
        assert LOWERINGS[namespace["SquaredReluMlp"]] and FAMILIES["my_model_type"]
        model = build_tiny("llama")
        untie_lm_head(model)
        model.config.model_type = "my_model_type"
        for layer in model.model.layers:  # the torch model computes what the example's block describes
            mlp = layer.mlp
            mlp.forward = lambda x, m=mlp: m.down_proj(torch.relu(m.up_proj(x)) ** 2)
        proto, _ = build_decoder(model)
        assert "Relu" in {n.op_type for n in proto.graph.node}
        onnx.save_model(proto, str(tmp_path / "model.onnx"))
        ids = torch.randint(0, 1000, (1, 12), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = model(ids).logits[0]
        assert (OrtCausalLM(tmp_path / "model.onnx").logits(ids) - expected).abs().max() < 1e-4
    finally:
        LOWERINGS.pop(namespace.get("SquaredReluMlp"), None)
        FAMILIES.pop("my_model_type", None)
