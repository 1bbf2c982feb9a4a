"""A model loads only when its weights are complete: checks run before and after transformers builds it.

Before: the config's numbers are finite and in range, the checkpoint's structure is sound (safetensors
header, GGUF tensor table) and every tensor the architecture needs is there with the right shape, so a
config declaring 1,000 layers over two layers of weights fails in a second instead of allocating them.
After: transformers reports no missing weight and every value is finite. Nothing is ever random-initialised.
"""

from __future__ import annotations

import math
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError
from retarget.inputs import MAX_NESTING, load_json, number, parse_json

# HF config key -> (low, high) for whole numbers; a value outside fails naming the key
CONFIG_INTS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 1024), "hidden_size": (1, 2**16), "intermediate_size": (1, 2**20),
    "num_attention_heads": (1, 1024), "num_key_value_heads": (1, 1024), "head_dim": (1, 4096),
    "vocab_size": (1, 2**22), "max_position_embeddings": (1, 2**24), "num_local_experts": (1, 4096),
    "num_experts": (1, 4096), "num_experts_per_tok": (1, 256), "moe_intermediate_size": (1, 2**20),
    "sliding_window": (1, 2**24)}
CONFIG_FLOATS: dict[str, tuple[float, float]] = {"rms_norm_eps": (0, 1), "layer_norm_eps": (0, 1),
                                                 "rope_theta": (1, 1e12), "initializer_range": (0, 10)}
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER_BYTES = 100 * 2**20
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blk)\.(\d+)\.")


def check_config(config: Any, source: str) -> dict[str, Any]:
    """CONFIG (an HF config dict) when every number it sizes the model with is a finite number in range,
    token ids lie inside the vocabulary and `quantization_config` is a mapping; else one line naming the key."""
    if not isinstance(config, dict):
        raise RetargetError("expected a JSON object", source=source)
    for key, (lo, hi) in CONFIG_INTS.items():
        value = config.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise RetargetError(f"expected a whole number, got {str(value)[:40]!r}", source=source, field=key)
            number(value, source=source, field=key, lo=lo, hi=hi, integer=True)
    for key, (lo, hi) in CONFIG_FLOATS.items():
        if config.get(key) is not None:
            number(config[key], source=source, field=key, lo=lo, hi=hi, lo_open=lo == 0)
    for key in ("model_type", "torch_dtype", "dtype", "hidden_act"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise RetargetError(f"expected text, got {type(config[key]).__name__}", source=source, field=key)
    vocab = config.get("vocab_size")
    for key in TOKEN_IDS:
        ids = config.get(key)
        for token in ids if isinstance(ids, list) else [] if ids is None else [ids]:
            number(token, source=source, field=key, lo=0, hi=(vocab or 2**22) - 1, integer=True)
    if "quantization_config" in config and not isinstance(config["quantization_config"], (dict, type(None))):
        raise RetargetError("expected a mapping", source=source, field="quantization_config")
    return config


def _layers_held(names: list[str]) -> int:
    return 1 + max((int(m.group(1)) for n in names if (m := _LAYER.search(n))), default=-1)


def _check_layer_count(declared: int, names: list[str], source: str, field: str) -> None:
    held = _layers_held(names)
    if declared != held:
        raise RetargetError(f"declares {declared} layers but the weights hold {held}", source=source, field=field)


# ---- safetensors ---------------------------------------------------------------------------------------------

def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} of one safetensors file, after checking its header: size, JSON, dtypes,
    shapes and data offsets that lie inside the file and match the shape."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise RetargetError("shorter than a safetensors header", source=str(path), field="header")
        length = struct.unpack("<Q", head)[0]
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise RetargetError(f"header length {length} does not fit the file ({size} bytes)", source=str(path),
                                field="header")
        raw = f.read(length)
    try:
        header = parse_json(raw.decode("utf-8"), str(path), max_depth=MAX_NESTING)
    except UnicodeDecodeError:
        raise RetargetError("header is not UTF-8 JSON", source=str(path), field="header") from None
    if not isinstance(header, dict):
        raise RetargetError("header is not a JSON object", source=str(path), field="header")
    data_bytes = size - 8 - length
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (dtype in SAFETENSORS_DTYPES and isinstance(shape, list)
                  and all(isinstance(d, int) and 0 <= d < 2**40 for d in shape)
                  and all(isinstance(o, int) for o in (start, end)) and 0 <= start <= end <= data_bytes
                  and end - start == math.prod(shape) * SAFETENSORS_DTYPES[dtype])
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise RetargetError("bad dtype, shape or data_offsets", source=str(path), field=str(name)[:200])
        out[name] = (dtype, tuple(shape))
    return out


def check_hf_folder(path: Path) -> None:
    """Before loading an HF folder: its config checks out, its safetensors headers are sound, and the model
    the config describes (built on the meta device: no memory) finds every tensor it needs, shaped right."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = check_config(load_json(path / "config.json"), str(path / "config.json"))
    held: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in sorted(path.glob("*.safetensors")):
        held |= safetensors_header(file)
    if config.get("num_hidden_layers"):
        _check_layer_count(config["num_hidden_layers"], list(held), str(path / "config.json"), "num_hidden_layers")
    try:
        hf_config = AutoConfig.from_pretrained(path)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_config)
    except Exception as err:  # noqa: BLE001 - any failure here is the user's config
        raise RetargetError(f"unsupported or inconsistent config ({str(err).splitlines()[0][:200]})",
                            source=str(path / "config.json")) from None
    prefix = f"{model.base_model_prefix}."
    tied = getattr(hf_config, "tie_word_embeddings", False)
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        found = held.get(name) or held.get(name.removeprefix(prefix))
        if found is None and _mxfp4_packed(name, held, config):
            continue  # gpt-oss MXFP4 experts: NAME_blocks + NAME_scales, which transformers decodes on load
        if found is None:
            raise RetargetError("missing tensor: the architecture needs it and nothing is random-initialised",
                                source=str(path), field=name)
        if found[1] != tuple(tensor.shape):
            raise RetargetError(f"shape {list(found[1])}, the config needs {list(tensor.shape)}", source=str(path),
                                field=name)
    _check_fp8_scales(held, config, str(path))


def _mxfp4_packed(name: str, held: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether NAME is stored as MXFP4 blocks and scales (a `quantization_config` with quant_method mxfp4)."""
    quant = config.get("quantization_config") or {}
    return quant.get("quant_method") == "mxfp4" and all(f"{name}_{part}" in held for part in ("blocks", "scales"))


def _check_fp8_scales(held: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """In an FP8 block checkpoint (quant_method fp8, DeepSeek-V3), every float8 weight has its
    `weight_scale_inv` (read by retarget.quantize.fp8_source); float8 weights are refused anywhere else."""
    from retarget.quantize.fp8_source import SCALE, WEIGHT, fp8_block_size

    blocks = fp8_block_size(config)
    for name, (dtype, _) in held.items():
        if dtype.startswith("F8_") and (blocks is None or not name.endswith(WEIGHT)):
            raise RetargetError("float8 tensor outside an FP8 block checkpoint (quantization_config quant_method "
                                "fp8 with weight_block_size)", source=source, field=name)
        if dtype.startswith("F8_") and name.removesuffix(WEIGHT) + SCALE not in held:
            raise RetargetError(f"float8 weight without its {SCALE.lstrip('.')}", source=source, field=name)


# ---- GGUF ----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _reader(path: str, mtime_ns: int, size: int) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except Exception as err:  # noqa: BLE001 - gguf raises ValueError/IndexError/struct errors on damage
        raise RetargetError(f"not a readable GGUF file ({type(err).__name__}: {str(err)[:200]})",
                            source=path) from None


def open_gguf(path: Path) -> Any:
    """A GGUFReader of PATH (read once however often asked); a damaged file fails in one line."""
    st = Path(path).stat()
    return _reader(str(path), st.st_mtime_ns, st.st_size)


def gguf_metadata(reader: Any, source: str) -> dict[str, Any]:
    """The GGUF's scalar and string metadata as {key: value} (token tables counted, not read)."""
    out: dict[str, Any] = {}
    try:
        for key, fld in reader.fields.items():
            if key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model":
                if key == "tokenizer.ggml.tokens":
                    out[key] = range(len(fld.data))
                continue
            if len(fld.data) > 64:
                raise RetargetError("metadata array longer than 64 entries", source=source, field=key)
            out[key] = fld.contents()
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as err:
        raise RetargetError(f"damaged metadata ({type(err).__name__})", source=source) from None
    return out


def _gguf_needs(config: dict[str, Any], experts: bool) -> list[tuple[str, tuple[int, ...] | None]]:
    """(tensor name, shape in GGUF order or None) every llama-family GGUF holds for CONFIG."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads") or heads
    ffn = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps") if experts else ("ffn_gate", "ffn_up", "ffn_down")
    needs: list[tuple[str, tuple[int, ...] | None]] = [
        ("token_embd.weight", (hidden, config.get("vocab_size") or 0)), ("output_norm.weight", (hidden,))]
    for i in range(config["num_hidden_layers"]):
        needs += [(f"blk.{i}.attn_norm.weight", (hidden,)), (f"blk.{i}.ffn_norm.weight", (hidden,)),
                  (f"blk.{i}.attn_q.weight", (hidden, heads * head_dim)),
                  (f"blk.{i}.attn_k.weight", (hidden, kv * head_dim)), (f"blk.{i}.attn_v.weight", None),
                  (f"blk.{i}.attn_output.weight", (heads * head_dim, hidden))]
        needs += [(f"blk.{i}.{name}.weight", None) for name in ffn]
    return needs


def check_gguf(path: Path) -> None:
    """Before loading a GGUF: readable structure, a supported llama-family config in range, every tensor
    the config needs present with the right shape and inside the file, float tensors finite."""
    import numpy as np

    from retarget.models.from_gguf import hf_config_from_gguf

    reader = open_gguf(path)
    source = str(path)
    metadata = gguf_metadata(reader, source)
    tensors = {t.name: t for t in reader.tensors}
    if not tensors:
        raise RetargetError("holds no tensors", source=source, field="tensor_count")
    config = hf_config_from_gguf(metadata, list(tensors), source=source)
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads"):
        if key not in config:
            raise RetargetError(f"metadata lacks the {key} entry", source=source)
    arch = metadata["general.architecture"]
    _check_layer_count(config["num_hidden_layers"], list(tensors), source, f"{arch}.block_count")
    size = path.stat().st_size
    for name, shape in _gguf_needs(config, bool(metadata.get(f"{arch}.expert_count"))):
        t = tensors.get(name)
        if t is None:
            raise RetargetError("missing tensor: the architecture needs it and nothing is random-initialised",
                                source=source, field=name)
        dims = tuple(int(d) for d in t.shape)
        if shape is not None and dims != shape:
            raise RetargetError(f"shape {list(dims)}, the metadata needs {list(shape)}", source=source, field=name)
        if not 1 <= len(dims) <= 4 or int(t.data_offset) + int(t.n_bytes) > size:
            raise RetargetError("tensor dims or data outside the file", source=source, field=name)
        if t.tensor_type.name in ("F32", "F16") and not np.isfinite(np.asarray(t.data)).all():
            raise RetargetError("holds NaN or infinite values", source=source, field=name)


# ---- after loading -------------------------------------------------------------------------------------------

def check_loaded(model: Any, info: dict[str, Any], source: str) -> None:
    """After transformers built MODEL: nothing it reported missing (which it would random-initialise) or
    mismatched, and every weight finite."""
    import torch

    for kind in ("missing_keys", "mismatched_keys"):
        keys = sorted(info.get(kind) or [])
        if keys:
            first = keys[0][0] if isinstance(keys[0], tuple) else keys[0]
            raise RetargetError(f"{kind.replace('_', ' ')[:-1]}: nothing is random-initialised", source=source,
                                field=str(first))
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise RetargetError("holds NaN or infinite values", source=source, field=name)


def check_block(qw: Any, name: str, source: str) -> Any:
    """QW (a QuantizedWeight read from the GGUF) when its scales and zeros are finite."""
    import torch

    if not (torch.isfinite(qw.scale).all() and torch.isfinite(qw.zero).all()):
        raise RetargetError("NaN or infinite block scales", source=source, field=name)
    return qw

