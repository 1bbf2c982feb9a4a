"""The compile report's look across devices: the compiled model's predicted speed with its recipe on every
hardware profile, and its lock-in index there (predicted, from retarget.perf and retarget.lockin)."""

from __future__ import annotations

from typing import Any

from retarget.hw_profiles import HardwareProfile
from retarget.models.spec import ModelSpec

CTX = 4096
PROMPT = 512


def predictions_on_profiles(spec: ModelSpec, weight_format: str, profiles: list[HardwareProfile]) -> dict[str, Any]:
    """Per profile: predicted decode/prefill speed of SPEC in WEIGHT_FORMAT (batch 1), memory fit, and LI."""
    from retarget.lockin.matrix import lockin_for_spec
    from retarget.perf import predict

    lockin = lockin_for_spec(spec, profiles, attribute=False)["row"]
    rows = {}
    for profile in profiles:
        p = predict(spec, profile, batch=1, ctx=CTX, prompt_len=PROMPT, weight_format=weight_format)
        cell = lockin["cells"].get(profile.id, {})
        rows[profile.id] = {
            "decode_tokens_per_s": p.decode_tokens_s,
            "ttft_s": p.ttft_s,
            "fits": p.memory.fits,
            "lock_in_index": cell.get("li", {}).get("value"),
        }
    return {
        "provenance": "predicted",
        "model": "retarget.perf roofline v1 + retarget.lockin v1",
        "workload": {"batch": 1, "ctx": CTX, "prompt_len": PROMPT, "weight_format": weight_format},
        "lockin_home": lockin["home"],
        "profiles": rows,
    }


def markdown(section: dict[str, Any]) -> list[str]:
    """Lines of the report.md section."""
    w = section["workload"]
    lines = [
        "## Predicted on every hardware profile",
        "",
        f"Predicted (not measured) by {section['model']}: batch 1, {w['ctx']} tokens of context, "
        f"{w['prompt_len']}-token prompt, weights as `{w['weight_format']}`. "
        f"Lock-in index relative to home device `{section['lockin_home']}` "
        "(1.0 = travels like a plain dense model).",
        "",
        "| profile | decode tok/s | TTFT ms | fits | lock-in index |",
        "|---|---:|---:|---|---:|",
    ]
    for pid, r in section["profiles"].items():
        li = "n/a" if r["lock_in_index"] is None else f"{r['lock_in_index']:.2f}"
        lines.append(f"| {pid} | {r['decode_tokens_per_s']:.0f} | {r['ttft_s'] * 1e3:.1f} | "
                     f"{'yes' if r['fits'] else 'no'} | {li} |")
    return [*lines, ""]
