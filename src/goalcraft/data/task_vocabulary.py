"""Task vocabularies for success mining: what an agent can be asked to do, and how people say it.

A :class:`Task` has a ``name`` (the task id of its source), the ``instruction`` a goal clip is
captioned with, and the ``phrasings`` that mark it in a transcript. Loaders, one per source:

* :func:`load_tasks_json` — ``{task: {"instruction", "paraphrases"?, "narration"?}}`` (the Crafter
  corpus's ``tasks.json``). Phrasings: the narration lines, then the paraphrases, then the
  instruction.
* :func:`load_steve1_prompts` — STEVE-1's 11 evaluation prompts with their paraphrases (packaged as
  ``goalcraft/data/steve1_prompts.json``, same format).
* :func:`load_minedojo_tasks` — MineDojo's ``programmatic_tasks.yaml`` / ``creative_tasks.yaml``
  (``{task_id: {"prompt", "guidance", ...}}``): the prompt is the instruction and the one phrasing.
* :func:`load_minestudio_tasks` — a folder of MineStudio task configs (``<task>.yaml`` holding a
  ``text:`` field): task name = file stem, the text is the instruction and the one phrasing.
* :func:`load_aimc_tasks` — a STEVE-1 evaluation task config in konder/aimc's ``eval_tasks.yaml``
  form (``{"tasks": {task: {"en_instruction", "instruction_variants": {category: {"name",
  "description", "variants": [...]}}, ...}}}``): the instruction is ``en_instruction`` (else
  ``instruction``, else ``zh_instruction``), the paraphrases every variant of every category in file
  order; phrasings = paraphrases, then the instruction.
* :func:`load_instruction_variants` — aimc's ``instruction_variants.json``
  (``{task: {"canonical", "variants": [...]}}``): ``canonical`` is the instruction, the variants the
  paraphrases.
* :func:`load_task_files` — several of the above by path (what the pipeline's settings list), plus
  STEVE-1's prompts; task names must be unique across them. A ``.json`` file is an
  ``instruction_variants.json`` when its entries have ``canonical`` (and no ``instruction``), else a
  tasks.json; a ``.yaml`` file is an ``eval_tasks.yaml`` when it has a ``tasks`` mapping, else MineDojo.

The clip stage's keyword filter reads the same files as a flat phrase list: :func:`load_keywords`.

Every text is whitespace-normalised (:func:`goalcraft.data.transcripts.normalise_text`). A file that
does not have the expected structure raises :class:`ValueError` naming the file and entry: a task
vocabulary is configuration, not corpus data, so it is never half-loaded.

Matching (:class:`TaskMatcher`). Texts are compared as *word sequences*: whitespace-normalised,
case-folded (``str.casefold``), typographic apostrophes read as ``'``, then split into runs of
letters/digits/``_`` (everything else separates words). A phrasing matches a text when its words
occur in the text consecutively; so matching is case-insensitive, whole-word and ignores
punctuation (``"Got some WOOD!"`` contains ``"got some wood"``; ``"trees"`` does not contain
``"tree"``; ``"let's"`` is the two words ``let s`` on both sides). For a text, each task's match is its
longest matching phrasing (in words); the best task is the one with the longest match; ties go to
the task listed first (then, within a task, to the phrasing listed first).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from goalcraft.data.transcripts import normalise_text

__all__ = [
    "STEVE1_PROMPTS_FILE",
    "PhraseMatch",
    "Task",
    "TaskMatcher",
    "TaskVocabulary",
    "load_task_vocabulary",
    "read_task_vocabulary",
    "write_task_vocabulary",
    "instruction_variants_tasks",
    "is_instruction_variants",
    "load_aimc_tasks",
    "load_instruction_variants",
    "load_keywords",
    "load_minedojo_tasks",
    "load_minestudio_tasks",
    "load_steve1_prompts",
    "load_task_files",
    "load_tasks_json",
    "load_yaml_tasks",
    "phrase_words",
    "tasks_from_mapping",
]

#: The packaged STEVE-1 evaluation prompts (``goalcraft/data/steve1_prompts.json``).
STEVE1_PROMPTS_FILE = "steve1_prompts.json"

_WORD = re.compile(r"\w+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class Task:
    """One task: ``name`` (its id in ``source``), the ``instruction`` goal clips are captioned with,
    and the ``phrasings`` that mark it in a transcript (normalised, de-duplicated, in order)."""

    name: str
    instruction: str
    phrasings: tuple[str, ...]
    source: str
    # What a tasks.json says separately (other loaders have only the instruction): paraphrases are
    # instructions too (training phrasings, synonym tests); narration describes footage.
    paraphrases: tuple[str, ...] = ()
    narration: tuple[str, ...] = ()


def phrase_words(text: str) -> tuple[str, ...]:
    """The word sequence used for matching (see the module docstring)."""
    return tuple(_WORD.findall(normalise_text(text).casefold().translate(_APOSTROPHES)))


def _make_task(name: str, instruction: str, phrasings: Iterable[str], source: str, *,
               paraphrases: Sequence[str] = (), narration: Sequence[str] = ()) -> Task:
    seen: dict[tuple[str, ...], str] = {}
    for phrase in phrasings:
        phrase = normalise_text(phrase)
        words = phrase_words(phrase)
        if words and words not in seen:
            seen[words] = phrase
    return Task(name, normalise_text(instruction), tuple(seen.values()), source,
                tuple(normalise_text(p) for p in paraphrases), tuple(normalise_text(n) for n in narration))


# --------------------------------------------------------------------------------------------------
# Loaders


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read a JSON task vocabulary: {exc}") from exc


def _text_field(where: str, spec: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = spec.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not normalise_text(value):
        raise ValueError(f"{where}: {key!r} must be a non-blank string, got {value!r}")
    return value


def _text_list(where: str, spec: dict[str, Any], key: str) -> list[str]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of strings")
    return value


def _task_specs(data: Any, where: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(name, spec, where-of-the-task)`` of a JSON ``{task: {...}}`` mapping, each checked to be an object."""
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{where}: expected a non-empty JSON object of tasks")
    for name, spec in data.items():
        at = f"{where}: task {name!r}"
        if not normalise_text(name):
            raise ValueError(f"{where}: blank task name")
        if not isinstance(spec, dict):
            raise ValueError(f"{at}: expected an object, got {type(spec).__name__}")
        yield name, spec, at


def tasks_from_mapping(data: Any, source: str, where: str) -> list[Task]:
    """Tasks from a ``{task: {"instruction", "paraphrases"?, "narration"?}}`` mapping (file order)."""
    tasks = []
    for name, spec, at in _task_specs(data, where):
        instruction = _text_field(at, spec, "instruction", required=True)
        assert instruction is not None
        narration, paraphrases = _text_list(at, spec, "narration"), _text_list(at, spec, "paraphrases")
        tasks.append(_make_task(name, instruction, narration + paraphrases + [instruction],
                                str(spec.get("source") or source), paraphrases=paraphrases, narration=narration))
    return tasks


def load_tasks_json(path: Path, *, source: str | None = None) -> list[Task]:
    """A ``tasks.json`` vocabulary; ``source`` defaults to the file stem."""
    path = Path(path)
    return tasks_from_mapping(_read_json(path), source or path.stem, str(path))


def load_steve1_prompts(path: Path | None = None) -> list[Task]:
    """STEVE-1's 11 evaluation prompts (dig, dirt, sky, leaves, wood, seeds, flower, explore, swim,
    underwater, inventory): the first prompt of each is the instruction, the others paraphrases."""
    if path is not None:
        return load_tasks_json(path, source="steve1")
    text = resources.files("goalcraft.data").joinpath(STEVE1_PROMPTS_FILE).read_text(encoding="utf-8")
    return tasks_from_mapping(json.loads(text), "steve1", STEVE1_PROMPTS_FILE)


def _read_yaml(path: Path) -> Any:
    import yaml  # PyYAML; only task loading needs it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~15x faster on MineDojo's files
    try:
        with open(path, "rb") as handle:
            return yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read YAML: {exc}") from exc


def load_minedojo_tasks(yaml_path: Path, *, source: str | None = None) -> list[Task]:
    """MineDojo ``programmatic_tasks.yaml`` / ``creative_tasks.yaml`` (also ``playthrough_task.yaml``):
    ``{task_id: {"prompt": str, ...}}``. The prompt is the instruction and the phrasing; other keys
    (``guidance``, ``category``, ``collection``, ``source``) are ignored. ``source`` defaults to
    ``minedojo:<file stem>``. The templated ``tasks_specs.yaml`` is not a task list and is refused."""
    path = Path(yaml_path)
    return _minedojo_tasks(_read_yaml(path), path, source)


def _minedojo_tasks(data: Any, path: Path, source: str | None) -> list[Task]:
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a mapping of MineDojo task ids to task specs")
    tasks = []
    for task_id, spec in data.items():
        at = f"{path}: task {task_id!r}"
        if not isinstance(spec, dict):
            raise ValueError(f"{at}: expected a mapping, got {type(spec).__name__}")
        if "{" in str(task_id):
            raise ValueError(f"{at}: a task template (tasks_specs.yaml), not a task")
        prompt = _text_field(at, spec, "prompt", required=True)
        assert prompt is not None
        tasks.append(_make_task(str(task_id), prompt, [prompt], source or f"minedojo:{path.stem}"))
    return tasks


def _is_aimc_tasks(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("tasks"), dict)


def _variant_texts(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: variants must be a list of strings")
    return [v for v in value if normalise_text(v)]


def _paraphrased_task(name: str, instruction: str, variants: Sequence[str], source: str) -> Task:
    """A task whose paraphrases are ``variants`` (normalised, de-duplicated, without the instruction)."""
    own = normalise_text(instruction)
    paraphrases = [p for p in dict.fromkeys(normalise_text(v) for v in variants) if p != own]
    return _make_task(name, instruction, [*paraphrases, instruction], source, paraphrases=paraphrases)


def _aimc_tasks(data: Any, path: Path, source: str | None) -> list[Task]:
    if not _is_aimc_tasks(data) or not data["tasks"]:
        raise ValueError(f"{path}: expected an evaluation task config with a non-empty 'tasks' mapping")
    tasks = []
    for name, spec in data["tasks"].items():
        at = f"{path}: task {name!r}"
        if not isinstance(spec, dict):
            raise ValueError(f"{at}: expected a mapping, got {type(spec).__name__}")
        key = next((k for k in ("en_instruction", "instruction", "zh_instruction") if spec.get(k) is not None), None)
        if key is None:
            raise ValueError(f"{at}: no 'en_instruction' (nor 'instruction', 'zh_instruction')")
        instruction = _text_field(at, spec, key, required=True)
        assert instruction is not None
        categories = spec.get("instruction_variants") or {}
        if not isinstance(categories, dict):
            raise ValueError(f"{at}: 'instruction_variants' must be a mapping of categories")
        variants: list[str] = []
        for category, entry in categories.items():
            where = f"{at}: instruction_variants.{category}"
            if isinstance(entry, dict):
                variants += _variant_texts(where, entry.get("variants", []))
            else:  # a category given as a bare list, as aimc also accepts
                variants += _variant_texts(where, entry)
        tasks.append(_paraphrased_task(str(name), instruction, variants, source or f"aimc:{path.stem}"))
    return tasks


def load_aimc_tasks(yaml_path: Path, *, source: str | None = None) -> list[Task]:
    """An ``eval_tasks.yaml`` (module docstring); ``source`` defaults to ``aimc:<file stem>``. The file's
    other sections (``evaluation``, ``prior_evaluation``, ``task_sets``) and the tasks' other keys
    (``env_config``, ``max_steps``, ``success_visuals_path``, ...) are not read."""
    path = Path(yaml_path)
    return _aimc_tasks(_read_yaml(path), path, source)


def load_yaml_tasks(yaml_path: Path, *, source: str | None = None) -> list[Task]:
    """A task YAML file of either kind: an ``eval_tasks.yaml`` (a ``tasks`` mapping) or MineDojo tasks."""
    path = Path(yaml_path)
    data = _read_yaml(path)
    return _aimc_tasks(data, path, source) if _is_aimc_tasks(data) else _minedojo_tasks(data, path, source)


def is_instruction_variants(data: Any) -> bool:
    """Whether a JSON task mapping is an ``instruction_variants.json`` (entries with ``canonical``)."""
    specs = list(data.values()) if isinstance(data, dict) else []
    return (any(isinstance(v, dict) and "canonical" in v for v in specs)
            and not any(isinstance(v, dict) and "instruction" in v for v in specs))


def instruction_variants_tasks(data: Any, source: str, where: str) -> list[Task]:
    """Tasks from an ``instruction_variants.json`` mapping ``{task: {"canonical", "variants"}}``."""
    tasks = []
    for name, spec, at in _task_specs(data, where):
        canonical = _text_field(at, spec, "canonical", required=True)
        assert canonical is not None
        tasks.append(_paraphrased_task(str(name), canonical, _variant_texts(at, spec.get("variants", [])), source))
    return tasks


def load_instruction_variants(path: Path, *, source: str | None = None) -> list[Task]:
    """An ``instruction_variants.json`` (module docstring); ``source`` defaults to ``aimc:<file stem>``."""
    path = Path(path)
    return instruction_variants_tasks(_read_json(path), source or f"aimc:{path.stem}", str(path))


def load_minestudio_tasks(folder: Path, *, source: str | None = None) -> list[Task]:
    """MineStudio task configs: every ``*.yaml`` / ``*.yml`` directly in ``folder`` (sorted by name;
    not recursive: MineStudio's ``simple/`` and ``hard/`` hold the same task names). Task name = file
    stem; the ``text`` field is the instruction and the phrasing. A YAML file without a ``text`` key
    is not a task config (e.g. a shared base config) and is skipped; one whose ``text`` is not a
    non-blank string raises. ``source`` defaults to ``minestudio:<folder name>``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of MineStudio task configs")
    tasks = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        data = _read_yaml(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping, got {type(data).__name__}")
        if "text" not in data:
            continue
        text = _text_field(str(path), data, "text", required=True)
        assert text is not None
        tasks.append(_make_task(path.stem, text, [text], source or f"minestudio:{folder.name}"))
    return tasks


def load_task_files(corpus_root: Path, task_files: Sequence[str], *, steve1_prompts: bool = True) -> list[Task]:
    """The vocabulary of several task files, in the given order, then STEVE-1's prompts.

    Each entry is relative to ``corpus_root`` (or absolute) and read by its kind: a folder is a
    MineStudio task folder, a ``.json`` file a ``tasks.json`` vocabulary or an
    ``instruction_variants.json``, a ``.yaml`` / ``.yml`` file MineDojo tasks or an ``eval_tasks.yaml``
    (told apart by content, see the module docstring). A missing entry, another kind, or a task name
    defined twice (e.g. MineStudio's ``simple/`` and ``hard/`` together, or a MineStudio and a Crafter
    ``collect_wood``) raises
    :class:`ValueError`: task names are what transcript matches and ratings are labelled with.
    """
    tasks: list[Task] = []
    origin: dict[str, str] = {}
    for entry in task_files:
        path = Path(corpus_root) / entry
        if path.is_dir():
            loaded = load_minestudio_tasks(path)
        elif not path.is_file():
            raise ValueError(f"task file {entry!r} not found under the corpus root {str(corpus_root)!r}")
        elif path.suffix.lower() == ".json":
            data = _read_json(path)
            loaded = (instruction_variants_tasks(data, f"aimc:{path.stem}", str(path)) if is_instruction_variants(data)
                      else tasks_from_mapping(data, path.stem, str(path)))
        elif path.suffix.lower() in (".yaml", ".yml"):
            loaded = load_yaml_tasks(path)
        else:
            raise ValueError(f"task file {entry!r}: expected a .json or .yaml file or a folder of MineStudio tasks")
        tasks += loaded
        for task in loaded:
            if task.name in origin:
                raise ValueError(f"task {task.name!r} is defined by both {origin[task.name]!r} and {entry!r}")
            origin[task.name] = entry
    if steve1_prompts:
        for task in load_steve1_prompts():
            if task.name in origin:
                raise ValueError(f"task {task.name!r} of {origin[task.name]!r} clashes with a STEVE-1 prompt name")
            tasks.append(task)
    return tasks


def load_keywords(path: Path) -> tuple[str, ...]:
    """The clip stage's keyword filter: phrases from a text file (one a line, ``#`` comments), a JSON
    list, or a tasks.json mapping ``{task: {"instruction", "paraphrases", ...}}`` (task names with
    ``_`` read as spaces; narration lines are not keywords). Lower-cased, whitespace-collapsed,
    de-duplicated, in file order."""
    path = Path(path)
    phrases: list[str] = []
    if path.suffix == ".json":
        data = _read_json(path)
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
        phrases = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    seen: dict[str, None] = {}
    for phrase in phrases:
        phrase = " ".join(phrase.lower().split())
        if phrase:
            seen.setdefault(phrase, None)
    return tuple(seen)


# --------------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True)
class PhraseMatch:
    """The best task found in a text: the matched ``phrasing``, its length in ``words`` and the
    text's length in words (``text_words``)."""

    task: Task
    phrasing: str
    words: int
    text_words: int

    @property
    def confidence(self) -> float:
        """Matched words / text words, capped at 1: 1.0 when the text says just the phrasing."""
        return min(1.0, self.words / self.text_words) if self.text_words else 0.0


class TaskMatcher:
    """Finds the best-matching task of a vocabulary in a text (rules in the module docstring).

    Phrasings are indexed by their first word, so a text costs one dictionary lookup per word plus
    the comparison of the phrasings starting with that word, whatever the vocabulary size.
    """

    def __init__(self, tasks: Sequence[Task]) -> None:
        names = [t.name for t in tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique across the vocabulary, repeated: {duplicates[:5]}")
        self.tasks = tuple(tasks)
        # first word -> [(words, task index, phrasing index)]
        self._index: dict[str, list[tuple[tuple[str, ...], int, int]]] = {}
        for ti, task in enumerate(self.tasks):
            for pi, phrasing in enumerate(task.phrasings):
                words = phrase_words(phrasing)
                if words:
                    self._index.setdefault(words[0], []).append((words, ti, pi))

    def best(self, text: str) -> PhraseMatch | None:
        words = phrase_words(text)
        best: tuple[int, int, int] | None = None  # (-length, task index, phrasing index): min wins
        for pos, word in enumerate(words):
            for phrase, ti, pi in self._index.get(word, ()):
                n = len(phrase)
                if words[pos:pos + n] == phrase:
                    key = (-n, ti, pi)
                    if best is None or key < best:
                        best = key
        if best is None:
            return None
        n, ti, pi = -best[0], best[1], best[2]
        task = self.tasks[ti]
        return PhraseMatch(task, task.phrasings[pi], n, len(words))


# --------------------------------------------------------------------------------------------------
# The pipeline's vocabulary: loaded once, written by the task_vocabulary asset, read by every stage


@dataclass(frozen=True)
class TaskVocabulary:
    """The tasks of the configured task files (and STEVE-1's prompts), with ``notes`` saying what was
    left out and which stages that affects."""

    tasks: tuple[Task, ...]
    notes: tuple[str, ...] = ()

    def corpus_tasks(self) -> tuple[Task, ...]:
        """The tasks of the configured task files (STEVE-1's packaged prompts left out)."""
        return tuple(t for t in self.tasks if t.source != "steve1")

    def variants(self) -> dict[str, list[str]]:
        """task → its instruction's paraphrases (training phrasings and synonym tests)."""
        return {t.name: list(t.paraphrases) for t in self.tasks}

    def to_mapping(self) -> dict[str, dict[str, Any]]:
        """The tasks.json form ``{task: {instruction, paraphrases, narration, source}}``."""
        return {t.name: {"instruction": t.instruction, "paraphrases": list(t.paraphrases),
                         "narration": list(t.narration), "source": t.source} for t in self.tasks}


#: Stages that read the vocabulary, and what they do without one.
WITHOUT_VOCABULARY = ("goal_clips mines only trials and rating files (no transcript matches); goal_space_model "
                      "keeps captions as they are; the predictor trains on the clips' own instructions; "
                      "the evaluation's 'corpus' instruction set is empty")


def load_task_vocabulary(corpus_root: Path, task_files: Sequence[str], *, steve1_prompts: bool,
                         task_files_set: bool = True) -> TaskVocabulary:
    """The configured vocabulary (:func:`load_task_files`). When ``task_files`` is the default
    (``task_files_set`` false) and a listed file is absent, the corpus simply has none: it is left
    out with a note, not an error; a file the user named (``task_files_set``) must exist."""
    notes: list[str] = []
    present = list(task_files)
    if not task_files_set:
        missing = [f for f in task_files if not (Path(corpus_root) / f).exists()]
        present = [f for f in task_files if f not in missing]
        if missing:
            notes.append(f"no task file {', '.join(missing)} under the corpus root (the default [goals] task_files)")
    tasks = load_task_files(corpus_root, present, steve1_prompts=steve1_prompts)
    if not tasks:
        notes.append(f"the task vocabulary is empty: {WITHOUT_VOCABULARY}")
    return TaskVocabulary(tuple(tasks), tuple(notes))


def write_task_vocabulary(vocabulary: TaskVocabulary, path: Path) -> None:
    """As JSON: ``{"tasks": [{name, instruction, paraphrases, narration, source}, ...], "notes": [...]}``,
    tasks in vocabulary order (ties in transcript matching go to the task listed first)."""
    from goalcraft.storage import write_json_atomic

    tasks = [{"name": name, **spec} for name, spec in vocabulary.to_mapping().items()]
    write_json_atomic({"tasks": tasks, "notes": list(vocabulary.notes)}, path)


def read_task_vocabulary(path: Path) -> TaskVocabulary:
    """What :func:`write_task_vocabulary` wrote."""
    data = _read_json(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ValueError(f"{path}: not a task vocabulary written by goalcraft")
    mapping = {entry["name"]: {k: v for k, v in entry.items() if k != "name"} for entry in data["tasks"]}
    tasks = tasks_from_mapping(mapping, "vocabulary", str(path)) if mapping else []
    return TaskVocabulary(tuple(tasks), tuple(data.get("notes", ())))
