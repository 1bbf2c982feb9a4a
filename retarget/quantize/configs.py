"""Quantization configs: small frozen dataclasses, one per workflow, named by the recipe string they stand for.

    quantize_(model, Int4WeightOnlyConfig(group_size=128, symmetric=False))   # "int4-g128-asym"
    quantize_(model, Int8WeightOnlyConfig())                                  # "int8-channel-sym"
    quantize_(model, KeepSourceConfig(), source_weights=loaded.source_weights) # "keep"

Recipe strings are parsed by a registry: each module that defines configs registers a name pattern and a
factory with `register_recipe_name` at import (retarget/quantize/__init__.py imports every such module), so
`config_from_name` knows every recipe without this file listing them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from retarget.errors import RetargetError


@dataclass(frozen=True)
class QuantConfig:
    """Base of every quantization config: versioned, JSON round-trip, named."""

    version: ClassVar[int] = 1
    needs_calibration: ClassVar[bool] = False  # True: quantize_ collects activation statistics first
    include_lm_head: bool = True

    @property
    def name(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "version": self.version, "name": self.name,
                **dataclasses.asdict(self)}


@dataclass(frozen=True)
class IntWeightOnlyConfig(QuantConfig):
    """Round-to-nearest weight-only integers, group-wise along in_features (group_size=None: per channel).

    lm_head_bits: the output projection is quantized too, symmetric in blocks of 32 at this width (8 by
    default, like llama.cpp's Q8_0 output.weight: measured here on SmolLM2, INT4 g64 on lm_head as well
    raises perplexity / fp32 from 1.28 to 1.44); at the recipe's own width (the `-head4` names) it is quantized
    like every other layer, by the recipe's algorithm. A tied input embedding reads the same blocks.
    """

    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = False
    lm_head_bits: int = 8

    def __post_init__(self) -> None:
        if self.bits not in (2, 3, 4, 8):
            raise ValueError(f"bits must be 2, 3, 4 or 8, got {self.bits}")
        if self.lm_head_bits not in (4, 8):
            raise ValueError(f"lm_head_bits must be 4 or 8, got {self.lm_head_bits}")
        if self.group_size is not None and (self.group_size < 16 or self.group_size & (self.group_size - 1)):
            raise ValueError(f"group_size must be a power of two >= 16, got {self.group_size}")

    @property
    def name(self) -> str:
        group = "channel" if self.group_size is None else f"g{self.group_size}"
        head = f"-head{self.lm_head_bits}" if self.lm_head_bits != IntWeightOnlyConfig.lm_head_bits else ""
        return f"int{self.bits}-{group}-{'sym' if self.symmetric else 'asym'}{head}"


@dataclass(frozen=True)
class Int4WeightOnlyConfig(IntWeightOnlyConfig):
    bits: int = 4


@dataclass(frozen=True)
class Int8WeightOnlyConfig(IntWeightOnlyConfig):
    bits: int = 8
    group_size: int | None = None
    symmetric: bool = True


@dataclass(frozen=True)
class KeepSourceConfig(QuantConfig):
    """Carry the source checkpoint's own quantized blocks over unchanged (e.g. GGUF Q4_1 / Q8_0).

    element: the source blocks' element ('int': GGUF; 'e2m1': MXFP4 experts; 'e4m3': FP8 blocks), which picks
    the lowering that carries them."""

    element: str = "int"

    @property
    def name(self) -> str:
        return "keep"


@dataclass(frozen=True)
class FloatConfig(QuantConfig):
    """No quantization: the float32 baseline."""

    include_lm_head: bool = False

    @property
    def name(self) -> str:
        return "fp32"


@dataclass(frozen=True)
class RecipeName:
    """One family of recipe strings: a full-match regex and the config it stands for."""

    pattern: re.Pattern[str]
    factory: Callable[[re.Match[str]], QuantConfig]
    example: str


_RECIPE_NAMES: list[RecipeName] = []


def register_recipe_name(pattern: str, factory: Callable[[re.Match[str]], QuantConfig], example: str) -> None:
    """Make `config_from_name` parse names matching PATTERN (a regex, matched in full) with FACTORY.

    EXAMPLE describes the family in the unknown-recipe error, e.g. 'int{2,3,4,8}-g{16..}|channel-{sym,asym}'.
    FACTORY may raise ValueError (from the config's own checks); the user sees it as a recipe error.
    """
    _RECIPE_NAMES.append(RecipeName(re.compile(pattern), factory, example))


def known_recipe_forms() -> list[str]:
    """The example of every registered recipe family."""
    return [entry.example for entry in _RECIPE_NAMES]


def _expand(form: str) -> list[str]:
    """'a{b,c}[-d], e' -> ['ab', 'ab-d', 'ac', 'ac-d', 'e'] (alternatives, brace choices, optional parts)."""
    alternatives = re.split(r",\s+(?![^{]*\})", form.strip())
    if len(alternatives) > 1:
        return [name for alt in alternatives for name in _expand(alt)]
    m = re.search(r"\{([^{}]*)\}|\[([^\[\]]*)\]", form)
    if m is None:
        return [form.strip()]
    choices = [c.strip() for c in m[1].split(",")] if m[1] is not None else ["", m[2]]
    return [name for c in choices for name in _expand(form[:m.start()] + c + form[m.end():])]


def recipe_names() -> list[str]:
    """Every concrete recipe name the registered families' examples spell out (and config_from_name accepts)."""
    import retarget.quantize  # noqa: F401  (registers every recipe family)

    names = []
    for name in dict.fromkeys(n for form in known_recipe_forms() for n in _expand(form)):
        try:
            config_from_name(name)
        except RetargetError:
            continue
        names.append(name)
    return names


def config_from_name(name: str) -> QuantConfig:
    """Parse a recipe string, e.g. 'int4-g128-asym', 'int8-channel-sym', 'keep', 'fp32'."""
    import retarget.quantize  # noqa: F401  (registers every recipe family; a no-op once imported)

    for entry in _RECIPE_NAMES:
        m = entry.pattern.fullmatch(name)
        if m is None:
            continue
        try:
            return entry.factory(m)
        except ValueError as err:
            raise RetargetError(f"recipe {name!r}: {err}", field="--recipe") from err
    raise RetargetError(f"unknown recipe {name!r}; known forms: {', '.join(known_recipe_forms())}",
                        field="--recipe")


INT_NAME = r"int(?P<bits>\d+)-(?:g(?P<group>\d+)|channel)-(?P<sym>sym|asym)(?:-head(?P<head>\d+))?"


def int_fields(m: re.Match[str]) -> dict[str, Any]:
    """bits, group_size, symmetric and lm_head_bits of a name matched by a pattern containing INT_NAME."""
    head = {"lm_head_bits": int(m["head"])} if m["head"] else {}
    return {"bits": int(m["bits"]), "group_size": int(m["group"]) if m["group"] else None,
            "symmetric": m["sym"] == "sym", **head}


register_recipe_name("keep", lambda m: KeepSourceConfig(), "keep")
register_recipe_name("fp32", lambda m: FloatConfig(), "fp32")
register_recipe_name(INT_NAME, lambda m: IntWeightOnlyConfig(**int_fields(m)),
                     "int4-{g32,g64,g128}-{sym,asym}, int8-channel-sym, int8-g128-asym, int3-g64-asym")
