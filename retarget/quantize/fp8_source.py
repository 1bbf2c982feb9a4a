"""DeepSeek-V3's native FP8 block weights as source blocks, so the `keep` recipe carries them into the artifact.

A checkpoint whose config.json says `quantization_config: {quant_method: fp8, weight_block_size: [R, C]}`
(DeepSeek-V3/R1, Kimi K2: R = C = 128) stores each quantized Linear M as two safetensors tensors:

    M.weight            float8_e4m3fn [N, K]
    M.weight_scale_inv  float32 [ceil(N / R), ceil(K / C)]  the weight is fp8 value x scale_inv, per block

transformers decodes these only on a GPU (its FP8 quantizer refuses a CPU), so we decode them ourselves: each
becomes one QuantizedWeight (e4m3 codes, group C, block_rows R) keyed by the module path; scales that are all
powers of two (DeepSeek-V3.1's UE8M0 form) are recorded as e8m0, the others as fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from retarget.errors import RetargetError
from retarget.quantize.safetensors_index import tensor_files
from retarget.quantize.weight import QuantizedWeight

WEIGHT, SCALE = ".weight", ".weight_scale_inv"


def fp8_block_size(config: dict[str, Any]) -> tuple[int, int] | None:
    """(rows, cols) of an FP8 block checkpoint's config.json mapping CONFIG, or None if it is not one."""
    quant = config.get("quantization_config") or {}
    block = quant.get("weight_block_size")
    if quant.get("quant_method") != "fp8" or block is None:
        return None
    if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
        raise RetargetError("expected [rows, cols] of positive integers", source="config.json",
                            field="quantization_config.weight_block_size")
    return block[0], block[1]


def is_power_of_two(scale: torch.Tensor) -> bool:
    """Whether every entry of SCALE (positive) is an exact power of two."""
    mantissa, _ = torch.frexp(scale)
    return bool((mantissa == 0.5).all())


def fp8_block_weight(codes: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
                     name: str = "", source: str | None = None) -> QuantizedWeight:
    """CODES (float8_e4m3fn [N, K]) times SCALE_INV ([ceil(N / rows), ceil(K / cols)]) as one QuantizedWeight."""
    rows, cols = block
    n, k = codes.shape
    if codes.dtype != torch.float8_e4m3fn:
        raise RetargetError(f"expected float8_e4m3fn, got {codes.dtype}", source=source, field=name + WEIGHT)
    if tuple(scale_inv.shape) != (-(-n // rows), -(-k // cols)):
        raise RetargetError(f"shape {list(scale_inv.shape)}, the blocks need {[-(-n // rows), -(-k // cols)]}",
                            source=source, field=name + SCALE)
    scale = scale_inv.float()
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise RetargetError("scales must be finite and positive", source=source, field=name + SCALE)
    scale = scale.repeat_interleave(rows, dim=0)[:n].contiguous()
    return QuantizedWeight(codes.view(torch.uint8), scale, torch.zeros_like(scale), bits=8, group_size=cols,
                           element="e4m3", scale_format="e8m0" if is_power_of_two(scale) else "fp32",
                           block_rows=rows)


def read_fp8_blocks(folder: Path, config: dict[str, Any]) -> dict[str, QuantizedWeight]:
    """Every FP8 block Linear of an HF folder (config.json mapping CONFIG), keyed by module path (empty unless
    it is an FP8 block checkpoint)."""
    from safetensors import safe_open

    block = fp8_block_size(config)
    if block is None:
        return {}
    where = tensor_files(folder)
    weights = {}
    for name in sorted(n for n in where if n.endswith(SCALE)):
        module = name.removesuffix(SCALE)
        if module + WEIGHT not in where:
            raise RetargetError("scale without its weight", source=str(folder), field=name)
        with safe_open(where[module + WEIGHT], "pt") as fw, safe_open(where[name], "pt") as fs:
            weights[module] = fp8_block_weight(fw.get_tensor(module + WEIGHT), fs.get_tensor(name), block, module,
                                               str(folder))
    return weights
