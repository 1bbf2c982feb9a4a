"""Self-contained HTML fleet report: a cost-vs-quality scatter (plotly.js embedded), the ranked plans, the bloc
view, rejections and every device's sourced facts. Opens with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retarget.fleet.plans import cost_summary
from retarget.report.lockin_html import _CSS, _e, _num, _table

MAX_ROWS = 60  # plans shown in the page's table (all of them are in fleet.json / fleet.csv)


def _link(url: str | None, text: str | None = None) -> str:
    return "-" if not url else f"<a href='{_e(url)}'>{_e(text or url)}</a>"


def _scatter(result: dict[str, Any]) -> dict[str, Any]:
    """One trace per hardware bloc: $/1M tokens (log x) against the published quality figure (y)."""
    traces = []
    for bloc, name in result["blocs"]["blocs"].items():
        pts = [p for p in result["plans"] if p["bloc"] == bloc and p["quality"]
               and (p["rental_usd_per_mtok"]["value"] or p["purchase_usd_per_mtok"]["value"])]
        if not pts:
            continue
        cost = [p["rental_usd_per_mtok"]["value"] or p["purchase_usd_per_mtok"]["value"] for p in pts]
        hover = [f"{p['model']} ({p['origin']}) on {p['devices']}x {p['device']}<br>{_e(p['recipe'])}<br>"
                 f"{p['output_tokens_s']['value']:.0f} tok/s, TTFT {p['ttft_s']['value']:.2f} s, LI "
                 f"{_num(p['lock_in_index']['value'])}" for p in pts]
        traces.append({"type": "scatter", "mode": "markers", "name": name, "x": cost,
                       "y": [p["quality"]["value"] for p in pts], "text": hover,
                       "hovertemplate": "%{text}<br>$%{x:.3g}/1M tokens, MMLU-Pro %{y}<extra></extra>",
                       "marker": {"size": 9, "opacity": 0.75, "symbol": [
                           "circle" if p["rental_usd_per_mtok"]["value"] else "diamond" for p in pts]}})
    layout = {"height": 560, "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
              "xaxis": {"type": "log",
                        "title": {"text": "$ per 1M tokens (predicted; rental, else amortised purchase)"}},
              "yaxis": {"title": {"text": "MMLU-Pro % (published)"}},
              "title": {"text": "Cost vs quality: every plan with a price and a published quality figure "
                                "(circle: rental, diamond: amortised purchase)"}}
    return {"data": traces, "layout": layout}


def _accuracy(costs: list[dict[str, Any]]) -> str:
    """The conversions' accuracy cost, its provenance, and the file and run of the measured prices."""
    s = cost_summary(costs)
    source = f"<br><span class=muted>{_e(s['source'])}</span>" if s["source"] else ""
    return f"{_e(s['cost'])} <i>({_e(s['provenance'])})</i>{source}"


def _plans(result: dict[str, Any]) -> str:
    rows = []
    for p in result["plans"][:MAX_ROWS]:
        q = p["quality"]
        rows.append([_e(p["model"]), _e(p["origin"]), _e(p["device"]) + ("" if p["validated_device"] else " *"),
                     str(p["devices"]), _e(p["recipe"]), _accuracy(p["accuracy_cost"]),
                     _num(p["output_tokens_s"]["value"], ".0f"), _num(p["ttft_s"]["value"]),
                     _num(p["rental_usd_per_mtok"]["value"], ".3g"), _num(p["purchase_usd_per_mtok"]["value"], ".3g"),
                     _num(p["kwh_per_mtok"]["value"], ".3g"),
                     _link(q["url"], f"{q['value']:g}") if q else "not covered",
                     _num(p["lock_in_index"]["value"])])
    return _table(["model", "origin", "device", "devices", "recipe", "accuracy cost of conversion",
                   "tok/s (pred.)", "TTFT s (pred.)", "$/1M rent (pred.)", "$/1M own (pred.)", "kWh/1M (pred.)",
                   "MMLU-Pro (publ.)", "LI (pred.)"], rows, {3, 6, 7, 8, 9, 10, 12})


def _blocs(result: dict[str, Any]) -> str:
    b = result["blocs"]
    names = b["blocs"]
    rows = [[_e(o)] + [("-" if not c["plans"] else
                        f"rent ${_num(c['rental_usd_per_mtok'], '.3g')}: {_e(c['rental_plan'] or '-')}<br>"
                        f"own ${_num(c['purchase_usd_per_mtok'], '.3g')}: {_e(c['purchase_plan'] or '-')}<br>"
                        f"{_num(c['tokens_s_per_device'], '.0f')} tok/s/device: {_e(c['fastest'])}")
                       for c in (b["cells"][o][k] for k in names)] for o in b["origins"]]
    matrix = _table(["origin", *names.values()], rows)
    fam_rows = []
    for f in b["families"]:
        others = "; ".join(f"{names[k]}: LI {_num(v['geomean_li'])}, rent x{_num(v['rental_vs_home'])}"
                           for k, v in f["blocs"].items() if k != f["home_bloc"])
        home = f["blocs"].get(f["home_bloc"], {})
        fam_rows.append([_e(f["family"]), _e(f["origin"]), _e(f"{f['home_device']} ({names[f['home_bloc']]})"),
                         _num(home.get("rental_usd_per_mtok"), ".3g"), _e(others or "-")])
    families = _table(["family", "origin", "home device (bloc)", "cheapest rental $/1M at home",
                       "per bloc: geomean LI, cheapest rental $/1M relative to home"], fam_rows)
    return (f"<p>Models with MMLU-Pro &ge; {b['min_quality']:g}: {_e(', '.join(b['models']) or 'none')}.</p>"
            + matrix + "<h3>Off home hardware</h3>" + families)


def _fig(s: dict[str, Any] | None, unit: str) -> str:
    """A sourced figure as 'value unit' linked to its source, with its kind and date."""
    if not s:
        return "unknown"
    when = f", {_e(s['date'])}" if s.get("date") else ""
    label = " ".join(x for x in (format(s["value"], "g"), "" if unit == "W" else s["currency"], unit) if x)
    return f"{_link(s['source'], label)} ({_e(s['kind'])}{when})"


def _devices(result: dict[str, Any]) -> str:
    rows = []
    for d in result["devices"]:
        ec = d["export_control"]
        rows.append([_e(d["id"]), _e(d["vendor"]), _e(d["country"]), _e(d["bloc"]),
                     _link(d["foundry"]["source"], d["foundry"]["value"]) if d["foundry"] else "unknown",
                     f"{_link(ec['source'], ec['status'])}: {_e(ec['note'])}",
                     _fig(d["tdp_w"], "W"), _fig(d["rent_usd_per_hour"], "/device-hour"),
                     _fig(d["purchase_usd"], ""), "yes" if d["validated"] else "<b>no validation rows</b>"])
    return _table(["device", "vendor", "country of design", "bloc", "foundry", "export control", "TDP",
                   "rental", "purchase", "perf model validated"], rows)


def _models(result: dict[str, Any]) -> str:
    rows = []
    for m in result["models"]:
        lic, q = m["license"], m["quality"]
        rows.append([_e(m["name"]), _e(m["developer"]), _e(m["country"]), _e(m["release_date"]),
                     _link(lic["source"], lic["name"]) + ("" if lic["checked"] else " (not re-read)"),
                     _e(lic["restricts"]), _e(", ".join(f"{k}: {v}" for k, v in m["native_format"].items())),
                     _e(q) if isinstance(q, str) else _link(q["source"], f"{q['value']:g}") + f" {_e(q['note'])}"])
    return _table(["model", "developer", "origin", "released", "license", "what it restricts",
                   "native checkpoint format", "MMLU-Pro (published)"], rows)


def write_html(result: dict[str, Any], path: Path) -> None:
    """The report page: scatter, plans, bloc view, rejections, devices, assumptions."""
    import plotly.io as pio

    scatter = pio.to_html(_scatter(result), full_html=False, include_plotlyjs=True, div_id="scatter",
                          validate=False, config={"responsive": True})
    w, q = result["workload"], result["quality_index"]
    unvalidated = [d["id"] for d in result["devices"] if not d["validated"]]
    rejected = _table(["model", "device", "reason"],
                      [[_e(r["model"]), _e(r["device"]), _e(r["reason"])] for r in result["rejected"]])
    excluded = _table(["device", "reason"], [[_e(x["device"]), _e(x["reason"])] for x in result["excluded_devices"]])
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>retarget fleet report</title>
<style>{_CSS}</style></head><body>
<h1>Which open model on which hardware</h1>
<p>Workload: prompts of {w['prompt_len']} tokens, {w['output_len']} generated tokens, batch {w['batch']} per
replica{f", target {w['target_tokens_s']:g} generated tokens/s" if w['target_tokens_s'] else ''}.
Speeds and times are <b>predicted</b> by the analytic performance model; prices, TDPs and quality figures are
<b>published</b> (each links to its source); utilisation, amortisation, power price and exchange rates are
<b>assumed</b> (below). Quality index: {_link(q['about'], q['name'])}.</p>
<p><b>Devices with no validation rows</b> (the performance model was never checked against a measurement on
them; marked *): {_e(', '.join(unvalidated) or 'none')}.</p>
{scatter}
<h2>Plans ranked by {_e(result['rank_by'])}</h2>
<p>{len(result['plans'])} plans; the first {min(MAX_ROWS, len(result['plans']))}
shown (all are in fleet.json and fleet.csv).</p>{_plans(result)}
<h2>Bloc view</h2>{_blocs(result)}
<h2>Left out</h2><p>Models and model x device pairs that cannot meet the constraints, the quality floor or fit:</p>
{rejected}<p>Devices excluded by the constraints:</p>{excluded}
<h2>Devices</h2>{_devices(result)}
<h2>Models</h2>{_models(result)}
<h2>Assumptions</h2><ul>{''.join(f'<li>{_e(x)}</li>' for x in result['assumption_lines'])}</ul>
<p>Cost model: <code>{_e(result['cost_model'])}</code>. $/1M = devices x price per device-hour / (tokens/s x 3600
x utilisation) x 1e6; kWh/1M = devices x TDP x (1e6 / (tokens/s x 3600)) / 1000.</p>
</body></html>"""
    path.write_text(page)
