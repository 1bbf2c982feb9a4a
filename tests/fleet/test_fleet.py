"""`retarget fleet` end to end: filters hold (an excluded vendor never appears), plans use the perf model's
numbers, the files agree, bad input exits 2 and writes nothing, and the page renders in headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retarget.cli import app
from retarget.fleet.constraints import Constraints, FleetWorkload
from retarget.fleet.costs import Assumptions
from retarget.fleet.facts import device_facts, model_facts
from retarget.fleet.run import NO_FACTS, fleet, run
from retarget.hw_profiles import load_profile
from retarget.hw_profiles.loader import PROFILE_DIR
from retarget.models.registry import get_spec
from retarget.perf import predict

MODELS = ["deepseek-v3", "qwen3-32b", "llama-4-scout", "mistral-small-3", "gemma-3-27b", "olmo-2-7b"]
WL = FleetWorkload(prompt_len=1024, output_len=256, batch=8)


@pytest.fixture(scope="module")
def no_nvidia() -> dict:
    return fleet(Constraints.of(exclude_vendor=["NVIDIA"]), WL, Assumptions(), MODELS)


def test_excluded_vendor_never_appears(no_nvidia: dict) -> None:
    assert no_nvidia["plans"]
    assert all(p["vendor"] != "NVIDIA" for p in no_nvidia["plans"])
    assert all(d["vendor"] != "NVIDIA" for d in no_nvidia["devices"])
    excluded = {x["device"] for x in no_nvidia["excluded_devices"]}
    assert {"h100-sxm", "h20", "h800-sxm", "rtx-4090"} <= excluded
    assert all(not b["plans"] for o in no_nvidia["blocs"]["cells"].values()
               for k, b in o.items() if k.startswith("nvidia"))


def test_device_and_model_filters() -> None:
    c = Constraints.of(vendor=["huawei", "amd"], no_export_controlled=True, origin=["CN", "FR"],
                       license=["apache", "mit"])
    r = fleet(c, WL, Assumptions(), MODELS)
    facts, mfacts = device_facts(), model_facts()
    assert r["plans"]
    for p in r["plans"]:
        assert p["vendor"] in ("Huawei", "AMD")
        assert facts[p["device"]].export_control.status != "restricted"  # MI300X etc. are out, Ascend stays
        assert p["origin"] in ("CN", "FR")
        assert any(s in mfacts[p["model"]].license.name.lower() for s in ("apache", "mit"))
    reasons = {x["model"]: x["reason"] for x in r["rejected"] if x["device"] == "*"}
    assert "origin US not in --origin" in reasons["llama-4-scout"]


def test_quality_floor_lists_the_models_it_drops() -> None:
    r = fleet(Constraints.of(min_quality=70), WL, Assumptions(), MODELS, ["mi300x", "ascend-910b"])
    kept = {p["model"] for p in r["plans"]}
    assert kept == {"deepseek-v3", "llama-4-scout"}  # published MMLU-Pro 75.9 and 74.3
    reasons = {x["model"]: x["reason"] for x in r["rejected"] if x["device"] == "*"}
    assert reasons["mistral-small-3"] == "quality 66.3 below the floor 70"
    assert reasons["olmo-2-7b"].startswith("no published quality figure")


def test_plan_speed_is_the_perf_models_prediction(no_nvidia: dict) -> None:
    """A plan's TTFT and tokens/s are predict()'s for its recipe: one prefill plus OUTPUT_LEN decode steps."""
    p = next(p for p in no_nvidia["plans"] if p["model"] == "qwen3-32b" and p["device"] == "mi300x")
    pred = predict(get_spec("qwen3-32b"), load_profile("mi300x"), batch=WL.batch,
                   ctx=WL.prompt_len + WL.output_len // 2, prompt_len=WL.prompt_len,
                   devices=p["devices_per_replica"], weight_format=p["weight_format"], kv_format=p["kv_format"],
                   expert_format=p["expert_format"])
    seconds = pred.ttft_s + WL.output_len * pred.tpot_s
    assert p["ttft_s"]["value"] == pytest.approx(pred.ttft_s, rel=1e-9)
    assert p["output_tokens_s"]["value"] == pytest.approx(WL.batch * WL.output_len / seconds, rel=1e-9)
    assert p["ttft_s"]["provenance"] == "predicted" and p["quality"] is None  # qwen3-32b: not covered
    rent = device_facts()["mi300x"].rent_usd_per_hour.value
    tokens_s = WL.batch * (WL.prompt_len + WL.output_len) / seconds
    expected = p["devices_per_replica"] * rent * 1e6 / (tokens_s * 3600 * Assumptions().utilisation)
    assert p["rental_usd_per_mtok"]["value"] == pytest.approx(expected, rel=1e-9)


COST_FILE = Path(__file__).resolve().parents[2] / "bench" / "results" / "conversion-cost.json"


def _committed_price(native: str, target: str) -> tuple[float, float, str]:
    """(perplexity ratio, cosine drop, run date) of NATIVE -> TARGET vs NATIVE, read from the committed results."""
    rows = {r["name"]: r for r in json.loads(COST_FILE.read_text())["rows"]}
    conv, base = rows[f"{native} -> {target}"], rows[native]
    return (conv["smollm2"]["perplexity_ratio"] / base["smollm2"]["perplexity_ratio"],
            base["minilm"]["mean_cosine"] - conv["minilm"]["mean_cosine"], conv["run"])


@pytest.mark.parametrize(("model", "device", "native", "target"), [
    ("deepseek-v3", "ascend-910b", "fp8-block128", "w8a8-int8"),  # FP8 checkpoint, no FP8 on the device
    ("gpt-oss-120b", "gaudi3", "mxfp4", "int4-g32-sym"),  # MXFP4 experts, no FP4 units and no MXFP4 kernel
])
def test_a_converted_plan_carries_the_measured_price(model: str, device: str, native: str, target: str) -> None:
    plan = fleet(Constraints(), WL, Assumptions(), [model], [device])["plans"][0]
    measured = [c for c in plan["accuracy_cost"] if c["provenance"] == "measured"]
    assert len(measured) == 1 and "unknown" not in measured[0]["cost"]
    price = measured[0]["price"]
    ppl, cos, run_date = _committed_price(native, target)
    assert (price["native"], price["target"]) == (native, target)
    assert price["ppl_ratio_vs_native"] == pytest.approx(ppl, abs=1e-4)
    assert price["cosine_drop_vs_native"] == pytest.approx(cos, abs=1e-5)
    assert price["within_budget"] == (ppl <= 1.02 and cos <= 0.005)
    assert "bench/results/conversion-cost.json" in price["source"] and run_date[:10] in price["source"]
    assert f"x{ppl:.3f}" in measured[0]["cost"]


def test_exact_and_unmeasured_conversions_say_so(no_nvidia: dict) -> None:
    """MI300X (FNUZ) re-encodes DeepSeek-V3's FP8 exactly; a native plan has no conversion to price."""
    costs = {(p["model"], p["device"]): p["accuracy_cost"] for p in no_nvidia["plans"]}
    (fnuz,) = costs["deepseek-v3", "mi300x"]
    assert fnuz["provenance"] == "exact" and fnuz["price"] is None and fnuz["cost"].startswith("none")
    assert costs["qwen3-32b", "mi300x"] == []
    assert all(c["price"] is None and c["cost"].endswith("not measured")
               for cs in costs.values() for c in cs if c["provenance"] == "not measured")


def test_tokens_s_target_adds_replicas() -> None:
    one = fleet(Constraints(), WL, Assumptions(), ["olmo-2-7b"], ["l4"])["plans"][0]
    target = FleetWorkload(WL.prompt_len, WL.output_len, WL.batch,
                           target_tokens_s=one["output_tokens_s"]["value"] * 2.5)
    many = fleet(Constraints(), target, Assumptions(), ["olmo-2-7b"], ["l4"])["plans"][0]
    assert many["replicas"] == 3 and many["devices"] == 3 * one["devices"]
    assert many["rental_usd_per_mtok"]["value"] == pytest.approx(one["rental_usd_per_mtok"]["value"])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet") / "report"
    run(Constraints.of(exclude_vendor=["nvidia"]), WL, Assumptions(), MODELS, blocs=True, bloc_floor=60, out=out)
    return out


def test_files_agree(report: Path) -> None:
    assert sorted(p.name for p in report.iterdir()) == [".retarget-output", "fleet.csv", "fleet.html", "fleet.json"]
    result = json.loads((report / "fleet.json").read_text())
    rows = list(csv.DictReader((report / "fleet.csv").open()))
    assert len(rows) == len(result["plans"])
    for row, plan in zip(rows, result["plans"], strict=True):
        assert (row["model"], row["device"]) == (plan["model"], plan["device"])
        assert float(row["output_tokens_s"]) == pytest.approx(plan["output_tokens_s"]["value"], rel=1e-5)
        assert row["output_tokens_s_provenance"] == "predicted"
        assert row["quality_mmlu_pro_provenance"] in ("published", "unknown")
    ascend = next(r for r in rows if (r["model"], r["device"]) == ("deepseek-v3", "ascend-910b"))
    ppl, _, run_date = _committed_price("fp8-block128", "w8a8-int8")
    assert ascend["accuracy_provenance"] == "measured" and f"x{ppl:.3f}" in ascend["accuracy_cost"]
    assert "conversion-cost.json" in ascend["accuracy_source"] and run_date[:10] in ascend["accuracy_source"]
    models = {m["name"]: m for m in result["models"]}
    assert models["olmo-2-7b"]["quality"] == "not covered"
    assert models["deepseek-v3"]["native_format"]["linear"] == "fp8-e4m3-block128"  # read from the registry
    assert models["deepseek-v3"]["quality"]["value"] == 75.9
    page = (report / "fleet.html").read_text()
    assert "<script src=" not in page and "<link" not in page  # nothing to fetch
    unvalidated = [d["id"] for d in result["devices"] if not d["validated"]]
    assert "mlu370-x8" in unvalidated and "mi300x" not in unvalidated
    assert "no validation rows" in page and "mlu370-x8" in page.split("no validation rows")[1][:800]
    assert ascend["accuracy_cost"] in page.replace("&gt;", ">").replace("&lt;", "<")


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "never"
    for args in (["--exclude-vendor", "nvidai"], ["--origin", "XX"], ["--utilisation", "0"], ["--batch", "0"],
                 ["--models", "no-such-model"]):
        result = CliRunner().invoke(app, ["fleet", *args, "--out", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert not out.exists()


def _dump_dom(page: Path, profile_dir: Path) -> subprocess.CompletedProcess[str] | None:
    """PAGE's DOM after scripts ran, from a headless Chromium with no network use; None without Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    flags = ("--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking "
             "--disable-component-update --disable-sync --enable-logging=stderr --v=0 "
             "--virtual-time-budget=5000 --window-size=1400,1000").split()
    return subprocess.run([browser, *flags, f"--user-data-dir={profile_dir}", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def test_html_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = _dump_dom(report / "fleet.html", tmp_path / "profile")
    if dom is None:
        pytest.skip("chromium not found: `make chromium` installs Debian's chromium (apt-get install chromium)")
    assert dom.returncode == 0, dom.stderr[-2000:]
    errors = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not errors, errors
    assert dom.stdout.count('class="main-svg"') >= 1  # plotly drew the scatter...
    assert dom.stdout.count('class="point"') >= 5  # ...with its markers


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--exclude-vendor", "nvidia"], ["--blocs"]])
def test_cli_takes_under_five_seconds(args: list[str], tmp_path: Path) -> None:
    """The issue's bar for `retarget fleet --exclude-vendor nvidia` and the bloc view, process start included;
    run on an otherwise idle machine (`make test-slow`)."""
    import sys
    import time

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "retarget.cli", "fleet", *args, "--out", str(tmp_path / "t")],
                   check=True, capture_output=True)
    assert time.perf_counter() - start < 5.0


def test_a_user_profile_without_fleet_facts_is_listed_not_planned(tmp_path: Path) -> None:
    text = (PROFILE_DIR / "h100-sxm.yaml").read_text().replace("id: h100-sxm", "id: my-accel")
    (path := tmp_path / "my-accel.yaml").write_text(text)
    r = fleet(Constraints.of(), WL, Assumptions(), ["qwen3-32b"], [str(path), "mi300x"])
    assert {x["device"]: x["reason"] for x in r["excluded_devices"]} == {"my-accel": NO_FACTS}
    assert {p["device"] for p in r["plans"]} == {"mi300x"}
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["fleet", "--targets", f"{path},mi300x", "--models", "qwen3-32b",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "fleet.json").read_text())["excluded_devices"][0]["device"] == "my-accel"
