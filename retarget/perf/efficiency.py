"""Efficiency factors per (device family, op class) and per engine, read from efficiency.yaml."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from retarget.errors import RetargetError

EFFICIENCY_FILE = Path(__file__).parent / "efficiency.yaml"
OP_CLASSES = ("gemm", "moe", "head", "attention", "ssm")
# engine entry keys that are choices, not factors
KERNEL_ATTRIBUTES = ("gqa_kernel_group_sizes", "parallelisms", "tokens_per_forward", "pipeline_copies",
                     "narrow_float_peaks", "admits_what_fits", "matmul_peak", "kv_share_of_free",
                     "micro_batched_pipeline", "dense_experts", "memory_fraction", "max_num_seqs",
                     "batch_defaults", "host_issued", "block_fp8_vs_bf16", "matvec_tokens", "matmul_token_tile")
# the engine's fixed costs (an entry without one pays none)
ENGINE_COSTS = ("overhead_us_per_layer", "moe_overhead_us_per_expert", "overhead_us_per_step", "stage_hop_us",
                "stream_gb_s_per_fp32_tflop", "prefill_overhead_us_per_layer", "moe_tile_tokens")


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of peak for one (family, engine), and fixed costs."""

    gemm: float
    moe: float
    head: float
    attention: float
    ssm: float
    memory: float
    interconnect: float
    collective_latency_us: float
    internode_latency_us: float
    overhead_us_per_layer: float
    moe_overhead_us_per_expert: float = 0.0  # per MoE layer, per expert (routed top-k + shared) a token visits
    overhead_us_per_step: float = 0.0  # the serving engine's own work per forward step (schedule, prepare, sample)
    stage_hop_us: float = 0.0  # pipeline (layer split) hand-off per stage boundary per step, beyond the link latency
    stream_gb_s_per_fp32_tflop: float = 0.0  # 0 = off; else memory streams also pay bytes / (this x fp32 TFLOPS)
    prefill_overhead_us_per_layer: float = 0.0  # first-token fixed cost: per layer, once per prefill (request setup)
    # 0 = off; else an expert's tiled matmul pays a fixed cost per weight per forward worth this many tokens of
    # multiply-adds, so n tokens per expert run at n / (n + this) of the per-token rate
    moe_tile_tokens: float = 0.0
    gemm_memory: float = 1.0  # the dense GEMMs' weight streaming as a share of `memory` (their own kernels)
    fp16_accumulate: bool = False
    narrow_float_gemm: float = 1.0  # share of the 16-bit GEMM efficiency reached at an 8-bit/4-bit float peak
    # block-scaled FP8 matmuls at this share of the 16-bit rate (the engine's block kernels; None: the FP8 rate)
    block_fp8_vs_bf16: float | None = None
    # query heads per KV head that the decode attention kernel serves with one cache read (None: every size); a
    # GQA/MQA layer of another size reads its KV head's cache once per query head
    gqa_kernel_group_sizes: tuple[int, ...] | None = None
    parallelisms: tuple[str, ...] | None = None  # how the engine splits a model across devices (None: every way)
    pipeline_copies: int = 1  # prefill forwards in flight at once across a layer split (1: one at a time)
    narrow_float_peaks: bool = True  # whether its matmuls can run at a device's FP8/FP4 peak
    matmul_peak: str | None = None  # the one peak every matmul runs at, else fp32 (None: the format's best)
    kv_share_of_free: float = 0.0  # 0: the KV pool is memory_fraction of the device less weights and activations
    memory_fraction: float | None = None  # share of the device the engine takes (None: model.USABLE_MEMORY)
    # across pipeline stages a step's sequences run as one micro-batch per stage, all in flight at once
    micro_batched_pipeline: bool = False
    dense_experts: bool = False  # every expert runs every token (static shapes), its output masked by the routing
    # kernels issued one by one from the host each step (no CUDA graphs): the device's work runs while the host
    # issues the next kernels, so a step takes the longer of the two, not their sum
    host_issued: bool = False
    # forwards of up to matvec_tokens tokens run matrix-vector kernels (no tiles); dense matmuls over more run a
    # tiled kernel whose multiply-adds cover the tokens padded up to whole tiles of matmul_token_tile (0: no padding)
    matvec_tokens: int = 0
    matmul_token_tile: int = 0

    def compute(self, op_class: str) -> float:
        return getattr(self, op_class)

    def streaming(self, op_class: str) -> float:
        """Share of the memory bandwidth OP_CLASS's kernels reach (the dense GEMMs' own share of it, capped)."""
        return min(1.0, self.memory * self.gemm_memory) if op_class == "gemm" else self.memory


@cache
def _table() -> dict[str, Any]:
    return yaml.safe_load(EFFICIENCY_FILE.read_text())


def reload() -> None:
    """Read efficiency.yaml afresh on next use (after calibration rewrote it)."""
    _table.cache_clear()


def engines() -> list[str]:
    """Known engine names."""
    return list(_table()["engines"])


def own_entry(engine: str) -> dict[str, Any]:
    """ENGINE's entry in efficiency.yaml as written (nothing inherited)."""
    return dict(_table()["engines"].get(engine, {}))


def default_engine(family: str) -> str:
    """The engine `predict` applies on a device FAMILY unless told otherwise (efficiency.yaml `family_engines`)."""
    return str(_table().get("family_engines", {}).get(family, "tuned"))


def engine_and_parallelism(family: str, engine: str | None = None, parallelism: str | None = None) -> tuple[str, str]:
    """The engine and parallelism `predict` applies on a device FAMILY: those given, else the family's default
    engine and the first way that engine splits a model across devices (tp where it states none)."""
    engine = engine or default_engine(family)
    ways = kernel_attributes(engine).get("parallelisms")
    return engine, parallelism or (str(ways[0]) if ways else "tp")


def engine_entry(engine: str) -> dict[str, float]:
    """The factors efficiency.yaml records for ENGINE (its kernel attributes left out); an engine that
    `inherits` another takes that engine's factors and overrides the ones it states."""
    own = own_entry(engine)
    parent = engine_entry(own.pop("inherits")) if "inherits" in own else {}
    return {**parent, **{k: v for k, v in own.items() if k not in KERNEL_ATTRIBUTES}}


def kernel_attributes(engine: str) -> dict[str, object]:
    """ENGINE's kernel attributes in efficiency.yaml (KERNEL_ATTRIBUTES it sets or inherits)."""
    own = own_entry(engine)
    parent = kernel_attributes(own["inherits"]) if "inherits" in own else {}
    return {**parent, **{k: v for k, v in own.items() if k in KERNEL_ATTRIBUTES}}


def lineage(engine: str) -> list[str]:
    """ENGINE and the engines it inherits from, nearest first (a kernel list naming a parent covers it too)."""
    parent = own_entry(engine).get("inherits")
    return [engine, *(lineage(parent) if parent else [])]


def efficiency(
    family: str, engine: str = "tuned", engine_factors: dict[str, float] | None = None
) -> Efficiency:
    """Factors for a device FAMILY under ENGINE; ENGINE_FACTORS replaces the engine's entry (calibration)."""
    table = _table()
    if engine not in table["engines"] and engine_factors is None:
        raise RetargetError(f"unknown engine; known: {', '.join(table['engines'])}", field="engine")
    base = {**table["default"], **table["families"].get(family, {})}
    eng = engine_factors if engine_factors is not None else engine_entry(engine)
    kernels = kernel_attributes(engine)
    line = lineage(engine)
    portable = table.get("portable_kernel_factor", {}).get(family, 1.0) if set(line) & set(table.get(
        "portable_kernel_engines", [])) else 1.0
    scaled = {k: base[k] * eng.get("compute", 1.0) * portable for k in OP_CLASSES}
    scaled["moe"] *= eng.get("moe_compute", 1.0)
    scaled["attention"] *= eng.get("attention_compute", 1.0)
    return Efficiency(
        **scaled,
        memory=base["memory"] * eng.get("memory", 1.0),
        interconnect=base["interconnect"],
        collective_latency_us=eng.get("collective_latency_us", base["collective_latency_us"]),  # calibration's trial
        internode_latency_us=eng.get("internode_latency_us", base["internode_latency_us"]),
        **{cost: eng.get(cost, 0.0) for cost in ENGINE_COSTS},
        gemm_memory=eng.get("gemm_memory", 1.0),
        fp16_accumulate=bool(set(line) & set(table.get("fp16_accumulate_engines", []))),
        narrow_float_gemm=table.get("narrow_float_gemm_factor", {}).get(family, 1.0),
        gqa_kernel_group_sizes=(None if (sizes := kernels.get("gqa_kernel_group_sizes")) is None
                                else tuple(sizes)),
        parallelisms=None if (ways := kernels.get("parallelisms")) is None else tuple(ways),
        pipeline_copies=int(kernels.get("pipeline_copies", 1)),
        narrow_float_peaks=bool(kernels.get("narrow_float_peaks", True)),
        matmul_peak=None if (fixed := kernels.get("matmul_peak")) is None else str(fixed),
        kv_share_of_free=float(kernels.get("kv_share_of_free", 0.0)),
        memory_fraction=None if (share := kernels.get("memory_fraction")) is None else float(share),
        micro_batched_pipeline=bool(kernels.get("micro_batched_pipeline", False)),
        dense_experts=bool(kernels.get("dense_experts", False)),
        host_issued=bool(kernels.get("host_issued", False)),
        block_fp8_vs_bf16=None if (share := kernels.get("block_fp8_vs_bf16")) is None else float(share),
        matvec_tokens=int(kernels.get("matvec_tokens", 0)),
        matmul_token_tile=int(kernels.get("matmul_token_tile", 0)),
    )


@dataclass(frozen=True)
class MultiNode:
    """How tensor parallelism crosses nodes: devices per node, NIC bandwidth as a share of the device link."""

    devices_per_node: int
    nic_per_link: float


def multi_node() -> MultiNode:
    """The multi-node assumptions of efficiency.yaml."""
    return MultiNode(**_table()["multi_node"])


def capped(eff: Efficiency) -> Efficiency:
    """Fractions above 1 are clipped (a fitted scale cannot beat the datasheet)."""
    return replace(eff, **{k: min(getattr(eff, k), 1.0) for k in (*OP_CLASSES, "memory", "interconnect")})
