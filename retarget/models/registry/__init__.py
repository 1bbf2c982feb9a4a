"""The open-model registry: one YAML file per model in this folder.

Each file holds the model's HF `config.json` fields (`config`), where they come from (`source_url`), the
publisher's own parameter figures (`published`, with the URL they come from), the stated home hardware
(a hardware-profile id) and the native checkpoint format per tensor group. Specs are built through
`ModelSpec.from_hf_config`, the same code path a user's config.json takes.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from retarget.errors import RetargetError
from retarget.models.spec import ModelSpec

REGISTRY_DIR = Path(__file__).parent


class Published(BaseModel):
    """The publisher's parameter figures, as stated (billions), and how to compare with them.

    `active_convention` says what the publisher's active figure counts: `all` (embedding table and lm_head
    included, DeepSeek's wording), `no_input_embedding` (OpenAI's gpt-oss card), `no_embeddings` (neither;
    the only reading under which GLM-4.5 and MiniMax figures match their configs, so inferred, not stated).
    `excluded_params_billion` is what the publisher counts that the spec does not model (a vision tower).
    `nominal` marks a figure that is only the model's size name ("7B"), not a count.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_params_billion: float
    active_params_billion: float | None = None
    nonembedding_params_billion: float | None = None
    min_active_params_billion: float | None = None
    mean_active_params_billion: float | None = None
    excluded_params_billion: float = 0.0
    checkpoint_bytes: int | None = None  # total_size of the safetensors index, where read
    checkpoint_url: str | None = None
    active_convention: Literal["all", "no_input_embedding", "no_embeddings"] = "all"
    nominal: bool = False
    text: str
    url: str


class RegistryEntry(BaseModel):
    """One registry file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hf_id: str
    source_url: str
    note: str | None = None
    published: Published
    home_hardware: str | None = None
    home_hardware_note: str
    native_format: dict[str, str]
    native_format_note: str
    config: dict[str, Any]
    path: str = ""

    def spec(self) -> ModelSpec:
        """Build this model's ModelSpec (RetargetError if the recorded config lacks a needed field)."""
        try:
            return ModelSpec.from_hf_config(self.config, self.name, source=self.path or self.name,
                                            native_format=self.native_format)
        except RetargetError as err:
            if self.note is None:
                raise
            raise RetargetError(f"{err.args[0]} ({self.note})") from None


def _display_path(path: Path) -> str:
    """Path relative to the repository/package root, so reports do not leak this machine's folders."""
    return str(path.relative_to(REGISTRY_DIR.parents[2]))


@cache
def registry_entries() -> dict[str, RegistryEntry]:
    """Every registry file, keyed by model name (including entries whose config is incomplete)."""
    entries: dict[str, RegistryEntry] = {}
    for path in sorted(REGISTRY_DIR.glob("*.yaml")):
        try:
            data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            entry = RegistryEntry.model_validate({**data, "path": _display_path(path)})
        except (yaml.YAMLError, TypeError) as err:
            raise RetargetError(f"not a YAML mapping: {err}", source=_display_path(path)) from None
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(map(str, first["loc"]))
            raise RetargetError(first["msg"], source=_display_path(path), field=field) from None
        entries[entry.name] = entry
    return entries


@cache
def load_registry() -> dict[str, ModelSpec]:
    """ModelSpecs of every registry model whose recorded config is complete, keyed by name."""
    specs: dict[str, ModelSpec] = {}
    for name, entry in registry_entries().items():
        try:
            specs[name] = entry.spec()
        except RetargetError:
            continue  # e.g. Falcon-H1-34B: sizes not read from any source; get_spec() says which
    return specs


def get_entry(name: str) -> RegistryEntry:
    """Registry entry by name or HF id (case-insensitive); unknown names list the closest matches."""
    entries = registry_entries()
    by_key = {k.lower(): e for e in entries.values() for k in (e.name, e.hf_id)}
    entry = by_key.get(name.lower())
    if entry is None:
        close = difflib.get_close_matches(name.lower(), list(by_key), n=4, cutoff=0.4)
        names = dict.fromkeys(by_key[c].name for c in close)
        hint = f"; did you mean {', '.join(names)}?" if names else ""
        raise RetargetError(f"unknown model {name!r}{hint} (`retarget inspect --list` shows all)")
    return entry


def get_spec(name: str) -> ModelSpec:
    """ModelSpec of a registry model by name or HF id."""
    return get_entry(name).spec()
