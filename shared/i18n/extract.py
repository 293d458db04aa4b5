"""Babel extraction of a keyed catalogue (``services/checkins/emotions.py``): a module whose
``SOURCE`` maps keys to English text and ``PLURALS`` maps keys to ``(count, singular,
plural)``. Each key becomes the message context, and ``translator_note(key)``, when the
module has it, becomes the translators' note. Named in ``babel.cfg``."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

Extracted = tuple[int, str, tuple[str, ...], list[str]]


def keyed_catalogue(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[Extracted]:
    path = Path(fileobj.name).resolve().relative_to(Path.cwd())
    module = importlib.import_module(".".join(path.with_suffix("").parts))
    source = fileobj.read().decode()
    note = getattr(module, "translator_note", lambda key: None)

    def line_of(key: str) -> int:
        index = source.find(f'"{key}"')
        return source.count("\n", 0, index) + 1 if index >= 0 else 0

    def comments(key: str) -> list[str]:
        text = note(key)
        return [f"{key}: {text}" if text else key]

    for key, text in module.SOURCE.items():
        line = line_of(key) or line_of(key.split(".")[0])
        yield line, "pgettext", (key, text), comments(key)
    for key, (_count, singular, plural) in module.PLURALS.items():
        yield line_of(key), "npgettext", (key, singular, plural), comments(key)
