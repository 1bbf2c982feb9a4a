"""Which ONNX Runtime execution providers run each operator of a model natively.

CPUExecutionProvider: the registered kernels of the installed onnxruntime (measured here). The others: the
published operator lists stored in ep_ops.json (URL, commit and read date per provider). A node whose op a
provider lacks is assigned by ONNX Runtime to the next provider of the session, CPU last ("falls back").
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("ep_ops.json")
CPU = "CPUExecutionProvider"
ANY = "*"


@dataclass(frozen=True)
class Provider:
    """One execution provider's operator list: domain ('ai.onnx', 'com.microsoft', '*') -> op types."""

    name: str
    short: str
    devices: str
    ops: dict[str, frozenset[str]]
    complete: frozenset[str]       # domains whose list was read in full ('*': all)
    sources: tuple[dict[str, str], ...]
    note: str = ""

    def verdict(self, domain: str, op: str) -> str:
        """'native', 'absent' (the provider does not run it) or 'unknown' (its list was not checked)."""
        if op in self.ops.get(domain, ()) or op in self.ops.get(ANY, ()):
            return "native"
        return "absent" if domain in self.complete or ANY in self.complete else "unknown"


def _domain(name: str) -> str:
    return name or "ai.onnx"


@cache
def _cpu() -> Provider:
    """The CPU provider from the installed onnxruntime's kernel registry."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_opkernel_def

    ops: dict[str, set[str]] = collections.defaultdict(set)
    for k in get_all_opkernel_def():
        if k.provider == CPU:
            ops[_domain(k.domain)].add(k.op_name)
    return Provider(CPU, "CPU", "any CPU", {d: frozenset(v) for d, v in ops.items()}, frozenset({ANY}),
                    ({"url": "onnxruntime.capi.onnxruntime_pybind11_state.get_all_opkernel_def()",
                      "what": f"registered kernels of the installed onnxruntime {onnxruntime.__version__}"},))


@cache
def _data() -> dict[str, Any]:
    return json.loads(DATA.read_text())


@cache
def providers() -> dict[str, Provider]:
    """Every provider: CPU (installed) first, then the published lists."""
    out = {CPU: _cpu()}
    for name, p in _data()["providers"].items():
        out[name] = Provider(name, p["short"], p["devices"], {d: frozenset(v) for d, v in p["ops"].items()},
                             frozenset(p["complete"]), tuple(p["sources"]), p.get("note", ""))
    return out


def providers_for_vendor(vendor: str) -> list[str]:
    """The providers a deployment on a device of VENDOR would use (CPU always last)."""
    return [*_data()["device_providers"].get(vendor, []), CPU]


def op_types(model: Any) -> collections.Counter[tuple[str, str]]:
    """(domain, op type) -> node count of an ONNX model (path or ModelProto), subgraphs included; the weights
    are not loaded."""
    import onnx

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            counts[(_domain(node.domain), node.op_type)] += 1
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    return counts


def describe(domain: str, op: str, names: list[str] | None = None) -> str:
    """One line, e.g. 'QMoE: native on CUDA and CPU; falls back to CPU on CANN; not checked on DirectML'."""
    table = providers()
    chosen = [table[n] for n in (names or table)]
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for p in chosen:
        groups[p.verdict(domain, op)].append(p.short)
    cpu = table[CPU].verdict(domain, op) == "native"
    parts = []
    if groups["native"]:
        parts.append(f"native on {_join(groups['native'])}")
    if groups["absent"]:
        parts.append(f"{'falls back to CPU' if cpu else 'no kernel'} on {_join(groups['absent'])}")
    if groups["unknown"]:
        parts.append(f"not checked on {_join(groups['unknown'])}")
    return f"{op}: " + "; ".join(parts)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def coverage(model: Any, names: list[str] | None = None) -> dict[str, Any]:
    """For a compiled model (path, ModelProto, or a {(domain, op): count} mapping): per op type its node count
    and each provider's verdict, per provider the share of nodes it runs natively and the ops that leave it,
    plus where each list comes from. NAMES: providers to report (default all)."""
    counts = model if isinstance(model, collections.abc.Mapping) else op_types(model)
    table = providers()
    chosen = [table[n] for n in (names or table)]
    total = sum(counts.values())
    ops = [{"domain": d, "op": op, "nodes": n, "verdicts": {p.name: p.verdict(d, op) for p in chosen},
            "line": describe(d, op, [p.name for p in chosen])}
           for (d, op), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    summary = {}
    for p in chosen:
        native = sum(o["nodes"] for o in ops if o["verdicts"][p.name] == "native")
        summary[p.name] = {
            "native_nodes": native, "nodes": total,
            "leaves": sorted(o["op"] for o in ops if o["verdicts"][p.name] == "absent"),
            "not_checked": sorted(o["op"] for o in ops if o["verdicts"][p.name] == "unknown")}
    return {"provenance": "published operator lists (CPU: installed onnxruntime's kernel registry)",
            "retrieved": _data()["retrieved"], "ops": ops, "providers": summary,
            "sources": {p.name: {"sources": list(p.sources), "note": p.note} for p in chosen}}
