"""llama.cpp CPU rows (fresh34_benchmarks.csv): CPU labels find their profiles by alias; a run stating fewer threads
than the chip's cores and an ik_llama.cpp run are skipped with a reason a user can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from retarget.perf.labels import match_hardware
from retarget.perf.validate import plan_row, read_measurements, validate_rows

FRESH34 = Path(__file__).resolve().parents[2] / "bench" / "data" / "fresh34_benchmarks.csv"
needs_fresh34 = pytest.mark.skipif(not FRESH34.exists(), reason=f"not found: {FRESH34}")


def _row(hardware: str, engine: str, devices: int = 1, phase: str = "decode") -> dict[str, str]:
    """A llama-bench row (Llama-3.1-8B Q4_0; tg128 for decode, pp512 for prefill)."""
    lengths = ("0", "128") if phase == "decode" else ("512", "0")
    return {"source_url": "https://example.org", "model": "Llama-3.1-8B", "quant_format": "Q4_0 (GGUF)",
            "hardware": hardware, "num_devices": str(devices), "engine": engine, "phase": phase, "batch_size": "1",
            "input_len": lengths[0], "output_len": lengths[1], "metric": "tokens/s", "value": "10"}


@pytest.mark.parametrize("label, profile", [
    ("AMD Ryzen 9 7950X (16 cores, Zen 4)", "ryzen-9-7950x"),
    ("AMD Ryzen Threadripper PRO 5975WX (32 cores, Zen 3)", "threadripper-pro-5975wx"),
    ("Intel Xeon Gold 6226R (16 cores per socket, 2 sockets)", "xeon-gold-6226r"),
    ("AMD Ryzen Threadripper 3970X (32 cores)", "threadripper-3970x"),
    ("AMD Ryzen 7 8840U (8 cores)", "ryzen-7-8840u"),
    ("Intel Core i5-1135G7 (4 cores)", "core-i5-1135g7"),
    ("Intel Core i5-9500 (6 cores)", "core-i5-9500"),
    ("Intel Core i7-7820HQ (4 cores)", "core-i7-7820hq"),
    ("Intel N100 (4 cores)", "n100"),
])
def test_cpu_labels_find_their_profiles(label: str, profile: str) -> None:
    assert match_hardware(label) == profile


def test_a_run_on_fewer_threads_than_cores_is_skipped_and_one_on_every_core_is_not() -> None:
    chip = "AMD Ryzen 9 7950X (16 cores, Zen 4)"
    skipped = plan_row(_row(chip, "llama.cpp (CPU, mainline, 4 threads, AVX-512)"))
    assert isinstance(skipped, str)
    assert "4 threads of 16 cores" in skipped and "a run on every core is" in skipped
    every_core = plan_row(_row(chip, "llama.cpp (CPU, mainline, 16 threads, AVX-512)"))
    assert not isinstance(every_core, str) and every_core.profile.id == "ryzen-9-7950x"
    assert not isinstance(plan_row(_row(chip, "llama.cpp (CPU, threads not stated)")), str)


def test_the_cores_of_every_socket_count() -> None:
    """A 2-socket Xeon is 2 devices of the per-socket profile: 32 threads use every core, 16 do not."""
    xeon = "Intel Xeon Gold 6226R (16 cores per socket, 2 sockets)"
    both = plan_row(_row(xeon, "llama.cpp (CPU, 32 threads, AVX-512)", devices=2))
    assert not isinstance(both, str) and both.kwargs["devices"] == 2
    assert "16 threads of 32 cores" in plan_row(_row(xeon, "llama.cpp (CPU, 16 threads, AVX-512)", devices=2))


def test_a_thread_count_does_not_skip_an_accelerator_row() -> None:
    plan = plan_row(_row("NVIDIA RTX 4090 24GB", "llama.cpp (CUDA, 4 threads)"))
    assert not isinstance(plan, str) and plan.profile.cores is None


def test_ik_llama_cpp_is_not_predicted_as_llama_cpp() -> None:
    reason = plan_row(_row("AMD Ryzen 9 7950X (16 cores, Zen 4)", "ik_llama.cpp (CPU, PR #54 branch, 16 threads)",
                           phase="prefill"))
    assert isinstance(reason, str) and reason.startswith("ik_llama.cpp runs its own CPU kernels")
    assert "a mainline llama.cpp run on the same machine is" in reason


@needs_fresh34
def test_fresh34_cpu_rows_are_predicted_or_skipped_for_a_stated_reason() -> None:
    """Every mainline llama.cpp CPU row on every core is predicted on its chip's profile; the rest are skipped: fewer
    threads than cores, or ik_llama.cpp (or, before the engine is looked at, a format or model not mapped)."""
    rows = read_measurements(FRESH34)
    cpu = [(row, res) for row, res in zip(rows, validate_rows(rows, held_out=True), strict=True)
           if "(CPU" in row["engine"]]
    assert len(cpu) >= 50
    for row, res in cpu:
        if row["engine"].startswith("ik_llama.cpp"):
            assert res.predicted is None and res.skipped, row["engine"]
        elif res.predicted is None:
            assert "threads of" in res.skipped and "a run on every core is" in res.skipped, row["engine"]
        else:
            assert res.profile == match_hardware(row["hardware"]) and res.predicted > 0
    assert sum(res.predicted is not None for _, res in cpu) >= 14
    assert sum("threads of" in res.skipped for _, res in cpu) >= 4
