"""`retarget bench ARTIFACT`: prefill and decode speed over repeats (percentiles), peak memory, and decode as a
share of this machine's read bandwidth, as JSON a benchmark CI can diff.

Decode at batch 1 reads every weight once per token; the weight bytes read per step are the graph's
initializers less the tables only gathered from (the embedding), plus the KV cache at the mean context. The
bandwidth is measured here by a short numpy probe (threads summing their share of a buffer larger than the
caches), so `decode_share_of_bandwidth` says how close the engine is to the memory limit on this machine.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from retarget import provenance
from retarget.errors import RetargetError
from retarget.runner.artifact import MODEL_FILE, Artifact

PROBE_BYTES = 512 * 2**20  # well past any L3 of a CPU this runs on
PERCENTILES = (10, 50, 90)
ROW_READERS = frozenset({"Gather", "GatherBlockQuantized", "GroupQueryAttention"})  # read a row per token


def read_bandwidth(threads: int, probe_bytes: int = PROBE_BYTES, repeats: int = 5) -> float:
    """Bytes/s THREADS threads read from memory (best of REPEATS sums over a PROBE_BYTES float64 buffer; numpy
    releases the GIL in the reduction, so the threads read in parallel)."""
    chunks = np.array_split(np.ones(probe_bytes // 8), threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = min(best, time.perf_counter() - t0)
    return probe_bytes / best


def weight_bytes_per_token(model_path: Path) -> int:
    """Initializer bytes one decode step reads: all of them but the tables only ROW_READERS read (the embedding
    a Gather takes one row of, the rotary tables GroupQueryAttention takes one position of)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    users: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    return sum(_initializer_bytes(init) for init in graph.initializer
               if not users.get(init.name, set(ROW_READERS)) <= ROW_READERS)


def initializer_bytes(model_path: Path) -> int:
    """Bytes of every initializer of the graph at MODEL_PATH (its weights, wherever they are stored)."""
    import onnx

    return sum(_initializer_bytes(t) for t in onnx.load(str(model_path), load_external_data=False).graph.initializer)


def _initializer_bytes(tensor: Any) -> int:
    """Bytes of one initializer, stored inline or in the external data file (its `length` entry)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        return int(next(e.value for e in tensor.external_data if e.key == "length"))
    return numpy_helper.to_array(tensor).nbytes


def _percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES} | {"best": max(values)}


def bench(artifact: Path, prompt_len: int = 128, decode_tokens: int = 64, repeats: int = 5,
          threads: int | None = None, json_path: Path | None = None) -> dict[str, Any]:
    """Measure ARTIFACT: REPEATS prefills of PROMPT_LEN random tokens, each followed by DECODE_TOKENS greedy
    steps (one warm-up first); writes the result to JSON_PATH too when given."""
    if min(prompt_len, decode_tokens, repeats) < 1:
        raise RetargetError("prompt length, decode tokens and repeats must be at least 1", field="--repeats")
    threads = threads or len(os.sched_getaffinity(0))
    rss_before = _peak_rss()
    opened = Artifact.open(artifact, threads)
    runtime = opened.runtime
    ids = np.random.default_rng(0).integers(100, min(10_000, runtime.vocab_size), (1, prompt_len))
    runtime.start(ids[:, :8], 8 + decode_tokens)  # warm-up: kernels picked, buffers allocated
    prefill, decode = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        logits = runtime.start(ids, prompt_len + decode_tokens)
        prefill.append(prompt_len / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(decode_tokens):
            logits = runtime.step(np.array([[int(logits.argmax())]]))
        decode.append(decode_tokens / (time.perf_counter() - t0))
    bandwidth = read_bandwidth(threads)
    weights = weight_bytes_per_token(Path(artifact) / MODEL_FILE)
    cache = runtime.cache_bytes_per_token() * (prompt_len + decode_tokens / 2)
    decode_p50 = float(np.median(decode))
    machine = provenance.machine()
    details = {"threads": threads, "repeats": repeats, "batch": 1}
    result = {
        "artifact": str(artifact),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average": os.getloadavg()},
        "versions": {**machine["versions"], "numpy": np.__version__,
                     "onnxruntime-genai": _version("onnxruntime-genai")},
        "settings": {"prompt_len": prompt_len, "decode_tokens": decode_tokens, **details},
        "prefill_tokens_per_s": {"unit": "tokens/s", "provenance": "measured", **_percentiles(prefill)},
        "decode_tokens_per_s": {"unit": "tokens/s", "provenance": "measured", **_percentiles(decode)},
        "peak_rss_bytes": {"value": _peak_rss(), "provenance": "measured",
                           "before_load": rss_before, "note": "whole process: Python, torch and the session"},
        "read_bandwidth_bytes_per_s": {"value": bandwidth, "provenance": "measured", "threads": threads,
                                       "probe": f"numpy sum over {PROBE_BYTES >> 20} MiB split across the threads"},
        "bytes_per_decode_token": {"value": weights + cache, "weights": weights, "kv_cache": cache,
                                   "provenance": "derived", "note": "initializers less tables read a row a token, "
                                   "plus the float cache at the mean context"},
        "decode_share_of_bandwidth": {"value": decode_p50 * (weights + cache) / bandwidth, "provenance": "derived",
                                      "note": "median decode tokens/s x bytes per token / read bandwidth"},
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_bench(result: dict[str, Any], console: Any) -> None:
    """The table a user reads after `retarget bench`."""
    from rich.table import Table

    table = Table(title=f"retarget bench: {result['artifact']} ({result['settings']['threads']} threads, "
                        f"{result['settings']['repeats']} repeats; measured on {result['machine']['cpu']})")
    for col in ("", "p10", "p50", "p90", "best"):
        table.add_column(col, justify="right")
    for key, label in (("prefill_tokens_per_s", "prefill tok/s"), ("decode_tokens_per_s", "decode tok/s")):
        table.add_row(label, *(f"{result[key][k]:.1f}" for k in ("p10", "p50", "p90", "best")))
    console.print(table)
    share = result["decode_share_of_bandwidth"]["value"]
    console.print(f"peak RSS {result['peak_rss_bytes']['value'] / 2**20:.0f} MiB; read bandwidth "
                  f"{result['read_bandwidth_bytes_per_s']['value'] / 1e9:.1f} GB/s; "
                  f"{result['bytes_per_decode_token']['value'] / 1e6:.1f} MB read per decode token; "
                  f"decode at {share:.0%} of the bandwidth limit", highlight=False)


def _peak_rss() -> int:
    """Peak resident memory of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
