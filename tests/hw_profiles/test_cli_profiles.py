"""`retarget profiles` through the CLI: table, one profile, and exit code 2 on a malformed YAML."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from retarget.cli import app

runner = CliRunner()


def test_profiles_table_lists_every_device() -> None:
    result = runner.invoke(app, ["profiles"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for pid in ("h100-sxm", "mi300x", "tpu-v6e", "cpu-x86", "ascend-910c"):
        assert pid in result.output


def test_profiles_show_json_with_override() -> None:
    result = runner.invoke(app, ["profiles", "show", "mi300x", "--set", "fp8=0", "--json"])
    assert result.exit_code == 0
    assert '"fp8_variant": "none"' in result.output


def test_malformed_profile_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    src = (Path(__file__).resolve().parents[2] / "retarget/hw_profiles/profiles/l4.yaml").read_text()
    path.write_text(src.replace("memory_gb: {value: 24,", "memory_gb: {value: -24,"))
    result = runner.invoke(app, ["profiles", "show", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "memory_gb" in result.output


def test_unknown_profile_exits_2() -> None:
    result = runner.invoke(app, ["profiles", "show", "h1000"], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "known:" in result.output
