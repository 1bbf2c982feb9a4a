"""Writers never destroy what they did not create, write all-or-nothing, and leave nothing on interrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retarget.errors import RetargetError
from retarget.outdir import MARKER, atomic_dir, check_output_dir, check_output_file, write_files
from tests.fuzz.conftest import invoke, snapshot

SHARED_CSV = Path(__file__).resolve().parents[2] / "bench" / "data" / "measured_benchmarks.csv"


def _tree(root: Path) -> None:
    """A user's folder: files, a non-empty folder, an empty one, a link, a FIFO, a model folder."""
    (root / "notes.txt").write_text("mine")
    (root / "full").mkdir()
    (root / "full" / "keep.txt").write_text("mine too")
    (root / "empty").mkdir()
    (root / "link").symlink_to(root / "full")
    os.mkfifo(root / "pipe")
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{}")


@given(name=st.sampled_from(["notes.txt", "full", "empty", "link", "pipe", "model", ".", "..", "new", "new/sub",
                             "full/keep.txt", "x" * 256, "link/inside"]))
def test_output_folder_never_destroys(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    root = tmp_path_factory.mktemp("user")
    _tree(root)
    before = snapshot(root)
    out = root / name
    cwd = os.getcwd()
    os.chdir(root / "full")
    try:
        with atomic_dir(out, inputs=[root / "model" / "config.json"]) as tmp:
            (tmp / "report.json").write_text("{}")
    except RetargetError as err:
        assert "\n" not in str(err) and "--out" in str(err)
        assert snapshot(root) == before
        return
    finally:
        os.chdir(cwd)
    after = snapshot(root)
    assert (out / "report.json").is_file() and (out / MARKER).is_file()
    real = out.resolve()
    rel = str(real.relative_to(root.resolve())) if real.is_relative_to(root.resolve()) else None
    assert {k: v for k, v in after.items() if not (rel and k.startswith(rel + "/"))} == \
        {k: v for k, v in before.items() if not (rel and k.startswith(rel + "/"))}
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_previous_output_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for text in ("first", "second"):
        with atomic_dir(out) as tmp:
            (tmp / "r.txt").write_text(text)
    assert (out / "r.txt").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("path", ["/proc/self/x.json", "/sys/x.json", "/dev/null", "/dev/x.json", ".",
                                  "/nonexistent-dir/x.json", "x" * 256 + ".json"])
def test_output_file_checked_first(path: str) -> None:
    with pytest.raises(RetargetError) as err:
        check_output_file(Path(path), "--json")
    assert "--json" in str(err.value) and "\n" not in str(err.value)


def test_multi_file_outputs_all_or_nothing(tmp_path: Path) -> None:
    good, bad = tmp_path / "r.json", tmp_path / "dir"
    bad.mkdir()
    with pytest.raises(RetargetError):
        write_files({good: "{}", bad: "x"}, {good: "--json", bad: "--markdown"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
    code, out, err = invoke("validate", "nope.csv", "--json", str(good), "--markdown", str(bad))
    assert code == 2 and "--markdown" in err and not good.exists()


def test_device_node_is_never_replaced(tmp_path: Path) -> None:
    link = tmp_path / "null-link.json"
    link.symlink_to("/dev/null")
    for target in (Path("/dev/null"), link):
        code, out, err = invoke("validate", "nope.csv", "--json", str(target))
        assert code == 2 and "--json" in err
    assert Path("/dev/null").is_char_device() and link.is_symlink()


def test_output_may_not_hold_the_input(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "m.gguf").write_bytes(b"GGUF")
    for out in (model, tmp_path):
        with pytest.raises(RetargetError, match="input|retarget"):
            check_output_dir(out, inputs=[model / "m.gguf"])


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("delay", [2.0, 4.5])
def test_signal_leaves_nothing(tmp_path: Path, sig: int, code: int, delay: float) -> None:
    """`lockin` killed at some point of its run: exit 130/143 (or 0 when it finished first), and either the
    whole output or none of it; never a temporary folder."""
    out = tmp_path / "lockin"
    proc = subprocess.Popen([sys.executable, "-m", "retarget.cli", "lockin", "--models", "llama-3.1-8b,deepseek-v3",
                             "--targets", "h100-sxm,mi300x", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (code, -sig, 0), err  # -sig: it came before the handler (still nothing written)
    assert "Traceback" not in err
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], ["lockin"]), left
    if left:
        assert {p.name for p in out.iterdir()} >= {MARKER, "lockin.json", "lockin.md", "lockin.png"}
