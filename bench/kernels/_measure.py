"""How a kernel row is measured: its error against a reference, and its time from CUDA-graph replays (the host's
launch cost out, the L2 flushed before every replay)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def graph_ms(fn: Callable[[], Any], runs: int = 100) -> float | None:
    """Median ms of FN captured once in a CUDA graph and replayed RUNS times, the L2 flushed before each replay
    (what a serving engine's captured decode step sees); None where FN cannot be captured (it syncs the host)."""
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except Exception:  # a host sync inside FN (.item(), .tolist()) invalidates the capture
        torch.cuda.synchronize()
        return None
    flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
    for start, end in events:
        flush.zero_()
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    return float(torch.tensor([s.elapsed_time(e) for s, e in events]).median())


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN if either holds a NaN)."""
    out, ref = out.double(), ref.double()
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))
