"""Ahead-of-time compile specifications: what `portability` compiles for each kernel variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retarget.kernels._config import KernelConfig


@dataclass(frozen=True)
class AotCase:
    """One kernel variant at one representative shape, ready for triton.compile on any target.

    `types` gives the Triton type of every runtime argument ('*fp16', 'i32', ...); `aligned` names the
    arguments specialised as divisible by 16 (base pointers and leading strides, as the JIT would for
    contiguous tensors of aligned shapes). `mma` is the operand format the tensor cores should take
    natively ('f16', 'bf16', 'e4m3', 'i8', 'mxf4'), or None for a kernel that uses no MMA (GEMV).
    """

    op: str
    variant: str
    shape: str
    fn: Any
    types: dict[str, str]
    constexprs: dict[str, Any]
    config: KernelConfig
    mma: str | None
    aligned: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.op}/{self.variant}"

    def signature(self) -> dict[str, str]:
        """Triton signature: every kernel argument in order, constexprs marked 'constexpr'."""
        missing = [a for a in self.fn.arg_names if a not in self.types and a not in self.constexprs]
        if missing:
            raise ValueError(f"{self.name}: no type for {missing}")
        return {a: "constexpr" if a in self.constexprs else self.types[a] for a in self.fn.arg_names}

    def attrs(self) -> dict[tuple[int, ...], list[list[Any]]]:
        """Divisibility hints in the form ASTSource takes (triton >= 3.3)."""
        return {(self.fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in self.aligned}


_TRITON_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "uint8": "u8", "int8": "i8",
                 "int32": "i32",
                 "float8_e4m3fn": "fp8e4nv", "float8_e4m3fnuz": "fp8e4b8", "float8_e5m2": "fp8e5"}
# operand formats as they appear in MMA instruction names (see portability.mma_format)
_MMA_NAMES = {"float16": "f16", "bfloat16": "bf16", "int8": "i8", "float8_e4m3fn": "e4m3",
              "float8_e4m3fnuz": "e4m3fnuz", "float8_e5m2": "e5m2"}


def pointer_type(dtype: Any) -> str:
    """Triton pointer type string for a torch dtype ('*fp16', '*fp8e4nv', ...)."""
    return "*" + _TRITON_NAMES[str(dtype).removeprefix("torch.")]


def mma_name(dtype: Any) -> str:
    """The MMA operand format a torch dtype should run as natively ('f16', 'e4m3', 'i8', ...)."""
    return _MMA_NAMES[str(dtype).removeprefix("torch.")]
