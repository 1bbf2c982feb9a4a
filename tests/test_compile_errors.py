"""Bad input to `retarget compile`: exit code 2, one line on stderr naming the file or field, no output left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_compile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "retarget.cli", "compile", *args],
                          capture_output=True, text=True, timeout=300)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], out: Path, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]
    assert not out.exists()
    if out.parent.is_dir():
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_missing_model_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clean_failure(run_compile(str(tmp_path / "nope.gguf"), "--out", str(out)), out, "nope.gguf",
                         "no such file")


def test_pickle_checkpoint_file_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "pytorch_model.bin"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    out = tmp_path / "out"
    assert_clean_failure(run_compile(str(ckpt), "--out", str(out)), out, "pytorch_model.bin", "pickle")


def test_hf_folder_with_only_pickle_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    out = tmp_path / "out"
    assert_clean_failure(run_compile(str(folder), "--out", str(out)), out, str(folder), "pickle")


def test_malformed_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + bytes(64))
    out = tmp_path / "out"
    assert_clean_failure(run_compile(str(bad), "--out", str(out)), out, "bad.gguf", "header")


def test_unknown_target(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clean_failure(run_compile("--target", "warp-drive-9000", "--out", str(out)), out, "warp-drive-9000")


@pytest.mark.parametrize("recipe", ["int5-g128-asym", "int4-g100-asym", "fp7"])
def test_unknown_recipe(tmp_path: Path, recipe: str) -> None:
    out = tmp_path / "out"
    assert_clean_failure(run_compile("--recipe", recipe, "--out", str(out)), out, "--recipe")


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    assert_clean_failure(run_compile("--out", str(out)), out, "--out")


def test_missing_parents_are_not_an_error(tmp_path: Path) -> None:
    from retarget.outdir import atomic_dir

    out = tmp_path / "not" / "yet" / "there"
    with atomic_dir(out) as tmp:
        (tmp / "report.json").write_text("{}")
    assert (out / "report.json").is_file()
