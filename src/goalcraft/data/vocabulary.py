"""Task vocabulary for the clip stage's keyword filter."""

from __future__ import annotations

import json
from pathlib import Path


def load_keywords(path: Path) -> tuple[str, ...]:
    """Phrases from a text file (one a line, ``#`` comments), a JSON list, or a tasks.json mapping
    ``{task: {"instruction", "paraphrases", ...}}`` (task names with ``_`` read as spaces)."""
    text = path.read_text(encoding="utf-8")
    phrases: list[str] = []
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, list):
            phrases = [str(p) for p in data]
        elif isinstance(data, dict):
            for task, spec in data.items():
                phrases.append(task.replace("_", " "))
                if isinstance(spec, dict):
                    phrases += [spec["instruction"]] if "instruction" in spec else []
                    phrases += list(spec.get("paraphrases", []))
        else:
            raise ValueError(f"{path}: expected a JSON list or object of tasks")
    else:
        phrases = [line.split("#", 1)[0] for line in text.splitlines()]
    seen: dict[str, None] = {}
    for phrase in phrases:
        phrase = " ".join(phrase.lower().split())
        if phrase:
            seen.setdefault(phrase, None)
    return tuple(seen)
