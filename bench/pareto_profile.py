"""What limits decode: ONNX Runtime's profiler over greedy decode steps of one artifact, per-node kernel time by
operator against the bytes each node reads, and the step time no node accounts for (framework overhead).

    python bench/pareto_profile.py ARTIFACT [--json FILE]    # prints the table, writes the JSON

Per step: the model_run event's duration; the kernel events inside it summed by op type; the weight bytes the
op's initializers hold (read once a step at batch 1), so bytes / kernel time is the bandwidth the op reaches,
compared with retarget.runner.bench's probe of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retarget import provenance  # noqa: E402
from retarget.export.runtime import OrtCausalLM, session_options  # noqa: E402
from retarget.runner.bench import ROW_READERS, _initializer_bytes, read_bandwidth  # noqa: E402

PROMPT, STEPS = 128, 32


class ProfiledLM(OrtCausalLM):
    """OrtCausalLM whose session records ORT's profile (prefix PREFIX)."""

    def __init__(self, path: Path, prefix: str, threads: int | None = None) -> None:
        super().__init__(path, threads)
        opts = session_options(threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = prefix
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._binding = self.session.io_binding()


def node_weight_bytes(path: Path) -> dict[str, int]:
    """Initializer bytes each node reads from memory a decode step (by node name): an initializer shared by
    several nodes counts once, at its first; tables a step reads one row of (ROW_READERS) count nothing."""
    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {t.name: _initializer_bytes(t) for t in graph.initializer}
    out = {}
    for node in graph.node:
        reads = [] if node.op_type in ROW_READERS else [i for i in node.input if i in sizes]
        out[node.name] = sum(sizes.pop(i) for i in dict.fromkeys(reads))
    return out


def profile(path: Path, threads: int | None = None) -> dict:
    """Per decode step: total time, kernel time by op type and the bandwidth weight-reading ops reach."""
    with tempfile.TemporaryDirectory() as tmp:
        lm = ProfiledLM(path, f"{tmp}/ort", threads)
        ids = np.random.default_rng(0).integers(100, 10_000, (1, PROMPT))
        logits = lm.start(ids, PROMPT + STEPS + 1)
        for _ in range(STEPS):
            logits = lm.step(np.array([[int(logits.argmax())]]))
        events = json.loads(Path(lm.session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"][1:]  # the first is the prefill
    weights = node_weight_bytes(path)
    by_op: dict[str, dict[str, float]] = defaultdict(lambda: {"us": 0.0, "nodes": 0, "bytes": 0})
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for event in kernels:
        if any(r["ts"] <= event["ts"] <= r["ts"] + r["dur"] for r in runs):
            entry = by_op[event["args"]["op_name"]]
            entry["us"] += event["dur"] / len(runs)
            entry["nodes"] += 1 / len(runs)
            entry["bytes"] += weights.get(event["name"].removesuffix("_kernel_time"), 0) / len(runs)
    step_us = float(np.median([r["dur"] for r in runs]))
    bandwidth = read_bandwidth(threads or lm.session.get_session_options().intra_op_num_threads)
    ops = {op: {**v, "share_of_step": v["us"] / step_us,
                "gb_per_s": v["bytes"] / v["us"] / 1e3 if v["bytes"] else None}
           for op, v in sorted(by_op.items(), key=lambda kv: -kv[1]["us"])}
    kernel_us = sum(v["us"] for v in ops.values())
    weight_bytes = sum(v["bytes"] for v in ops.values())
    return {"artifact": str(path), "machine": provenance.machine(), "steps": len(runs), "prompt_len": PROMPT,
            "step_us_median": step_us, "kernel_us": kernel_us, "outside_kernels_us": step_us - kernel_us,
            "weight_bytes_per_step": weight_bytes, "read_bandwidth_gb_per_s": bandwidth / 1e9,
            "bandwidth_bound_step_us": weight_bytes / bandwidth * 1e6, "load_average": os.getloadavg(), "ops": ops}


def markdown(result: dict) -> str:
    lines = [f"Decode step of `{result['artifact']}` (ORT profiler, {result['steps']} steps after a "
             f"{result['prompt_len']}-token prompt, {result['machine']['cpu']}): median step "
             f"{result['step_us_median']:.0f} us, kernels {result['kernel_us']:.0f} us, outside kernels "
             f"{result['outside_kernels_us']:.0f} us; the {result['weight_bytes_per_step'] / 1e6:.1f} MB of weights at "
             f"the probe's {result['read_bandwidth_gb_per_s']:.1f} GB/s would take "
             f"{result['bandwidth_bound_step_us']:.0f} us. Weight MB: the initializers a running node takes "
             f"directly (4-bit codes; fp16 scales ORT casts to fp32 once at load are folded away and not counted). "
             f"Load average {result['load_average'][0]:.1f} on {result['machine']['cores']} cores while profiling.",
             "",
             "| op | nodes/step | us/step | share of step | weight MB | GB/s reached |",
             "|---|---:|---:|---:|---:|---:|"]
    for op, v in result["ops"].items():
        reached = "" if v["gb_per_s"] is None else f"{v['gb_per_s']:.1f}"
        lines.append(f"| {op} | {v['nodes']:.0f} | {v['us']:.0f} | {v['share_of_step']:.1%} | "
                     f"{v['bytes'] / 1e6:.1f} | {reached} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    out = profile(args.artifact / "model.onnx" if args.artifact.is_dir() else args.artifact, args.threads)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(out))
