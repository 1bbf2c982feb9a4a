"""gpt-oss's native MXFP4 experts as source blocks, so the `keep` recipe carries them into the artifact unchanged.

A checkpoint whose config.json says `quantization_config.quant_method: mxfp4` stores each fused expert parameter
P.W (retarget.quantize.experts) as two safetensors tensors:

    P.W_blocks  uint8 [E, out, in / 32, 16]  two E2M1 codes per byte, the low nibble first along `in`
    P.W_scales  uint8 [E, out, in / 32]      E8M0 exponents: scale = 2 ** (s - 127)

Expert e's [out, in] matrix becomes one QuantizedWeight (e2m1 codes, group 32, e8m0 scales) keyed `P.W.e`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from retarget.quantize.experts import expert_key
from retarget.quantize.safetensors_index import tensor_files
from retarget.quantize.weight import QuantizedWeight

BLOCKS, SCALES = "_blocks", "_scales"


def is_mxfp4_checkpoint(folder: Path) -> bool:
    """True if FOLDER's config.json declares MXFP4 quantization."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return (config.get("quantization_config") or {}).get("quant_method") == "mxfp4"


def unpack_mxfp4(blocks: torch.Tensor, scales: torch.Tensor) -> list[QuantizedWeight]:
    """One QuantizedWeight [out, in] per expert from BLOCKS [E, out, G, 16] and SCALES [E, out, G]."""
    experts, out, groups, nbytes = blocks.shape
    codes = torch.stack([blocks & 0x0F, blocks >> 4], dim=-1).reshape(experts, out, groups * nbytes * 2)
    scale = torch.exp2(scales.float() - 127)
    return [QuantizedWeight(codes[e].contiguous(), scale[e], torch.zeros_like(scale[e]), bits=4,
                            group_size=2 * nbytes, element="e2m1", scale_format="e8m0") for e in range(experts)]


def pack_mxfp4(weights: list[QuantizedWeight]) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of unpack_mxfp4: (blocks, scales) in the checkpoint's layout."""
    codes = torch.stack([w.codes for w in weights])
    experts, out, k = codes.shape
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).reshape(experts, out, k // 32, 16)
    scales = torch.stack([w.scale.log2().round() + 127 for w in weights]).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def read_mxfp4_experts(folder: Path) -> dict[str, QuantizedWeight]:
    """Every MXFP4 expert matrix of an HF folder, keyed like quantized_weights (empty unless MXFP4)."""
    from safetensors import safe_open

    if not is_mxfp4_checkpoint(folder):
        return {}
    where = tensor_files(folder)
    weights = {}
    for name in sorted(n for n in where if n.endswith(BLOCKS)):
        base = name.removesuffix(BLOCKS)
        with safe_open(where[name], "pt") as fb, safe_open(where[base + SCALES], "pt") as fs:
            experts = unpack_mxfp4(fb.get_tensor(name), fs.get_tensor(base + SCALES))
        path, _, matrix = base.rpartition(".")
        weights.update({expert_key(path, matrix, e): w for e, w in enumerate(experts)})
    return weights
