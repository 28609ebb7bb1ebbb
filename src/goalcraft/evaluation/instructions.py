"""Instruction sets: tasks with several phrasings each, read from data files the user can extend.

An entry of ``[evaluation] instruction_sets`` is one of

``steve1``                 STEVE-1's 11 evaluation prompts with their paraphrases (packaged data file)
``corpus``                 the tasks of the configured task files (the task_vocabulary asset; without
                           one, the corpus's ``tasks.json``), with their paraphrases
``unseen_paraphrases``     the Crafter tasks' instructions with new paraphrases that no goal model and
                           no goal space trains on (packaged: ``goalcraft/crafter/unseen_paraphrases.json``):
                           the fair synonym-robustness test
``<file>.json``            any ``{task: {"instruction": ..., "paraphrases": [...]}}`` file, or a STEVE-1
                           evaluation ``instruction_variants.json`` (``{task: {"canonical", "variants"}}``)
``<file>.yaml``            MineDojo task prompts (``programmatic_tasks.yaml``, ``creative_tasks.yaml``),
                           or a STEVE-1 evaluation ``eval_tasks.yaml`` (``en_instruction`` and every
                           ``instruction_variants`` variant as paraphrases)
``<folder>``               a folder of MineStudio task configs (``text:`` per file)

Sets read from a STEVE-1 evaluation file are named ``aimc:<file stem>``.

Paths are relative to the corpus root (or absolute). Only the instruction and its paraphrases are
phrasings here; a ``tasks.json``'s narration lines describe footage, they are not instructions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from goalcraft.data.task_vocabulary import (
    STEVE1_PROMPTS_FILE,
    Task,
    TaskVocabulary,
    instruction_variants_tasks,
    is_instruction_variants,
    load_minestudio_tasks,
    load_task_vocabulary,
    load_yaml_tasks,
    normalise_text,
)


#: Instruction sets shipped with goalcraft: name → (package, file).
PACKAGED_SETS = {"steve1": ("goalcraft.data", STEVE1_PROMPTS_FILE),
                 "unseen_paraphrases": ("goalcraft.crafter", "unseen_paraphrases.json")}


@dataclass(frozen=True)
class InstructionTask:
    name: str
    phrasings: tuple[str, ...]  # the instruction first, then its paraphrases


@dataclass(frozen=True)
class InstructionSet:
    name: str
    tasks: tuple[InstructionTask, ...]

    def rows(self) -> list[tuple[str, str, bool]]:
        """(task, phrasing, is_paraphrase) for every phrasing, tasks in file order."""
        return [(t.name, p, i > 0) for t in self.tasks for i, p in enumerate(t.phrasings)]


def _from_mapping(name: str, data: object, where: str) -> InstructionSet:
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{where}: expected a non-empty JSON object of tasks")
    tasks = []
    for task, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("instruction"), str) or not spec["instruction"].strip():
            raise ValueError(f"{where}: task {task!r} needs a non-empty \"instruction\" string")
        paraphrases = spec.get("paraphrases", [])
        if not isinstance(paraphrases, list) or not all(isinstance(p, str) for p in paraphrases):
            raise ValueError(f"{where}: task {task!r}: \"paraphrases\" must be a list of strings")
        phrasings = list(dict.fromkeys(normalise_text(p) for p in [spec["instruction"], *paraphrases] if p.strip()))
        tasks.append(InstructionTask(str(task), tuple(phrasings)))
    return InstructionSet(name, tuple(tasks))


def load_instruction_set(entry: str, corpus_root: Path, vocabulary: TaskVocabulary | None = None) -> InstructionSet:
    """One instruction set (see the module docstring for the accepted entries)."""
    if entry == "corpus":
        if vocabulary is None:
            vocabulary = load_task_vocabulary(corpus_root, ["tasks.json"], steve1_prompts=False, task_files_set=False)
        mapping = TaskVocabulary(vocabulary.corpus_tasks()).to_mapping()
        return _from_mapping("corpus", mapping, "the task vocabulary") if mapping else InstructionSet("corpus", ())
    if entry in PACKAGED_SETS:
        package, filename = PACKAGED_SETS[entry]
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        return _from_mapping(entry, json.loads(text), filename)
    path = Path(corpus_root) / entry
    name = path.stem
    if path.is_dir():
        return _from_tasks(f"minestudio:{path.name}", load_minestudio_tasks(path))
    if not path.is_file():
        raise ValueError(f"instruction set {entry!r}: {path} not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        tasks = load_yaml_tasks(path)
        return _from_tasks(tasks[0].source if tasks else f"minedojo:{path.stem}", tasks)
    if path.suffix.lower() != ".json":
        raise ValueError(f"instruction set {entry!r}: expected a .json or .yaml file or a MineStudio folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"instruction set {entry!r}: {path} is not valid JSON ({exc})") from exc
    if is_instruction_variants(data):
        return _from_tasks(f"aimc:{path.stem}", instruction_variants_tasks(data, f"aimc:{path.stem}", str(path)))
    return _from_mapping(name, data, str(path))


def _from_tasks(name: str, tasks: Sequence[Task]) -> InstructionSet:
    """An instruction set of loaded tasks: each task's instruction, then its paraphrases."""
    return InstructionSet(name, tuple(InstructionTask(t.name, tuple(dict.fromkeys((t.instruction, *t.paraphrases))))
                                      for t in tasks))


def load_instruction_sets(entries: Sequence[str], corpus_root: Path,
                          vocabulary: TaskVocabulary | None = None) -> list[InstructionSet]:
    sets = [load_instruction_set(e, corpus_root, vocabulary) for e in entries]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"instruction sets with the same name: {names}")
    return sets
