"""The edge of the program: every file, number and name a user hands in is checked here before it is used.

Inputs are regular files of bounded size (no FIFOs, devices or links to them), UTF-8 text, JSON with a
nesting limit, YAML through the safe loader with a limit on aliases and nesting; numbers are finite and in a
stated range. Anything else is a `RetargetError`: one line naming the file and the field, exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError

MAX_TEXT_BYTES = 64 * 2**20  # config.json, profile YAML, measurements CSV, kernel matrix JSON
MAX_NESTING = 64  # JSON / YAML containers inside each other
MAX_YAML_NODES = 1_000_000  # YAML nodes after alias expansion
MAX_NAME_CHARS = 4096  # a model or profile name / path given on the command line
MAX_NUMBER_CHARS = 64  # a number written as text (CLI, --set, CSV)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def ref_path(ref: str | Path, field: str | None = None) -> Path | None:
    """REF as a path when something exists there, else None (a name). Over-long or NUL-holding REFs fail."""
    ref = str(ref)
    if len(ref) > MAX_NAME_CHARS or "\0" in ref:
        raise RetargetError(f"name longer than {MAX_NAME_CHARS} characters or holds NUL", source=ref[:60] + "...",
                            field=field)
    try:
        path = Path(ref)
        return path if path.exists() or path.is_symlink() else None
    except OSError as err:  # ENAMETOOLONG for one component over 255 bytes
        raise RetargetError(f"not a usable path ({err.strerror})", source=ref[:60], field=field) from None


def check_regular_file(path: Path, *, limit: int = MAX_TEXT_BYTES, what: str | None = None) -> int:
    """Size of PATH, which must be (or link to) a regular file of at most LIMIT bytes."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise RetargetError(f"cannot read: {err.strerror}", source=str(path), field=what) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, device or socket)"
        raise RetargetError(f"is {kind}", source=str(path), field=what)
    if st.st_size > limit:
        raise RetargetError(f"{st.st_size} bytes, over the {limit}-byte limit", source=str(path), field=what)
    return st.st_size


def read_bytes(path: Path, *, limit: int = MAX_TEXT_BYTES, what: str | None = None) -> bytes:
    """The bytes of a regular file of at most LIMIT bytes (never blocks on a FIFO, never reads a device)."""
    check_regular_file(path, limit=limit, what=what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped after the check
                raise RetargetError("is not a regular file", source=str(path), field=what)
            data = f.read(limit + 1)
    except OSError as err:
        raise RetargetError(f"cannot read: {err.strerror}", source=str(path), field=what) from None
    if len(data) > limit:
        raise RetargetError(f"over the {limit}-byte limit", source=str(path), field=what)
    return data


def read_text(path: Path, *, limit: int = MAX_TEXT_BYTES, what: str | None = None) -> str:
    """A bounded regular file decoded as UTF-8 (a leading BOM is dropped); other encodings fail in one line."""
    data = read_bytes(path, limit=limit, what=what)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RetargetError(f"not UTF-8 text (invalid byte at offset {err.start})", source=str(path),
                            field=what) from None
    if "\0" in text:
        raise RetargetError("binary data (NUL byte), expected text", source=str(path), field=what)
    return text


def _json_depth(text: str) -> int:
    """Deepest nesting of JSON containers in TEXT (strings skipped), in linear time."""
    skeleton = re.sub(r'"(?:[^"\\]|\\.)*"', "", text).translate({ord(c): None for c in " \t\r\n"})
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", skeleton):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of the float range")
    return value


def parse_json(text: str, source: str, *, max_depth: int = MAX_NESTING) -> Any:
    """TEXT parsed as strict JSON: nesting at most MAX_DEPTH, no NaN/Infinity, floats finite."""
    if _json_depth(text) > max_depth:
        raise RetargetError(f"JSON nested deeper than {max_depth} levels", source=source)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError; so is a 5000-digit int
        raise RetargetError(f"not valid JSON ({str(err).splitlines()[0][:200]})", source=source) from None


def load_json(path: Path, *, limit: int = MAX_TEXT_BYTES, max_depth: int = MAX_NESTING) -> Any:
    """A bounded UTF-8 JSON file (see `parse_json`)."""
    return parse_json(read_text(path, limit=limit), str(path), max_depth=max_depth)


def _yaml_bounds(text: str, source: str, loader: Any) -> None:
    """One pass over the YAML events of TEXT: at most MAX_NESTING levels and MAX_YAML_NODES nodes once every
    alias is expanded (an alias counts as the whole node it repeats), so no fan-out bomb gets to be built."""
    import yaml

    sizes: dict[str, int] = {}  # anchor -> expanded node count
    stack: list[list[Any]] = [[None, 0]]  # [anchor, nodes so far] per open container
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_NESTING + 1:
                raise RetargetError(f"YAML nested deeper than {MAX_NESTING} levels", source=source)
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, nodes = stack.pop()
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:  # an alias inside its own anchor: a structure that holds itself
                raise RetargetError(f"recursive YAML alias *{event.anchor}", source=source)
            anchor, nodes = None, sizes[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            anchor, nodes = event.anchor, 1
        else:
            continue
        if anchor:
            sizes[anchor] = nodes
        stack[-1][1] += nodes
        if stack[-1][1] > MAX_YAML_NODES:
            raise RetargetError(f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded", source=source)


def parse_yaml(text: str, source: str) -> Any:
    """TEXT through YAML's safe loader (no Python tags) after a pass over its events that bounds nesting and
    the size aliases expand to (no fan-out bombs)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster
    try:
        _yaml_bounds(text, source, loader)
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = str(getattr(err, "problem", None) or err).splitlines()[0][:200]
        raise RetargetError(f"not valid YAML ({problem})", source=source,
                            field=f"line {mark.line + 1}" if mark else None) from None


def load_yaml(path: Path, *, limit: int = MAX_TEXT_BYTES) -> Any:
    """A bounded UTF-8 YAML file (see `parse_yaml`)."""
    return parse_yaml(read_text(path, limit=limit), str(path))


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def number(value: Any, *, source: str | None, field: str | None, lo: float, hi: float,
           integer: bool = False, lo_open: bool = False) -> float | int:
    """VALUE (a number, or text from the command line / CSV) as a finite number in [LO, HI] (LO excluded when
    LO_OPEN); INTEGER asks for a whole number. Booleans, NaN, inf and over-long text fail."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
            raise RetargetError(f"expected a number, got {text[:MAX_NUMBER_CHARS]!r}", source=source, field=field)
        value = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RetargetError(f"expected a number, got {type(value).__name__} {str(value)[:40]!r}",
                            source=source, field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise RetargetError(f"{value} is not a finite number", source=source, field=field)
    if integer and value != int(value):
        raise RetargetError(f"expected a whole number, got {value}", source=source, field=field)
    below = value <= lo if lo_open else value < lo
    if below or value > hi:
        span = f"{'(' if lo_open else '['}{_plain(lo)}, {_plain(hi)}]"
        raise RetargetError(f"{str(value)[:40]} is outside {span}", source=source, field=field)
    return int(value) if integer else value
