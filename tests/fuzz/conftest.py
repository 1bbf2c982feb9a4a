"""Property-based fuzzing of every input edge (Hypothesis).

Profiles: `ci` (the default: a few examples per property, the whole folder in about two minutes on two
cores) and `fuzz` (`make fuzz`: many more examples). Every test runs under an alarm, so a hang fails it
instead of stalling the run. The shared assertion: exit 0 with finite output, or exit 2 with one line that
names the file or field; never a traceback, a leftover temporary or a deleted file.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from retarget.cli import app

settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=300, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
HANG_S = int(os.environ.get("FUZZ_HANG_S", "240"))  # one whole test (all its examples); `make fuzz` raises it


class Hang(Exception):
    """A fuzz test ran past HANG_S."""


@pytest.fixture(autouse=True)
def no_hang(request: pytest.FixtureRequest) -> Iterator[None]:
    limit = HANG_S * (10 if request.node.get_closest_marker("slow") else 1)

    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"no result after {limit} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr). Exceptions other than SystemExit propagate
    as a traceback would."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_clean(code: int, out: str, err: str, *names: str) -> None:
    """Exit 0, or exit 2 with one error line naming one of NAMES (callers check JSON output with `finite_json`)."""
    assert "Traceback" not in out + err
    if code == 0:
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out[-2000:], err[-2000:])
    assert len(lines) == 1, err
    assert any(n in lines[0] for n in names), (lines[0], names)


def finite_json(text: str) -> object:
    """TEXT parsed as JSON that holds no NaN or Infinity (json.loads would accept them)."""
    def refuse(name: str) -> None:
        raise AssertionError(f"non-finite number {name} in the output")

    return json.loads(text, parse_constant=refuse)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under FOLDER with its bytes (links recorded by target), to prove nothing was touched."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out
