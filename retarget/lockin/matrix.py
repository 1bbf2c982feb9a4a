"""The lock-in matrix: LI, recipes and attribution for models x devices, as one JSON-able dict."""

from __future__ import annotations

import math
import multiprocessing
import os
from typing import Any

from retarget.hw_profiles import list_profiles, load_profile
from retarget.hw_profiles.schema import HardwareProfile
from retarget.lockin.attribution import shapley
from retarget.lockin.index import MODEL_NAME, Evaluator, ModelVariants, cell_dict, choose_home, lock_in, per_device
from retarget.lockin.recipe import MAX_DEVICES, Workload, get_workload
from retarget.lockin.variants import features_of, reference
from retarget.lockin.whatif import apply_all
from retarget.models.registry import registry_entries
from retarget.models.spec import ModelSpec
from retarget.perf.model import PREFILL_CHUNK, USABLE_MEMORY
from retarget.provenance import predicted

Overrides = dict[str | None, dict[str, str]] | None

ASSUMPTIONS = [
    "T = tokens/s per device of the best recipe (recipe.py rules), predicted by retarget.perf (engine 'tuned')",
    "devices: the smallest power of two the model fits on (weights + KV cache + activations within "
    f"{USABLE_MEMORY:.0%} of memory), tensor parallel with expert-parallel MoE, at most {MAX_DEVICES}; "
    "devices without an interconnect run one device only",
    "KV cache in BF16 (FP16 where the device lacks BF16); LM head in BF16 for 8/4-bit formats",
    f"prefill in chunks of <= {PREFILL_CHUNK} tokens; decode costed at a full 4k context",
    "R(M): M with every model feature neutralised (variants.py); active parameters kept",
    "attribution: exact Shapley values over the features the model and device pair has",
]


def _home(spec: ModelSpec, mv: ModelVariants, ev: Evaluator, by_id: dict[str, HardwareProfile],
          overrides: Overrides) -> tuple[HardwareProfile, str]:
    """SPEC's home device and why: the registry's stated hardware, else the best fit over all bundled profiles
    (index.choose_home). Either way the device is the target with that id when the run has it, else the
    bundled profile with the run's what-if overrides: the choice is fixed, its evaluation follows the
    what-if."""
    entry = registry_entries().get(spec.name)
    if entry is not None and entry.home_hardware:
        home_id, why = entry.home_hardware, "stated in the model registry"
    else:
        bundled = list_profiles()
        chosen, why = choose_home(mv, bundled, ev, frozenset(p.id for p in bundled if by_id.get(p.id) == p))
        home_id = chosen.id
    if home_id in by_id:
        return by_id[home_id], why
    return apply_all([load_profile(home_id)], overrides or {})[0], why


def _li_cell(mv: ModelVariants, g: HardwareProfile, h: HardwareProfile, ev: Evaluator,
             attribute: bool) -> dict[str, Any]:
    m, r = ev.recipe(mv.spec, mv.key(frozenset()), h), ev.recipe(mv.variant(mv.ref_features),
                                                                   mv.key(mv.ref_features), h)
    m_g = ev.home(mv.spec, mv.key(frozenset()), g)
    r_g = ev.home(mv.variant(mv.ref_features), mv.key(mv.ref_features), g)
    li = lock_in(per_device(m_g), per_device(m), per_device(r_g), per_device(r))
    phase = ev.workload.phase
    out: dict[str, Any] = {
        "li": predicted(li, "ratio", MODEL_NAME),
        "recipe": cell_dict(m, phase),
        "reference_recipe": cell_dict(r, phase),
        # M fits h only quantised: LI then compares quantised M with R(M) at R(M)'s own recipe
        "quantised_to_fit": m.quantised_to_fit,
    }
    if attribute and li is not None:
        out["attribution"] = shapley(mv, g, h, ev) if mv.features else {"total": 0.0, "shares": {}, "players": []}
    return out


def _summary(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Geometric mean LI over the devices where it is defined, and the mean Shapley share per feature."""
    logs = [math.log(c["li"]["value"]) for c in cells.values() if c["li"]["value"] is not None]
    shares: dict[str, float] = {}
    attributed = [c["attribution"] for c in cells.values() if "shares" in c.get("attribution", {})]
    for a in attributed:
        for f, v in a["shares"].items():
            shares[f] = shares.get(f, 0.0) + v / len(attributed)
    return {
        "geomean_li": predicted(math.exp(sum(logs) / len(logs)) if logs else None, "ratio", MODEL_NAME),
        "worst_li": predicted(max((c["li"]["value"] for c in cells.values() if c["li"]["value"]), default=None),
                              "ratio", MODEL_NAME),
        "devices_with_li": len(logs),
        "mean_log_shares": shares,
        "attributed_devices": len(attributed),
    }


def model_row(spec: ModelSpec, profiles: list[HardwareProfile], ev: Evaluator,
              home: HardwareProfile | None = None, attribute: bool = True,
              overrides: Overrides = None) -> dict[str, Any]:
    """One model's row: home device, features, reference, and a cell per profile."""
    mv = ModelVariants.of(spec, max(ev.workload.ctx, ev.workload.prompt_len))
    by_id = {p.id: p for p in profiles}
    g, why = (home, "given") if home is not None else _home(spec, mv, ev, by_id, overrides)
    ref = reference(spec)
    cells = {h.id: _li_cell(mv, g, h, ev, attribute) for h in profiles}
    return {
        "name": spec.name,
        "source": entry.source_url if (entry := registry_entries().get(spec.name)) else spec.source,
        "home": g.id,
        "home_why": why,
        "home_recipe": cell_dict(ev.home(spec, mv.key(frozenset()), g), ev.workload.phase),
        "features": list(mv.features),
        "native_format": dict(spec.native_format),
        "params_total_b": spec.params_total / 1e9,
        "params_active_b": spec.params_active / 1e9,
        "reference": {"name": ref.name, "params_active_b": ref.params_active / 1e9,
                      "params_total_b": ref.params_total / 1e9, "attention": ref.attention_kind},
        "cells": cells,
        "summary": _summary(cells),
    }


def profile_summary(p: HardwareProfile) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "vendor": p.vendor, "family": p.family, "memory_gb": p.memory_gb,
            "mem_bw_gb_s": p.mem_bw_gb_s, "interconnect_gb_s": p.interconnect_gb_s,
            "peak_tflops": dict(p.peak_tflops), "native_formats": list(p.native_formats),
            "compiler_target": p.compiler_target, "fp8_variant": p.fp8_variant, "sources": list(p.sources),
            "overridden": sorted(
                k for k, v in p.provenance.items() if v.kind == "override")}


def lockin_for_spec(spec: ModelSpec, profiles: list[HardwareProfile], workload: str = "decode-b1",
                    home: HardwareProfile | None = None, attribute: bool = True) -> dict[str, Any]:
    """LI, recipe, predicted speed and memory of SPEC on every profile in PROFILES (one model's row), for
    the compile report. HOME defaults to the registry's stated device, else the best fit of all bundled
    profiles."""
    ev = Evaluator(get_workload(workload))
    return {"workload": vars(ev.workload), "row": model_row(spec, profiles, ev, home, attribute)}


def _rows(args: tuple[list[ModelSpec], list[HardwareProfile], Workload, bool, Overrides]) -> list[dict[str, Any]]:
    specs, profiles, workload, attribute, overrides = args
    ev = Evaluator(workload)
    return [model_row(spec, profiles, ev, attribute=attribute, overrides=overrides) for spec in specs]


def _workers(n_models: int) -> int:
    """Processes to use: one per CPU (at most 4) for a big matrix, else 1."""
    if n_models < 8:
        return 1
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def lockin_matrix(specs: list[ModelSpec], profiles: list[HardwareProfile], workload: Workload,
                  attribute: bool = True, overrides: Overrides = None) -> dict[str, Any]:
    """The whole matrix: one row per model over PROFILES (already overridden; OVERRIDES, as from
    whatif.split_overrides, are applied to home devices outside PROFILES). Models are independent, so a big
    matrix is split over spawned worker processes (rows come back in order; spawned, because a fork of a process
    whose other threads hold a lock can hang in the child)."""
    workers = _workers(len(specs))
    if workers == 1:
        rows = _rows((specs, profiles, workload, attribute, overrides))
    else:
        # interleave by cost: the models with the most features go to different workers
        order = sorted(range(len(specs)), key=lambda i: -len(features_of(specs[i])))
        parts = [[order[j] for j in range(w, len(order), workers)] for w in range(workers)]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_rows, [([specs[i] for i in part], profiles, workload, attribute, overrides)
                                       for part in parts])
        by_index = {i: row for part, res in zip(parts, results, strict=True) for i, row in zip(part, res, strict=True)}
        rows = [by_index[i] for i in range(len(specs))]
    return {
        "model": MODEL_NAME,
        "definition": "LI(M, h) = [T(M, g) / T(M, h)] / [T(R(M), g) / T(R(M), h)]",
        "workload": vars(workload),
        "assumptions": ASSUMPTIONS,
        "profiles": [profile_summary(p) for p in profiles],
        "models": rows,
    }
