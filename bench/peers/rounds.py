"""The timing both CPU benchmarks share (bench/test_cpu_speed.py, bench/pareto.py): engines take turns in
interleaved rounds (a PROMPT-token prefill, then DECODE_TOKENS greedy decode steps each), the order rotating
every round, so load from anything else on the shared machine falls on all of them alike.

    python -m bench.peers.rounds '{"kind": "ort", "path": "out/model.onnx"}'   # one turn: a JSON line of times
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers.engines import Engine, EngineSpec, build_engine
from retarget import provenance

ROOT = Path(__file__).resolve().parents[2]

PROMPT = 128
DECODE_TOKENS = int(os.environ.get("RETARGET_BENCH_DECODE_TOKENS", "32"))
ROUNDS = int(os.environ.get("RETARGET_BENCH_ROUNDS", "10"))
# threads per engine (default: one per core); on a busy machine 1 keeps spin-waiting thread pools (llama.cpp's)
# from collapsing: measured here under load ~15 on 2 cores, llama.cpp decoded 0.3 tokens/s at 2 threads, 6-8 at 1
THREADS = int(os.environ.get("RETARGET_BENCH_THREADS", "0")) or len(os.sched_getaffinity(0))
# ORT's threads busy-wait between ops as llama.cpp's do (ORT's default); 0 turns it off for a shared machine
SPIN = os.environ.get("RETARGET_BENCH_SPIN", "1") != "0"

def interleaved(engines: dict[str, EngineSpec], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per prefill and per decode step, the engines taking turns; the order rotates every round. Each
    turn runs in a process of its own (a warm-up turn, then the timed one), so no other engine's threads,
    memory or caches share it: measured here, engines sharing a process slow each other unequally (the builder's
    artifact decoded 143 tokens/s among 6 engines in one process and 114 among 31; ours 129 and 118)."""
    times = {name: {"prefill_s": [], "decode_step_s": []} for name in engines}
    names = list(engines)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            turn = _turn_in_process(engines[name])
            times[name]["prefill_s"].append(turn["prefill_s"])
            times[name]["decode_step_s"].extend(turn["decode_step_s"])
        print(f"round {r + 1}/{rounds} timed", flush=True)
    return times


def _turn_in_process(spec: EngineSpec) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "bench.peers.rounds", json.dumps(dataclasses.asdict(spec))],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"timing {spec} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_turn(engine: Engine, prompt: np.ndarray) -> dict[str, Any]:
    """One PROMPT-token prefill and DECODE_TOKENS greedy steps, timed."""
    t0 = time.perf_counter()
    token = engine.prefill(prompt)
    prefill = time.perf_counter() - t0
    steps = []
    for _ in range(DECODE_TOKENS):
        t0 = time.perf_counter()
        token = engine.decode(token)
        steps.append(time.perf_counter() - t0)
    return {"prefill_s": prefill, "decode_step_s": steps}


def prompt_ids() -> np.ndarray:
    """The benchmark prompt: PROMPT token ids, the same in every process."""
    return np.random.default_rng(0).integers(100, 10_000, (1, PROMPT))


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """tokens/s from the medians (and the best round) of TIMES, with provenance."""
    out = {}
    for name, t in times.items():
        details = {"batch": 1, "prompt_len": PROMPT, "rounds": ROUNDS, "decode_tokens_per_round": DECODE_TOKENS,
                   "threads": THREADS, "interleaved": True}
        out[name] = {
            "prefill_tokens_per_s": provenance.measured(PROMPT / float(np.median(t["prefill_s"])), "tokens/s",
                                                        statistic="median", **details),
            "decode_tokens_per_s": provenance.measured(1 / float(np.median(t["decode_step_s"])), "tokens/s",
                                                       statistic="median", **details),
            "prefill_tokens_per_s_best": PROMPT / min(t["prefill_s"]),
            "decode_tokens_per_s_best": DECODE_TOKENS / min(
                sum(t["decode_step_s"][i:i + DECODE_TOKENS]) for i in range(0, len(t["decode_step_s"]), DECODE_TOKENS)),
        }
    return out


def main() -> None:
    """A turn in its own process: build the engine, one warm-up turn, then the timed turn as a JSON line."""
    spec = EngineSpec(**json.loads(sys.argv[1]))
    engine = build_engine(spec, PROMPT + DECODE_TOKENS, THREADS, SPIN)
    timed_turn(engine, prompt_ids())
    print(json.dumps(timed_turn(engine, prompt_ids())))


if __name__ == "__main__":
    main()
