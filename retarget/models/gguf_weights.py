"""Read llama.cpp's block-quantized tensors out of a GGUF file as `QuantizedWeight`s, without loss.

Block layouts (llama.cpp ggml-common.h, https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-common.h):
    Q4_1: 32 weights in 20 bytes: fp16 d, fp16 m, 16 bytes of nibbles; byte j holds weight j (low nibble)
          and weight j + 16 (high nibble); w = d * q + m            -> scale d, float zero -m / d
    Q8_0: 32 weights in 34 bytes: fp16 d, 32 int8 q; w = d * q      -> codes q + 128, zero 128

llama.cpp stores the rows of attn_q / attn_k permuted for its rotary layout; the rows are put back in
Hugging Face order here, as transformers does when it dequantizes the same file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from retarget.errors import RetargetError
from retarget.quantize.weight import QuantizedWeight

BLOCK = 32
_HF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _q4_1(raw: np.ndarray, rows: int, cols: int) -> QuantizedWeight:
    blocks = raw.reshape(rows, cols // BLOCK, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:20]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).reshape(rows, cols)
    safe_d = np.where(d == 0, 1.0, d)
    zero = -m / safe_d
    codes = np.where(np.repeat(d == 0, BLOCK, axis=1), 0, codes).astype(np.uint8)
    return QuantizedWeight(torch.from_numpy(codes), torch.from_numpy(safe_d), torch.from_numpy(zero), 4, BLOCK)


def _q8_0(raw: np.ndarray, rows: int, cols: int) -> QuantizedWeight:
    blocks = raw.reshape(rows, cols // BLOCK, 34)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    q = blocks[..., 2:34].copy().view(np.int8).reshape(rows, cols)
    codes = (q.astype(np.int16) + 128).astype(np.uint8)
    zero = np.full_like(d, 128.0)
    return QuantizedWeight(torch.from_numpy(codes), torch.from_numpy(d), torch.from_numpy(zero), 8, BLOCK)


_DECODERS = {"Q4_1": _q4_1, "Q8_0": _q8_0}


def unpermute_rows(qw: QuantizedWeight, n_head: int) -> QuantizedWeight:
    """Undo llama.cpp's rotary row permutation: per head, rows stored as [dim/2, 2] go back to [2, dim/2]."""
    rows = qw.codes.shape[0]
    order = torch.arange(rows).reshape(n_head, rows // n_head // 2, 2).transpose(1, 2).reshape(rows)
    return QuantizedWeight(qw.codes[order], qw.scale[order], qw.zero[order], qw.bits, qw.group_size)


def read_quantized_linears(path: Path, n_head: int, n_kv_head: int) -> dict[str, QuantizedWeight]:
    """Map Hugging Face module names (e.g. `model.layers.0.self_attn.q_proj`) to the GGUF's quantized blocks.

    Only Q4_1 and Q8_0 tensors of a llama-family file are read; other types are left to the float path.
    The token embedding (`token_embd`) is returned under `lm_head` when the file has no separate output.
    """
    from retarget.models.checks import check_block, open_gguf

    reader = open_gguf(path)
    found: dict[str, QuantizedWeight] = {}
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    for t in reader.tensors:
        decode = _DECODERS.get(t.tensor_type.name)
        if decode is None:
            continue
        cols, rows = (int(x) for x in t.shape[:2])  # GGUF lists the fastest-varying dimension first
        try:
            qw = check_block(decode(np.asarray(t.data), rows, cols), t.name, str(path))
        except (ValueError, IndexError) as err:  # blocks that do not fill the declared shape
            raise RetargetError(f"blocks do not match shape {cols}x{rows}", source=str(path), field=t.name) from err
        m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", t.name)
        if m and m.group(2) in _HF_NAMES:
            if m.group(2) == "attn_q":
                qw = unpermute_rows(qw, n_head)
            elif m.group(2) == "attn_k":
                qw = unpermute_rows(qw, n_kv_head)
            found[f"model.layers.{m.group(1)}.{_HF_NAMES[m.group(2)]}"] = qw
        elif t.name == "output.weight" or (t.name == "token_embd.weight" and not has_output):
            found["lm_head"] = qw
    return found
