"""The reading edge (retarget.inputs): files, encodings, JSON, YAML and numbers."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retarget.errors import RetargetError
from retarget.inputs import MAX_NESTING, load_json, load_yaml, number, parse_json, parse_yaml, read_text


def _one_line(err: RetargetError, *names: str) -> None:
    assert "\n" not in str(err) and any(n in str(err) for n in names), str(err)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link-to-dev-zero", "folder", "oversize", "missing"])
def test_only_bounded_regular_files_are_read(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "oversize":
        path.write_bytes(b" " * 2048)
    with pytest.raises(RetargetError) as err:
        read_text(path, limit=1024)
    _one_line(err.value, str(path))


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "cp1252"])
def test_text_in_other_encodings_is_refused(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "profile.yaml"
    path.write_bytes("name: Ünïcødé\n".encode(encoding))
    with pytest.raises(RetargetError, match="not UTF-8|NUL") as err:
        read_text(path)
    _one_line(err.value, str(path))


@given(st.binary(max_size=300))
def test_any_bytes_read_as_text_or_refused(data: bytes) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.txt"
    path.write_bytes(data)
    try:
        text = read_text(path)
        assert text == data.decode("utf-8-sig")
    except RetargetError as err:
        _one_line(err, str(path))
    finally:
        path.unlink()


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@given(st.text(max_size=200) | JSON_VALUES.map(repr))
def test_any_text_parses_as_json_or_fails_in_one_line(text: str) -> None:
    try:
        parse_json(text, "x.json")
    except RetargetError as err:
        _one_line(err, "x.json")


@given(st.integers(min_value=1, max_value=50_000), st.sampled_from("[{"))
def test_json_nesting_is_bounded(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = '"a": 1' if opener == "{" else "1"
    text = (opener + ('"k": ' if opener == "{" else "")) * (depth - 1) + opener + inner + closer * depth
    if depth <= MAX_NESTING:
        parse_json(text, "deep.json")
    else:
        with pytest.raises(RetargetError, match="nested deeper"):
            parse_json(text, "deep.json")


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "[" + "9" * 5000 + "]"])
def test_json_numbers_are_finite_and_bounded(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(RetargetError) as err:
        load_json(path)
    _one_line(err.value, str(path))


def test_yaml_alias_fan_out_is_refused(tmp_path: Path) -> None:
    """The billion-laughs shape: 9 levels of 9 aliases each (a 0.7 kB file that expands to 9^9 nodes)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RetargetError, match="aliases are expanded") as err:
        load_yaml(path)
    _one_line(err.value, str(path))


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['true']", "x: !!python/name:os.system",
                                  "[" * 10_000, "a: b: c", "\t- x", "&a [*a]"])
def test_yaml_unsafe_or_malformed_is_one_line(text: str) -> None:
    with pytest.raises(RetargetError) as err:
        parse_yaml(text, "p.yaml")
    _one_line(err.value, "p.yaml")


@given(st.text(max_size=300))
def test_any_text_parses_as_yaml_or_fails_in_one_line(text: str) -> None:
    try:
        parse_yaml(text, "p.yaml")
    except RetargetError as err:
        _one_line(err, "p.yaml")


NUMBERS = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=30),
                    st.sampled_from(["inf", "-inf", "nan", "true", "1e400", "9" * 5000, "0x10", " 12 ", "1_000"]))


@given(NUMBERS, st.floats(-1e6, 1e6), st.floats(0, 1e6), st.booleans(), st.booleans())
def test_number_is_finite_and_in_range_or_refused(value: object, lo: float, span: float, integer: bool,
                                                  lo_open: bool) -> None:
    hi = lo + span
    try:
        got = number(value, source="src", field="fld", lo=lo, hi=hi, integer=integer, lo_open=lo_open)
    except RetargetError as err:
        _one_line(err, "fld")
        return
    assert math.isfinite(got) and lo <= got <= hi and not (lo_open and got == lo)
    assert not integer or isinstance(got, int)
