"""`retarget inspect`: what about a model's architecture matters for hardware, from its ModelSpec alone.

The report is a dict (JSON source of truth) whose numbers carry provenance: counts computed from the
architecture are `predicted` by "ModelSpec v1" arithmetic, the publisher's figures are `published` with
their URL. `print_report` and `print_model_list` render it with rich.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from retarget.errors import RetargetError
from retarget.inputs import check_regular_file, load_json, ref_path
from retarget.models.checks import check_config
from retarget.models.registry import get_entry, registry_entries
from retarget.models.spec import SPEC_VERSION, ModelSpec
from retarget.provenance import predicted, published

MODEL_NAME = f"ModelSpec v{SPEC_VERSION} arithmetic"
CONTEXTS = (4096, 32768)

# Bits per weight of each storage format, scales included: int4 with one fp16 scale and one fp16 zero per
# 128 weights; MXFP4 (OCP MX spec) one 8-bit E8M0 scale per 32 FP4 values; block FP8 one fp32 scale per
# 128x128 block (negligible). Quantised formats apply to linear and expert weights; embeddings stay bf16.
FORMAT_BITS = {"bf16": 16.0, "fp16": 16.0, "fp32": 32.0, "fp8": 8.0, "int8": 8.0, "int4": 4.25, "mxfp4": 4.25}
REPORTED_FORMATS = ("bf16", "fp8-e4m3", "int4-g128-asym", "mxfp4")


def format_bits(fmt: str) -> float:
    """Bits per weight of a format name such as 'fp8-e4m3-block128' or 'mxfp4' (keyed by its first part);
    GGUF block formats and k-quant mixes (q4_0, q4_k_m, ...) as retarget.perf.formats counts them."""
    bits = FORMAT_BITS.get(fmt.split("-")[0])
    if bits is not None:
        return bits
    from retarget.perf.formats import FORMATS, get_format

    try:
        return get_format(fmt).bits
    except RetargetError:
        known = ", ".join(dict.fromkeys((*FORMAT_BITS, *FORMATS)))
        raise RetargetError(f"unknown weight format {fmt!r}; known: {known}", field="native_format") from None


def _quantised(fmt: str) -> dict[str, float]:
    """Per-group bits when quantising every linear/expert weight to FMT (embeddings stay bf16)."""
    return {"linear": format_bits(fmt), "embeddings": 16.0}


def _spec_from_json(path: Path, name: str) -> ModelSpec:
    """An HF config.json, a ModelSpec JSON, or a compile report.json (its `model.spec`)."""
    data = load_json(path)
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and "spec" in data["model"]:
        return ModelSpec.from_dict(data["model"]["spec"], source=str(path))
    if isinstance(data, dict) and "blocks" in data:
        return ModelSpec.from_dict(data, source=str(path))
    return ModelSpec.from_hf_config(check_config(data, str(path)), name, source=str(path))


def _spec_from_gguf(path: Path) -> ModelSpec:
    from retarget.models.from_gguf import spec_config_from_gguf_file

    config, name, native = spec_config_from_gguf_file(path)
    return ModelSpec.from_hf_config(config, name or path.stem, source=str(path), native_format=native)


def resolve_spec(model: str) -> ModelSpec:
    """MODEL as a ModelSpec: a registry name / HF id, an HF config.json (or a folder holding one), a GGUF
    file, a compiled artifact folder (its report.json), or a ModelSpec JSON."""
    return resolve_model(model)[0]


def resolve_model(model: str) -> tuple[ModelSpec, dict[str, Any] | None]:
    """As `resolve_spec`, with the registry entry (dict) when MODEL names one."""
    path = ref_path(model, "MODEL")
    if path is None:
        entry = get_entry(model)
        return entry.spec(), entry.model_dump(exclude={"config", "path"})
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        candidates = [path / "config.json", path / "report.json", *ggufs[:1]]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise RetargetError("no config.json, report.json or .gguf file in this folder", source=str(path))
        return resolve_model(str(found))[0], None
    check_regular_file(path, limit=2**50, what="MODEL")  # a GGUF of any size: only its header is read
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _spec_from_gguf(path), None
    return _spec_from_json(path, path.parent.name or path.stem), None


def _attention(spec: ModelSpec) -> dict[str, Any]:
    kinds = Counter[str]()
    for g in spec.blocks:
        if g.attention is not None:
            a = g.attention
            label = a.kind
            if a.window:
                label += f" {'chunk' if a.chunked else 'window'} {a.window}"
            if a.sinks and a.kind != "sinks":
                label += " +sinks"
            kinds[label] += g.count
    first = next((g.attention for g in spec.blocks if g.attention is not None), None)
    out: dict[str, Any] = {"kind": spec.attention_kind, "layers_by_kind": dict(kinds),
                           "attention_layers": spec.attention_layers}
    if first is not None:
        out |= {"heads": first.heads, "kv_heads": first.kv_heads, "head_dim": first.head_dim}
        if first.kind == "mla":
            out["mla"] = {k: getattr(first, k) for k in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                                                          "qk_rope_head_dim", "v_head_dim")}
    return out


def _kv(spec: ModelSpec) -> dict[str, Any]:
    assumptions = ["K and V per layer (MLA: latent + RoPE key)", "sliding/chunked layers hold their window"]
    out: dict[str, Any] = {
        f"bytes_per_token_{name}": predicted(spec.kv_cache_bytes_per_token(width), "B/token", MODEL_NAME,
                                             assumptions[:1] + ["before any window fills"])
        for name, width in (("bf16", 2), ("fp8", 1))}
    for ctx in CONTEXTS:
        out[f"bytes_per_sequence_{ctx // 1024}k_bf16"] = predicted(
            spec.kv_cache_bytes(ctx, 2), "B", MODEL_NAME, assumptions)
    state = ["SSM state + conv window; linear-attention state"]
    out["fixed_state_bytes_per_sequence_bf16"] = predicted(
        spec.state_bytes_per_sequence(2), "B", MODEL_NAME, state)
    return out


def _moe(spec: ModelSpec) -> dict[str, Any] | None:
    moe = [g for g in spec.blocks if g.mlp is not None and g.mlp.kind == "moe"]
    if not moe:
        return None
    m = moe[0].mlp
    assert m is not None
    moe_layers = sum(g.count for g in moe)
    return {"moe_layers": moe_layers, "dense_layers": spec.num_layers - moe_layers,
            "routed_experts": m.experts, "top_k": m.top_k, "shared_experts": m.shared_experts,
            "zero_experts": m.zero_experts, "expert_width": m.expert_intermediate,
            "experts_active_fraction": m.top_k / m.experts,
            "params_active_fraction": spec.params_active / spec.params_total}


def _ssm(spec: ModelSpec) -> dict[str, Any] | None:
    first = next((g.ssm for g in spec.blocks if g.ssm is not None), None)
    if first is None:
        return None
    parallel = any(g.ssm is not None and g.attention is not None for g in spec.blocks)
    return {"kind": first.kind, "layers": spec.ssm_layers, "d_inner": first.d_inner, "d_state": first.d_state,
            "parallel_with_attention": parallel}


def inspect_model(model: str) -> dict[str, Any]:
    """Hardware-relevant facts about MODEL (registry name/HF id, HF folder or config.json) as a dict."""
    spec, entry = resolve_model(model)
    assumption = ["embeddings and lm_head stay bf16 in quantised formats", "biases ignored"]
    weight_bytes = {fmt: predicted(spec.weight_bytes(_quantised(fmt)), "B", MODEL_NAME, assumption)
                    for fmt in REPORTED_FORMATS}
    native_bits = {group: format_bits(fmt) for group, fmt in spec.native_format.items()}
    weight_bytes["native"] = predicted(spec.weight_bytes(native_bits), "B", MODEL_NAME,
                                       [f"native format {spec.native_format}"])
    report: dict[str, Any] = {
        "name": spec.name, "model_type": spec.model_type, "source": spec.source,
        "layers": spec.num_layers, "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "max_position_embeddings": spec.max_position_embeddings,
        "params_total": predicted(spec.params_total, "params", MODEL_NAME, ["biases ignored"]),
        "params_active": predicted(spec.params_active, "params", MODEL_NAME,
                                   ["top-k real experts per token", "embedding table and lm_head included"]),
        "attention": _attention(spec), "kv_cache": _kv(spec), "moe": _moe(spec), "ssm": _ssm(spec),
        "native_format": spec.native_format, "weight_bytes": weight_bytes, "spec": spec.to_dict(),
    }
    if entry is not None:
        pub = entry["published"]
        keys = ("hf_id", "source_url", "home_hardware", "home_hardware_note", "native_format_note", "note")
        report["registry"] = {k: entry[k] for k in keys if entry.get(k)}
        report["published_params_total"] = published(
            pub["total_params_billion"] * 1e9, "params", pub["url"], pub["text"])
        if pub.get("active_params_billion"):
            report["published_params_active"] = published(
                pub["active_params_billion"] * 1e9, "params", pub["url"],
                f"convention: {pub['active_convention']}")
    return report


# ---- rendering ---------------------------------------------------------------------------------------------

def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def _params(value: float) -> str:
    return f"{value / 1e9:.2f} B" if value >= 1e9 else f"{value / 1e6:.1f} M"


def print_report(report: dict[str, Any], console: Console) -> None:
    """Render an `inspect_model` report as rich tables."""
    table = Table(title=f"{report['name']} ({report['model_type']})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    reg = report.get("registry", {})
    if reg:
        table.add_row("HF id", reg.get("hf_id", ""))
        home = reg.get("home_hardware") or "-"
        table.add_row("home hardware", f"{home}  ({reg.get('home_hardware_note', '')})")
    table.add_row("layers / hidden / vocab", f"{report['layers']} / {report['hidden_size']} / "
                  f"{report['vocab_size']}{' (tied)' if report['tie_word_embeddings'] else ''}")
    total, active = report["params_total"]["value"], report["params_active"]["value"]
    pub = report.get("published_params_total")
    pub_txt = f"  (publisher: {pub['note']})" if pub else ""
    table.add_row("params total / active", f"{_params(total)} / {_params(active)}{pub_txt}")
    att = report["attention"]
    kinds = ", ".join(f"{k} x{n}" for k, n in att["layers_by_kind"].items()) or "none"
    heads = ""
    if "heads" in att:
        heads = f"  heads {att['heads']}, kv {att['kv_heads']}, head_dim {att['head_dim']}"
    table.add_row("attention", f"{att['kind']}: {kinds}{heads}")
    if "mla" in att:
        table.add_row("MLA dims", ", ".join(f"{k}={v}" for k, v in att["mla"].items()))
    kv = report["kv_cache"]
    table.add_row("KV cache / token", f"{_si(kv['bytes_per_token_bf16']['value'], 'B')} bf16, "
                  f"{_si(kv['bytes_per_token_fp8']['value'], 'B')} fp8")
    per_seq = [f"{c // 1024}k: {_si(kv[f'bytes_per_sequence_{c // 1024}k_bf16']['value'], 'B')}"
               for c in CONTEXTS]
    table.add_row("KV cache / sequence (bf16)", ", ".join(per_seq))
    if kv["fixed_state_bytes_per_sequence_bf16"]["value"]:
        table.add_row("fixed state / sequence", _si(kv["fixed_state_bytes_per_sequence_bf16"]["value"], "B"))
    if report["moe"]:
        m = report["moe"]
        zero = f", +{m['zero_experts']} zero" if m["zero_experts"] else ""
        table.add_row("MoE", f"{m['routed_experts']} experts (+{m['shared_experts']} shared{zero}), "
                      f"top-{m['top_k']}, width {m['expert_width']}; "
                      f"{m['moe_layers']} MoE / {m['dense_layers']} dense layers; "
                      f"experts active {m['experts_active_fraction']:.1%}, params active "
                      f"{m['params_active_fraction']:.1%}")
    if report["ssm"]:
        s = report["ssm"]
        parallel = ", parallel with attention" if s["parallel_with_attention"] else ""
        table.add_row("SSM", f"{s['kind']} in {s['layers']} layers "
                      f"(d_inner {s['d_inner']}, d_state {s['d_state']}){parallel}")
    native = ", ".join(f"{k}: {v}" for k, v in report["native_format"].items())
    table.add_row("native format", native + (f"  ({reg['native_format_note']})" if "native_format_note" in reg
                                             else ""))
    table.add_row("weight bytes", ", ".join(f"{fmt} {_si(v['value'], 'B')}"
                                            for fmt, v in report["weight_bytes"].items()))
    console.print(table)


def list_models() -> list[dict[str, Any]]:
    """One row per registry model: name, type, attention, params, native format, home hardware."""
    rows = []
    for name, entry in sorted(registry_entries().items()):
        row: dict[str, Any] = {"name": name, "hf_id": entry.hf_id, "home_hardware": entry.home_hardware,
                               "native_format": entry.native_format,
                               "published_total_params_billion": entry.published.total_params_billion}
        try:
            spec = entry.spec()
        except RetargetError as err:
            row["error"] = str(err)
        else:
            row |= {"model_type": spec.model_type, "attention": spec.attention_kind, "moe": spec.is_moe,
                    "ssm_layers": spec.ssm_layers, "params_total": spec.params_total,
                    "params_active": spec.params_active,
                    "kv_bytes_per_token_bf16": spec.kv_cache_bytes_per_token()}
        rows.append(row)
    return rows


def print_model_list(rows: list[dict[str, Any]], console: Console) -> None:
    """Render `list_models` rows as a rich table."""
    table = Table(title=f"Registry: {len(rows)} open models")
    for col in ("name", "type", "attention", "params total / active", "KV/token bf16", "native", "home"):
        table.add_column(col)
    for r in rows:
        native = ",".join(sorted(set(r["native_format"].values())))
        if "error" in r:
            table.add_row(r["name"], "-", "-", f"incomplete: {r['error'].split(': ', 1)[-1]}", "-", native,
                          r["home_hardware"] or "-")
            continue
        attention = r["attention"] + (f" +ssm x{r['ssm_layers']}" if r["ssm_layers"] else "") + (
            " moe" if r["moe"] else "")
        table.add_row(r["name"], r["model_type"], attention,
                      f"{_params(r['params_total'])} / {_params(r['params_active'])}",
                      _si(r["kv_bytes_per_token_bf16"], "B"), native, r["home_hardware"] or "-")
    console.print(table)


def show(model: str | None, as_json: bool, list_all: bool, console: Console) -> None:
    """The `retarget inspect` command: one model's report, or the registry list, as tables or JSON."""
    if list_all or model is None:
        rows = list_models()
        if as_json:
            console.print_json(data=rows)
        else:
            print_model_list(rows, console)
        return
    report = inspect_model(model)
    if as_json:
        console.print_json(data=report)
    else:
        print_report(report, console)
