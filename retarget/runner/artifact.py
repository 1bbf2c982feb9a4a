"""An artifact folder `retarget compile` wrote, opened for generation: the ONNX Runtime session, the tokenizer
and the token ids that end a generation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError

MODEL_FILE = "model.onnx"


@dataclass
class Artifact:
    """The session, tokenizer and stop ids of one artifact folder."""

    path: Path
    runtime: Any  # retarget.export.runtime.OrtCausalLM
    tokenizer: Any
    stop_ids: frozenset[int]
    context_length: int

    @classmethod
    def open(cls, path: Path, threads: int | None = None) -> Artifact:
        """Open the artifact folder PATH (one line naming the missing file if it is not one)."""
        from retarget.export.runtime import OrtCausalLM

        path = Path(path)
        if not path.is_dir():
            raise RetargetError("no such artifact folder", source=str(path))
        for name in (MODEL_FILE, "tokenizer.json"):
            if not (path / name).is_file():
                raise RetargetError(f"not an artifact of `retarget compile`: no {name}", source=str(path))
        config = _json(path / "config.json")
        generation = _json(path / "generation_config.json")
        tokenizer = _tokenizer(path)
        eos = generation.get("eos_token_id", config.get("eos_token_id", tokenizer.eos_token_id))
        stop = frozenset(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return cls(path, OrtCausalLM(path / MODEL_FILE, threads), tokenizer, stop,
                   int(config.get("max_position_embeddings", 2048)))

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """MESSAGES rendered with the tokenizer's chat template (plain text of the last message without one)."""
        if self.tokenizer.chat_template:
            return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        return self.tokenizer(messages[-1]["content"])["input_ids"]


def _json(path: Path) -> dict[str, Any]:
    """PATH parsed, {} when absent (artifacts compiled before config.json was written)."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RetargetError(f"not JSON ({err})", source=str(path)) from err


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise RetargetError(f"cannot load the tokenizer ({str(err).splitlines()[0]})", source=str(path)) from err
