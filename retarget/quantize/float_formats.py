"""Small float element formats as bit patterns: FP8 E4M3 (OCP "fn": no infinities, S.1111.111 is NaN) and
FP4 E2M1 (OCP Microscaling v1.0, https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf).

A code is the format's bit pattern in a uint8 (E2M1: the low nibble, sign in bit 3). `value_table(element)`
maps every code to its float32 value, decoded from the bit fields; encoding rounds to the nearest
representable value and saturates at the largest finite one (448 for E4M3, 6 for E2M1).
"""

from __future__ import annotations

from functools import cache

import torch

from retarget.kernels.fp8_gemm.reference import E4M3_MAX
from retarget.kernels.mxfp4_gemm.reference import E2M1_VALUES

# element -> (exponent bits, mantissa bits, exponent bias, codes that are NaN)
FORMATS = {"e4m3": (4, 3, 7, (0x7F, 0xFF)), "e2m1": (2, 1, 1, ())}
BITS = {"e4m3": 8, "e2m1": 4}
MAX = {"e4m3": E4M3_MAX, "e2m1": E2M1_VALUES[-1]}


@cache
def value_table(element: str) -> torch.Tensor:
    """float32 [2**bits]: the value of every code (normal: 2**(e - bias) * (1 + m / 2**mbits); e = 0 subnormal)."""
    ebits, mbits, bias, nans = FORMATS[element]
    codes = torch.arange(2 ** (1 + ebits + mbits))
    sign = 1.0 - 2.0 * (codes >> (ebits + mbits)).float()
    exp = (codes >> mbits) & (2**ebits - 1)
    man = (codes & (2**mbits - 1)).float() / 2**mbits
    mag = torch.where(exp > 0, torch.exp2(exp.float() - bias) * (1 + man), 2.0 ** (1 - bias) * man)
    values = sign * mag
    values[list(nans)] = float("nan")
    return values


def decode(codes: torch.Tensor, element: str) -> torch.Tensor:
    """float32 values of uint8 CODES."""
    return value_table(element).to(codes.device)[codes.long()]


def encode_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Nearest E4M3 codes (ties to even, torch's cast), saturating at +-448."""
    return x.float().clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)


def encode_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Nearest E2M1 codes, saturating at +-6; a tie goes to the smaller magnitude, as in
    retarget.kernels.mxfp4_gemm.reference.quantize_mxfp4 (so both give the same MXFP4 codes)."""
    grid = torch.tensor(E2M1_VALUES, device=x.device)
    mag = torch.bucketize(x.abs().float(), (grid[1:] + grid[:-1]) / 2)
    return (mag + 8 * (x < 0)).to(torch.uint8)


def round_to(x: torch.Tensor, element: str) -> torch.Tensor:
    """X rounded to ELEMENT's nearest value (float32)."""
    encode = encode_e4m3 if element == "e4m3" else encode_e2m1
    return decode(encode(x), element)
