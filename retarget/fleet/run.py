"""`retarget fleet`: apply the constraints, rank the plans, build the bloc view, print a table and write
fleet.json, fleet.csv and fleet.html into an output folder atomically."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from retarget.fleet.blocs import bloc_matrix
from retarget.fleet.constraints import Constraints, FleetWorkload
from retarget.fleet.costs import Assumptions
from retarget.fleet.facts import BLOCS, device_facts, facts_for, model_facts, quality_index, tdp
from retarget.fleet.plans import COST_MODEL, build_plans, cost_brief, ranked
from retarget.hw_profiles import list_profiles, load_profile
from retarget.models.registry import get_spec, load_registry, registry_entries
from retarget.outdir import atomic_dir, check_writable
from retarget.perf.confidence import validated_profiles

BLOC_FLOOR = 65.0  # default quality floor of the bloc view (MMLU-Pro %)
NO_FACTS = "no fleet facts (country of design, bloc, export status, price) for this device"


def _num(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def device_table(profiles: list[Any], a: Assumptions) -> list[dict[str, Any]]:
    """Per device: the facts a buyer compares, and whether the perf model has validation rows for it."""
    out = []
    for p in profiles:
        f = facts_for(p)
        power = tdp(p)
        out.append({"id": p.id, "name": p.name, "vendor": p.vendor, "country": f.country, "bloc": f.bloc,
                    "foundry": f.foundry.model_dump() if f.foundry else None,
                    "export_control": f.export_control.model_dump(),
                    "tdp_w": power.model_dump() if power else None,
                    "rent_usd_per_hour": f.rent_usd_per_hour.model_dump() if f.rent_usd_per_hour else None,
                    "purchase_usd": f.purchase_usd.model_dump() if f.purchase_usd else None,
                    "validated": p.id in validated_profiles()})
    return out


def model_table(names: list[str]) -> list[dict[str, Any]]:
    """Per model: developer, origin, license and what it restricts, release date, native checkpoint format
    (from the registry) and the quality figure, or 'not covered'."""
    entries, facts = registry_entries(), model_facts()
    out = []
    for name in names:
        f = facts[name]
        out.append({"name": name, "developer": f.developer, "country": f.country,
                    "release_date": str(f.release_date), "license": f.license.model_dump(),
                    "native_format": dict(entries[name].native_format),
                    "quality": f.quality.model_dump() if f.quality else "not covered"})
    return out


def fleet(constraints: Constraints, workload: FleetWorkload, assumptions: Assumptions,
          models: list[str] | None = None, targets: list[str] | None = None,
          bloc_floor: float = BLOC_FLOOR, rank_by: str = "cost") -> dict[str, Any]:
    """The whole result as one JSON-able dict: plans (ranked), rejections, devices, bloc view."""
    every = list_profiles()
    profiles = [load_profile(t) for t in targets] if targets else every
    specs = [get_spec(m) for m in models] if models else list(load_registry().values())
    constraints.check_names({p.vendor for p in [*every, *profiles]}, {f.country for f in device_facts().values()},
                            {f.country for f in model_facts().values()})
    allowed, excluded = [], []
    for p in profiles:
        facts = device_facts().get(p.id)  # a user's own profile YAML may have none: listed, not planned
        why = NO_FACTS if facts is None else constraints.device_allowed(p, facts)
        (excluded if why else allowed).append((p, why))
    plans, rejected = build_plans(specs, every, [p for p, _ in allowed], constraints, workload, assumptions)
    plans = ranked(plans, rank_by)
    q = quality_index()
    return {
        "cost_model": COST_MODEL,
        "rank_by": rank_by,
        "workload": {**vars(workload), "decode_share": workload.decode_share},
        "constraints": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(constraints).items()},
        "assumptions": assumptions.to_dict(), "assumption_lines": assumptions.lines(),
        "quality_index": q.model_dump(),
        "plans": [p.to_dict(assumptions) for p in plans],
        "rejected": [vars(r) for r in rejected],
        "excluded_devices": [{"device": p.id, "reason": why} for p, why in excluded],
        "devices": device_table([p for p, _ in allowed], assumptions),
        "models": model_table([s.name for s in specs if s.name in model_facts()]),
        "blocs": bloc_matrix(plans, bloc_floor),
    }


def plans_table(result: dict[str, Any], rows: int) -> Table:
    table = Table(title=f"Plans ranked by {result['rank_by']} (of {len(result['plans'])}; predicted speed, "
                        "published prices, assumed utilisation)", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("model", "origin", "device", "n", "recipe", "tok/s", "TTFT s", "$/1M rent", "$/1M own",
                 "kWh/1M", "MMLU-Pro", "LI", "accuracy"):
        table.add_column(name, justify="left" if name in ("model", "origin", "device", "recipe") else "right")
    for p in result["plans"][:rows]:
        q = p["quality"]
        table.add_row(p["model"], p["origin"], p["device"] + ("" if p["validated_device"] else "*"),
                      str(p["devices"]), ", ".join(p["conversions"]) or "native",
                      _num(p["output_tokens_s"]["value"], ".0f"), _num(p["ttft_s"]["value"], ".2f"),
                      _num(p["rental_usd_per_mtok"]["value"]), _num(p["purchase_usd_per_mtok"]["value"]),
                      _num(p["kwh_per_mtok"]["value"]), _num(q["value"] if q else None, ".1f"),
                      _num(p["lock_in_index"]["value"], ".2f"), cost_brief(p["accuracy_cost"]))
    return table


def price_lines(result: dict[str, Any], rows: int) -> list[str]:
    """The measured conversion prices of the first ROWS plans, each once, with the file and run it comes from."""
    prices = {c["price"]["source"] + c["cost"]: c for p in result["plans"][:rows] for c in p["accuracy_cost"]
              if c["price"]}
    return [f"accuracy (measured): {c['cost']}; {c['price']['source']}" for c in prices.values()]


def bloc_table(result: dict[str, Any]) -> Table:
    b = result["blocs"]
    table = Table(title=f"Cheapest $/1M tokens (rent / own) and fastest tokens/s per device, model origin x "
                        f"hardware bloc, MMLU-Pro >= {b['min_quality']:g} (predicted)", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("origin")
    shown = [k for k in BLOCS if any(b["cells"][o][k]["plans"] for o in b["origins"])]
    for k in shown:
        table.add_column(BLOCS[k], justify="right")
    for o in b["origins"]:
        cells = [b["cells"][o][k] for k in shown]
        table.add_row(o, *(f"{_num(c['rental_usd_per_mtok'])} / {_num(c['purchase_usd_per_mtok'])}\n"
                           f"{_num(c['tokens_s_per_device'], '.0f')} t/s" if c["plans"] else "[dim]-[/]"
                           for c in cells))
    return table


def run(constraints: Constraints, workload: FleetWorkload, assumptions: Assumptions,
        models: list[str] | None = None, targets: list[str] | None = None, blocs: bool = False,
        bloc_floor: float = BLOC_FLOOR, rank_by: str = "cost", rows: int = 20, out: Path = Path("out/fleet"),
        console: Console | None = None) -> dict[str, Any]:
    """Compute, print, and write the report files to OUT; returns the result dict."""
    from retarget.report.fleet_html import write_html
    from retarget.report.fleet_tables import write_csv, write_json

    console = console or Console()
    start = time.perf_counter()
    check_writable(Path(out))
    result = fleet(constraints, workload, assumptions, models, targets, bloc_floor, rank_by)
    with atomic_dir(Path(out)) as tmp:
        write_json(result, tmp / "fleet.json")
        write_csv(result, tmp / "fleet.csv")
        write_html(result, tmp / "fleet.html")
    console.print(bloc_table(result) if blocs else plans_table(result, rows))
    for line in [] if blocs else price_lines(result, rows):
        console.print(line, highlight=False)
    unvalidated = sorted(d["id"] for d in result["devices"] if not d["validated"])
    console.print(f"* no validation rows for: {', '.join(unvalidated) or 'none'}")
    console.print(f"{len(result['plans'])} plans, {len(result['rejected'])} rejected in "
                  f"{time.perf_counter() - start:.1f} s; wrote {out}/fleet.{{json,csv,html}}")
    return result
