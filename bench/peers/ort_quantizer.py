"""Peer: ONNX Runtime's own weight-only quantizer (`onnxruntime.quantization.matmul_nbits_quantizer`) applied to
the float ONNX export, in its RTN, GPTQ, HQQ and default (round-to-nearest in C++) modes; and an ONNX Runtime
session over a quantized encoder export, callable like a transformers encoder (for the embedding scorer).

Equal layout with our integer recipes: lm_head is first turned into an 8-bit symmetric MatMulNBits in
blocks of 32 (what our INT4 recipes store for it) with ORT's default quantizer, so every mode then quantizes
only the decoder's Linears; embeddings stay float in both. The GPTQ mode reads the same calibration tokens
as our GPTQ (retarget.quantize.calibration_tokens), as sequences fed through an ORT session.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import numpy_helper

MODES = ("default", "rtn", "gptq", "hqq")
LM_HEAD_OUTPUT = "logits"


def _lm_head_node(proto: onnx.ModelProto) -> str | None:
    return next((n.name for n in proto.graph.node if n.op_type == "MatMul" and LM_HEAD_OUTPUT in n.output), None)


def token_feed(proto_inputs, ids: list[int]) -> dict[str, np.ndarray]:
    """One sequence in an optimum export's input layout (decoder with empty past, or encoder)."""
    n = len(ids)
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, n), np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None], "token_type_ids": np.zeros((1, n), np.int64)}
    names = {i.name: i for i in proto_inputs}
    for name, info in names.items():
        if name.startswith("past_key_values"):
            dims = info.type.tensor_type.shape.dim
            feed[name] = np.zeros((1, dims[1].dim_value, 0, dims[3].dim_value), np.float32)
    return {k: v for k, v in feed.items() if k in names}


class _TokenReader:
    """CalibrationDataReader over token sequences."""

    def __init__(self, proto: onnx.ModelProto, sequences: list[list[int]]) -> None:
        self.feeds = [token_feed(proto.graph.input, seq) for seq in sequences]
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.feeds):
            return None
        self.index += 1
        return self.feeds[self.index - 1]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def _algo_config(mode: str, block_size: int, symmetric: bool, proto: onnx.ModelProto,
                 calibration: list[list[int]] | None):
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    if mode == "default":
        return mnq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, bits=4)
    if mode == "rtn":
        return mnq.RTNWeightOnlyQuantConfig()
    if mode == "hqq":
        if symmetric:
            raise ValueError("ORT's HQQ is asymmetric only")
        return mnq.HQQWeightOnlyQuantConfig(block_size=block_size, bits=4)
    if mode == "gptq":
        if not calibration:
            raise ValueError("ORT GPTQ needs calibration sequences")
        return mnq.GPTQWeightOnlyQuantConfig(calibration_data_reader=_TokenReader(proto, calibration))
    raise ValueError(f"unknown ORT quantizer mode {mode!r}; known: {', '.join(MODES)}")


def quantize_onnx(float_path: Path, out_path: Path, mode: str, block_size: int, symmetric: bool = False,
                  calibration: list[list[int]] | None = None) -> dict[str, float | int | str]:
    """Write OUT_PATH: FLOAT_PATH with lm_head int8 g32 sym, then every other MatMul quantized by ORT's MODE at
    4 bits in blocks of BLOCK_SIZE (SYMMETRIC or with zero points). Returns the size of the result."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    proto = onnx.load(str(float_path))
    head_node = _lm_head_node(proto)
    if head_node is not None:
        others = [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.name != head_node]
        head = mnq.MatMulNBitsQuantizer(proto, algo_config=mnq.DefaultWeightOnlyQuantConfig(
            block_size=32, is_symmetric=True, bits=8), nodes_to_exclude=others)  # nodes_to_include does not restrict
        head.process()
        proto = head.model.model
    # RTN and GPTQ take group size and symmetry from the quantizer itself (INC's weight_config), not the config
    quantizer = mnq.MatMulNBitsQuantizer(proto, bits=4, block_size=block_size, is_symmetric=symmetric,
                                         algo_config=_algo_config(mode, block_size, symmetric, proto, calibration))
    quantizer.process()
    proto = quantizer.model.model
    size = matmulnbits_size(proto)  # before saving: save_model moves the tensors out of PROTO
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=out_path.name + ".data", size_threshold=1024)
    return {"mode": mode, "block_size": block_size, "symmetric": symmetric, **size}


def matmulnbits_size(proto: onnx.ModelProto) -> dict[str, float | int]:
    """Bytes of every MatMulNBits node's stored weight, scales and zero points, and bits per weight over them."""
    inits = {t.name: t for t in proto.graph.initializer}
    nbytes, weights, nodes, float_matmuls = 0, 0, 0, 0
    for node in proto.graph.node:
        if node.op_type == "MatMul" and any(i in inits for i in node.input):
            float_matmuls += 1
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: a.i for a in node.attribute}
        weights += attrs["K"] * attrs["N"]
        nodes += 1
        nbytes += sum(numpy_helper.to_array(inits[i]).nbytes for i in node.input[1:4] if i in inits)
    return {"bytes": nbytes, "weights": weights, "bits_per_weight": 8 * nbytes / max(weights, 1),
            "matmulnbits_nodes": nodes, "float_matmuls": float_matmuls}


class OrtEncoder:
    """`encoder(**tokenized)` -> object with `.last_hidden_state`, from an ONNX Runtime session (optimum
    feature-extraction export), so retarget.eval.embedding scores it like the torch model."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, **enc):
        import torch

        feeds = {k: v.numpy() for k, v in enc.items() if k in self.inputs}
        out = self.session.run(["last_hidden_state"], feeds)[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(out))


def export_encoder(model, out_dir: Path) -> Path:
    """optimum-onnx export of a transformers encoder, task feature-extraction; returns the graph's path."""
    import contextlib
    import io
    import warnings

    from optimum.exporters.onnx import onnx_export_from_model

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        onnx_export_from_model(model, str(out_dir), task="feature-extraction", do_validation=False)
    return out_dir / "model.onnx"


def quantized_artifact(optimum_fp32: Path, out: Path) -> Path:
    """ONNX Runtime's MatMulNBitsQuantizer (its default C++ round-to-nearest, 4-bit asymmetric, blocks of 128;
    lm_head 8-bit blocks of 32 as ours) on the optimum export, at accuracy_level 4."""
    from retarget.export.onnx_export import write_accuracy_variant

    quantize_onnx(optimum_fp32, out / "rtn.onnx", "default", 128)
    return write_accuracy_variant(out / "rtn.onnx", 4, out / "model.onnx")
