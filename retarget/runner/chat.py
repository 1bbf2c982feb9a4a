"""`retarget run ARTIFACT`: answer one prompt, or chat turn by turn, the tokens streamed as they are decoded
(greedy, the chat template applied, stopping at the model's end-of-sequence tokens)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from retarget.errors import RetargetError
from retarget.runner.artifact import Artifact

EXIT_WORDS = {"/exit", "/quit"}


def run(artifact: Path, prompt: str | None, max_new_tokens: int = 256, threads: int | None = None,
        out: TextIO = sys.stdout, lines: Iterator[str] | None = None) -> None:
    """Answer PROMPT with ARTIFACT, or (no PROMPT) chat over LINES (default: stdin) until end of input or /exit."""
    opened = Artifact.open(artifact, threads)
    if prompt is not None:
        answer(opened, [{"role": "user", "content": prompt}], max_new_tokens, out)
        return
    messages: list[dict[str, str]] = []
    interactive = lines is None and sys.stdin.isatty()
    for line in lines if lines is not None else _stdin_lines(interactive):
        if line.strip() in EXIT_WORDS:
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.strip()})
        messages.append({"role": "assistant", "content": answer(opened, messages, max_new_tokens, out)})


def answer(opened: Artifact, messages: list[dict[str, str]], max_new_tokens: int, out: TextIO) -> str:
    """Stream the reply to MESSAGES onto OUT as it is decoded; returns its text."""
    ids = opened.prompt_ids(messages)
    room = opened.context_length - len(ids)
    if room <= 0:
        raise RetargetError(f"the prompt has {len(ids)} tokens, the context {opened.context_length}", field="prompt")
    new: list[int] = []
    shown = ""
    for token in opened.runtime.stream(ids, min(max_new_tokens, room), opened.stop_ids):
        new.append(token)
        text = opened.tokenizer.decode(new, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # a multi-byte character still incomplete: wait for its next token
            out.write(text[len(shown):])
            out.flush()
            shown = text
    text = opened.tokenizer.decode(new, skip_special_tokens=True)
    out.write(text[len(shown):] + "\n")
    out.flush()
    return text


def _stdin_lines(interactive: bool) -> Iterator[str]:
    """Lines of stdin, with a prompt when a person is typing."""
    while True:
        try:
            yield input("> ") if interactive else next(sys.stdin)
        except (EOFError, StopIteration):
            return
