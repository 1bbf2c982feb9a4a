"""Cost of Q4_1-style float minimums in ONNX Runtime's MatMulNBits on this CPU: a chain of LAYERS 4-bit
K x N projections (blocks of 32, accuracy_level 4), timed per node at batch 1 and 128, for
  sym      no zero points (the int4 *-sym recipes),
  u8zp     uint8 zero points (the int4 *-asym recipes),
  fzp      float zero points (Q4_1 in one node: exact, but ORT's CPU kernel dequantizes the weight each call),
  offset   zero point 0 plus the block-sum term `keep` lowers Q4_1's minimums to (retarget/export/matmulnbits.py).

    python bench/matmulnbits_zero_points.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

K = N = 576  # SmolLM2's hidden size
GROUP, LAYERS = 32, 60


def chain(variant: str, rng: np.random.Generator) -> bytes:
    """A graph of LAYERS MatMulNBits nodes of one VARIANT, each feeding the next."""
    blocks = K // GROUP
    summer = (np.arange(K)[:, None] // GROUP == np.arange(blocks)[None, :]).astype(np.float32)
    inits, nodes, x = [numpy_helper.from_array(summer, "summer")], [], "x"
    for i in range(LAYERS):
        inits += [numpy_helper.from_array(rng.integers(0, 256, (N, blocks, GROUP // 2), dtype=np.uint8), f"b{i}"),
                  numpy_helper.from_array(rng.random(N * blocks, dtype=np.float32) * 0.01, f"s{i}")]
        inputs = [x, f"b{i}", f"s{i}"]
        if variant == "u8zp":
            inits.append(numpy_helper.from_array(rng.integers(0, 256, N * blocks // 2, dtype=np.uint8), f"z{i}"))
            inputs.append(f"z{i}")
        elif variant == "fzp":
            inits.append(numpy_helper.from_array(rng.random(N * blocks, dtype=np.float32) * 15, f"z{i}"))
            inputs.append(f"z{i}")
        y = f"y{i}"
        product = f"int{i}" if variant == "offset" else y
        nodes.append(helper.make_node("MatMulNBits", inputs, [product], domain="com.microsoft", K=K, N=N, bits=4,
                                      block_size=GROUP, accuracy_level=4))
        if variant == "offset":
            inits.append(numpy_helper.from_array(rng.standard_normal((blocks, N), dtype=np.float32) * 0.01, f"m{i}"))
            nodes += [helper.make_node("MatMul", [x, "summer"], [f"sums{i}"]),
                      helper.make_node("MatMul", [f"sums{i}", f"m{i}"], [f"off{i}"]),
                      helper.make_node("Add", [product, f"off{i}"], [y])]
        x = y
    if variant != "offset":
        inits.pop(0)
    graph = helper.make_graph(nodes, variant, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", K])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["m", N])], inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, {LAYERS} x MatMulNBits {K}x{N} g{GROUP}")
    for variant in ("sym", "u8zp", "fzp", "offset"):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(chain(variant, rng), options, providers=["CPUExecutionProvider"])
        for rows, repeats in ((1, 30), (128, 5)):
            x = rng.random((rows, K), dtype=np.float32)
            for _ in range(3):
                session.run(None, {"x": x})
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                session.run(None, {"x": x})
                times.append(time.perf_counter() - start)
            print(f"{variant:7s} batch {rows:3d}: {np.median(times) / LAYERS * 1e6:8.1f} us per projection (median)")


if __name__ == "__main__":
    main()
