"""What bounds a batch-1 decode step of a 4-bit SmolLM2 on this CPU: ONNX Runtime's MatMulNBits kernel, timed
on every projection of one decode step (30 layers of fused QKV, O, fused gate-up and down, then the tied
lm_head), chained so the weights stream from memory as they do in the model, for 4- and 8-bit codes, blocks of
32-128 and accuracy levels 4 (int8 activations) and 0 (fp32 activations, 4-bit only). The variants take turns
round by round, so noise from the shared host falls on all alike.

If the step were bound by memory, 8-bit codes (twice the bytes) would take about twice as long; if by the
kernel's arithmetic, about as long. The rate in weights per second and the bytes per second reached say which.

    python bench/matmulnbits_kernels.py [--threads 2] [--rounds 20]
writes bench/results/matmulnbits-kernels.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from retarget import provenance

HIDDEN, FFN, KV, LAYERS, VOCAB = 576, 1536, 192, 30, 49152  # SmolLM2-135M
RESULTS = Path(__file__).parent / "results"
# (bits, block, accuracy level); 8-bit at level 0 is ~20x slower than the rest and left out
VARIANTS = [(bits, block, level) for level in (4, 0) for bits in (4, 8) for block in (32, 64, 128)
            if (bits, level) != (8, 0)]
# idle sessions' spinning threads steal the cores from the one running (measured: every variant 3x slower)
SPIN = os.environ.get("RETARGET_BENCH_SPIN", "0") != "0"


def projections() -> list[tuple[int, int]]:
    """(K, N) of every MatMulNBits node a decode step runs, in order."""
    layer = [(HIDDEN, HIDDEN + 2 * KV), (HIDDEN, HIDDEN), (HIDDEN, 2 * FFN), (FFN, HIDDEN)]
    return layer * LAYERS + [(HIDDEN, VOCAB)]


def step_graph(bits: int, block: int, level: int, rng: np.random.Generator) -> bytes:
    """One graph running every projection on its own input (asymmetric: uint8 zero points, as our recipes)."""
    inits, nodes, outputs = [], [], []
    for i, (k, n) in enumerate(projections()):
        blocks = -(-k // block)
        codes = rng.integers(0, 256, (n, blocks, block * bits // 8), dtype=np.uint8)
        zero_points = rng.integers(0, 256, n * -(-blocks * bits // 8), dtype=np.uint8)
        inits += [numpy_helper.from_array(codes, f"b{i}"), numpy_helper.from_array(zero_points, f"z{i}"),
                  numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32) * 0.01, f"s{i}")]
        nodes.append(helper.make_node("MatMulNBits", [f"x{k}", f"b{i}", f"s{i}", f"z{i}"], [f"y{i}"],
                                      domain="com.microsoft", K=k, N=n, bits=bits, block_size=block,
                                      accuracy_level=level))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, n]))
    inputs = [helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, [1, k]) for k in (HIDDEN, FFN)]
    graph = helper.make_graph(nodes, "decode_step_projections", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def sessions(threads: int) -> dict[tuple[int, int, int], ort.InferenceSession]:
    """One session per (bits, block, accuracy level) variant."""
    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if SPIN else "0")
    return {(bits, block, level): ort.InferenceSession(step_graph(bits, block, level, rng), options,
                                                       providers=["CPUExecutionProvider"])
            for bits, block, level in VARIANTS}


def interleaved(runs: dict, rounds: int) -> dict[tuple[int, int, int], float]:
    """Median seconds per step of each session, the sessions taking turns every round (round 0 warms up)."""
    rng = np.random.default_rng(1)
    feeds = {f"x{k}": rng.standard_normal((1, k), dtype=np.float32) for k in (HIDDEN, FFN)}
    times: dict = {key: [] for key in runs}
    for r in range(rounds + 1):
        for key, session in runs.items():
            start = time.perf_counter()
            session.run(None, feeds)
            if r:
                times[key].append(time.perf_counter() - start)
    return {key: float(np.median(t)) for key, t in times.items()}


def main() -> None:
    from retarget.runner.bench import read_bandwidth

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    weights = sum(k * n for k, n in projections())
    probe = read_bandwidth(args.threads) / 1e9
    medians = interleaved(sessions(args.threads), args.rounds)
    rows = []
    for (bits, block, level), seconds in medians.items():
        code_bytes = weights * bits / 8 + weights / block * (4 + bits / 8)  # codes, fp32 scales, zero points
        rows.append({"bits": bits, "block": block, "accuracy_level": level,
                     "step_ms": provenance.measured(seconds * 1e3, "ms", statistic="median", rounds=args.rounds,
                                                    threads=args.threads),
                     "gweights_per_s": weights / seconds / 1e9, "gb_per_s": code_bytes / seconds / 1e9})
    load = os.getloadavg()
    meta = {"command": f"python bench/matmulnbits_kernels.py --threads {args.threads} --rounds {args.rounds}",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": provenance.machine(), "weights_per_step": weights, "probe_gb_per_s": probe,
            "load_average_1_5_15_min": load}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "matmulnbits-kernels.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    text = markdown(rows, meta, args.threads)
    (RESULTS / "matmulnbits-kernels.md").write_text(text)
    print(text)


def markdown(rows: list[dict], meta: dict, threads: int) -> str:
    """The table, one row per kernel variant."""
    machine = meta["machine"]
    lines = [f"# MatMulNBits on one SmolLM2-135M decode step ({meta['date']})", "",
             f"`{meta['command']}` on {machine['cpu']} ({machine['cores']} cores, {threads} threads), onnxruntime "
             f"{machine['versions'].get('onnxruntime')}: the {len(projections())} projections of one decode step "
             f"({meta['weights_per_step'] / 1e6:.0f} M weights) in one graph, batch 1, random codes; median over the "
             f"interleaved rounds. Read bandwidth by the same probe as `retarget bench`: "
             f"{meta['probe_gb_per_s']:.1f} GB/s. Load average at the end: "
             f"{meta['load_average_1_5_15_min'][0]:.1f}.", "",
             "| bits | block | accuracy_level | ms per step | G weights/s | GB/s read |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['bits']} | {row['block']} | {row['accuracy_level']} | {row['step_ms']['value']:.2f} | "
                     f"{row['gweights_per_s']:.1f} | {row['gb_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
