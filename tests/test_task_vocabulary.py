"""Task vocabularies: the loaders of each source's format, and phrase matching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goalcraft.crafter.tasks import TASKS
from goalcraft.data.task_vocabulary import (
    Task,
    TaskMatcher,
    load_keywords,
    load_minedojo_tasks,
    load_minestudio_tasks,
    load_steve1_prompts,
    load_task_files,
    load_tasks_json,
    phrase_words,
)

SHARED_TASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "minecraft" / "tasks"


def test_tasks_json_phrasings_are_narration_then_paraphrases_then_instruction(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(TASKS), encoding="utf-8")
    tasks = load_tasks_json(path, source="crafter")
    assert [t.name for t in tasks] == list(TASKS)
    wood = next(t for t in tasks if t.name == "collect_wood")
    spec = TASKS["collect_wood"]
    assert wood.instruction == spec["instruction"] == "chop a tree"
    assert wood.phrasings == (*spec["narration"], *spec["paraphrases"], spec["instruction"])
    assert wood.source == "crafter"
    assert load_tasks_json(path)[0].source == "tasks"  # default: the file stem


def test_tasks_json_normalises_and_deduplicates(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"dig": {"instruction": "  Dig  a hole ", "paraphrases": ["dig a hole!", "DIG deeper"]}}),
                    encoding="utf-8")
    (task,) = load_tasks_json(path)
    # "Dig a hole" = "dig a hole!" as a phrasing; the paraphrases are kept as written (normalised whitespace).
    assert task == Task("dig", "Dig a hole", ("dig a hole!", "DIG deeper"), "mine",
                        paraphrases=("dig a hole!", "DIG deeper"))


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "object of tasks"),
    ("{}", "object of tasks"),
    ('{"a": "chop"}', "expected an object"),
    ('{"a": {"paraphrases": ["x"]}}', "'instruction'"),
    ('{"a": {"instruction": "  "}}', "'instruction'"),
    ('{"a": {"instruction": "x", "paraphrases": "y"}}', "'paraphrases' must be a list"),
    ('{"a": {"instruction": "x", "narration": [1]}}', "'narration' must be a list"),
    ("{not json", "cannot read"),
])
def test_tasks_json_that_is_not_a_vocabulary_raises(tmp_path, content, message):
    _refused(tmp_path / "tasks.json", content, message, load_tasks_json)


def _refused(path: Path, content: str, message: str, load) -> None:
    """``load(path)`` of a file holding ``content`` raises a ValueError saying ``message``."""
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load(path)


def test_steve1_prompts_are_the_eleven_evaluation_tasks():
    tasks = load_steve1_prompts()
    assert [t.name for t in tasks] == ["dig", "dirt", "sky", "leaves", "wood", "seeds", "flower", "explore",
                                       "swim", "underwater", "inventory"]
    by_name = {t.name: t for t in tasks}
    assert by_name["dirt"].instruction == "get dirt"
    assert set(by_name["dirt"].phrasings) == {"get dirt", "dig hole", "dig dirt", "gather a ton of dirt", "collect dirt"}
    assert set(by_name["wood"].phrasings) == {"chop down the tree", "gather wood", "pick up wood", "chop it down",
                                              "break tree"}
    assert len(by_name["seeds"].phrasings) == 5
    assert by_name["dig"].phrasings == ("dig as far as possible",)
    assert by_name["inventory"].instruction == "open inventory"
    assert {t.source for t in tasks} == {"steve1"}


MINEDOJO_PROGRAMMATIC = """\
harvest_milk_with_empty_bucket_and_cow:
  category: harvest
  guidance: '1. Find a cow.

    2. Right-click it with an empty bucket.'
  prompt: obtain milk from a cow
    with an empty bucket


combat_zombie_plains_diamond_armors_diamond_sword_shield:
  category: combat
  guidance: Attack the zombie.
  prompt: combat a zombie in plains with a diamond sword, shield, and a full suite of diamond armors
"""

MINEDOJO_CREATIVE = """\
creative:0:
  collection: manual
  guidance: Walk around.
  prompt: Explore the world to find plains.
  source: null
creative:1:
  collection: youtube
  guidance: null
  prompt: build a house
  source: https://youtube.com/watch?v=x
"""


def test_minedojo_prompts_become_instructions(tmp_path):
    programmatic = tmp_path / "programmatic_tasks.yaml"
    programmatic.write_text(MINEDOJO_PROGRAMMATIC, encoding="utf-8")
    creative = tmp_path / "creative_tasks.yaml"
    creative.write_text(MINEDOJO_CREATIVE, encoding="utf-8")
    tasks = load_minedojo_tasks(programmatic)
    assert [t.name for t in tasks] == ["harvest_milk_with_empty_bucket_and_cow",
                                       "combat_zombie_plains_diamond_armors_diamond_sword_shield"]
    assert tasks[0].instruction == "obtain milk from a cow with an empty bucket"  # folded YAML line joined
    assert tasks[0].phrasings == (tasks[0].instruction,)
    assert tasks[0].source == "minedojo:programmatic_tasks"
    creative_tasks = load_minedojo_tasks(creative)
    assert [(t.name, t.instruction) for t in creative_tasks] == [
        ("creative:0", "Explore the world to find plains."), ("creative:1", "build a house")]


@pytest.mark.parametrize("content, message", [
    ("- a\n- b\n", "mapping of MineDojo task ids"),
    ("task_a:\n  guidance: x\n", "'prompt'"),
    ("task_a: just text\n", "expected a mapping"),
    ("combat_{mob}:\n  prompt: combat a {mob}\n", "template"),
    ("a: [unclosed\n", "cannot read YAML"),
])
def test_minedojo_files_that_are_not_task_lists_raise(tmp_path, content, message):
    path = tmp_path / "tasks.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_minedojo_tasks(path)


def test_minestudio_text_fields_become_instructions(tmp_path):
    folder = tmp_path / "hard"
    folder.mkdir()
    (folder / "combat_spider.yaml").write_text(
        "custom_init_commands:\n- /summon minecraft:spider ~3 ~ ~\ndefaults:\n- base\n- _self_\n"
        "text: Combat spiders using weapons and armor to protect yourself.\n", encoding="utf-8")
    (folder / "collect_dirt.yaml").write_text(
        "text: 'Collect dirt blocks from the ground using your hands or a suitable tool.  '\n", encoding="utf-8")
    (folder / "base.yaml").write_text("custom_init_commands: []\n", encoding="utf-8")  # not a task: skipped
    (folder / "notes.txt").write_text("text: not yaml by name\n", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "other.yaml").write_text("text: not read, not recursive\n", encoding="utf-8")
    tasks = load_minestudio_tasks(folder)
    assert [(t.name, t.instruction, t.source) for t in tasks] == [
        ("collect_dirt", "Collect dirt blocks from the ground using your hands or a suitable tool.", "minestudio:hard"),
        ("combat_spider", "Combat spiders using weapons and armor to protect yourself.", "minestudio:hard"),
    ]
    (folder / "bad.yaml").write_text("text: [1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'text'"):
        load_minestudio_tasks(folder)
    with pytest.raises(ValueError, match="not a folder"):
        load_minestudio_tasks(tmp_path / "missing")


@pytest.mark.skipif(not SHARED_TASKS.is_dir(), reason="needs ../shared/data/minecraft/tasks (MineDojo/MineStudio task files)")
def test_real_minedojo_and_minestudio_task_files():
    programmatic = load_minedojo_tasks(SHARED_TASKS / "minedojo" / "programmatic_tasks.yaml")
    creative = load_minedojo_tasks(SHARED_TASKS / "minedojo" / "creative_tasks.yaml")
    assert len(programmatic) == 1581 and len(creative) == 1560
    assert all(t.instruction and t.phrasings == (t.instruction,) for t in programmatic + creative)
    hard = load_minestudio_tasks(SHARED_TASKS / "minestudio" / "hard")
    simple = load_minestudio_tasks(SHARED_TASKS / "minestudio" / "simple")
    assert len(hard) == 77 and len(simple) == 76
    spider = next(t for t in hard if t.name == "combat_spider")
    assert spider.instruction == "Combat spiders using weapons and armor to protect yourself."
    TaskMatcher(programmatic + creative)  # ids are unique across both MineDojo files


def test_phrase_words_normalise_case_punctuation_and_apostrophes():
    assert phrase_words("  Let\u2019s   PUNCH\tthis tree!! ") == ("let", "s", "punch", "this", "tree")
    assert phrase_words("tree-house") == ("tree", "house")
    assert phrase_words("[Music]") == ("music",)
    assert phrase_words("...") == ()


def _task(name, *phrasings):
    return Task(name, phrasings[-1], tuple(phrasings), "test")


def test_matcher_matches_whole_words_case_insensitively():
    matcher = TaskMatcher([_task("wood", "chop a tree", "got some wood")])
    for text in ("CHOP A TREE", "let's chop a tree.", "we, uh, got some wood!", "got\nsome   wood"):
        assert matcher.best(text).task.name == "wood", text
    for text in ("chop a treehouse", "chop a trees", "gotsome wood", "some wood got", ""):
        assert matcher.best(text) is None, text


def test_matcher_prefers_the_longest_phrasing_then_the_first_task():
    wood = _task("wood", "wood")
    table = _task("table", "a crafting table", "table")
    pickaxe = _task("pickaxe", "wooden pickaxe")
    sword = _task("sword", "wooden sword")
    matcher = TaskMatcher([wood, table, pickaxe, sword])
    match = matcher.best("I used the wood at a crafting table")
    assert (match.task.name, match.phrasing, match.words, match.text_words) == ("table", "a crafting table", 3, 8)
    assert match.confidence == pytest.approx(3 / 8)
    # equally long matches: the task listed first wins, wherever it is in the text
    assert matcher.best("wooden sword and wooden pickaxe").task.name == "pickaxe"
    assert TaskMatcher([sword, pickaxe]).best("wooden pickaxe and wooden sword").task.name == "sword"
    assert matcher.best("wooden pickaxe").confidence == 1.0


def test_matcher_refuses_duplicate_task_names():
    with pytest.raises(ValueError, match="unique"):
        TaskMatcher([_task("a", "x"), _task("a", "y")])


def test_every_crafter_narration_line_names_its_own_task(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(TASKS), encoding="utf-8")
    matcher = TaskMatcher(load_tasks_json(path) + load_steve1_prompts())
    for name, spec in TASKS.items():
        for line in spec["narration"] + spec["paraphrases"] + [spec["instruction"]]:
            match = matcher.best(line)
            assert match is not None and match.task.name == name and match.confidence == 1.0, line


def test_load_task_files_reads_each_kind_then_steve1_prompts(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({"collect_wood": TASKS["collect_wood"]}), encoding="utf-8")
    (tmp_path / "minedojo").mkdir()
    (tmp_path / "minedojo" / "creative_tasks.yaml").write_text(MINEDOJO_CREATIVE, encoding="utf-8")
    (tmp_path / "minestudio" / "hard").mkdir(parents=True)
    (tmp_path / "minestudio" / "hard" / "combat_spider.yaml").write_text("text: Combat spiders.\n", encoding="utf-8")
    files = ["tasks.json", "minedojo/creative_tasks.yaml", "minestudio/hard"]
    tasks = load_task_files(tmp_path, files)
    assert [t.name for t in tasks][:4] == ["collect_wood", "creative:0", "creative:1", "combat_spider"]
    assert [t.source for t in tasks][:4] == ["tasks", "minedojo:creative_tasks", "minedojo:creative_tasks",
                                             "minestudio:hard"]
    assert [t.name for t in tasks][4:] == [t.name for t in load_steve1_prompts()]
    assert len(load_task_files(tmp_path, files, steve1_prompts=False)) == 4
    assert [t.name for t in load_task_files(tmp_path, [])] == [t.name for t in load_steve1_prompts()]
    with pytest.raises(ValueError, match="not found"):
        load_task_files(tmp_path, ["missing.json"])
    (tmp_path / "tasks.txt").write_text("chop a tree\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a .json or .yaml"):
        load_task_files(tmp_path, ["tasks.txt"])
    (tmp_path / "minestudio" / "simple").mkdir()
    (tmp_path / "minestudio" / "simple" / "combat_spider.yaml").write_text("text: Fight.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'combat_spider' is defined by both"):
        load_task_files(tmp_path, ["minestudio/hard", "minestudio/simple"])
    (tmp_path / "clash.json").write_text(json.dumps({"dirt": {"instruction": "get dirt"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="STEVE-1"):
        load_task_files(tmp_path, ["clash.json"])


def test_the_pipeline_vocabulary_is_loaded_once_written_and_read_back_in_order(tmp_path):
    from goalcraft.data.task_vocabulary import (
        TaskVocabulary,
        load_task_vocabulary,
        read_task_vocabulary,
        write_task_vocabulary,
    )

    (tmp_path / "tasks.json").write_text(json.dumps({
        "zeta_task": {"instruction": "chop a tree", "paraphrases": ["fell a tree"], "narration": ["timber!"]},
        "alpha_task": {"instruction": "dig dirt"}}))
    vocabulary = load_task_vocabulary(tmp_path, ["tasks.json"], steve1_prompts=True)
    assert [t.name for t in vocabulary.corpus_tasks()] == ["zeta_task", "alpha_task"]  # file order, not sorted
    assert len(vocabulary.tasks) == 2 + 11 and vocabulary.notes == ()
    zeta = vocabulary.tasks[0]
    assert (zeta.paraphrases, zeta.narration, zeta.source) == (("fell a tree",), ("timber!",), "tasks")
    write_task_vocabulary(vocabulary, tmp_path / "out" / "vocabulary.json")
    back = read_task_vocabulary(tmp_path / "out" / "vocabulary.json")
    assert back == vocabulary
    assert TaskVocabulary(back.corpus_tasks()).variants() == {"zeta_task": ["fell a tree"], "alpha_task": []}


def test_a_corpus_without_the_default_task_file_runs_with_a_note_but_a_named_file_must_exist(tmp_path):
    from goalcraft.data.task_vocabulary import load_task_vocabulary

    lenient = load_task_vocabulary(tmp_path, ["tasks.json"], steve1_prompts=True, task_files_set=False)
    assert [t.source for t in lenient.tasks] == ["steve1"] * 11
    assert lenient.notes == ("no task file tasks.json under the corpus root (the default [goals] task_files)",)
    empty = load_task_vocabulary(tmp_path, ["tasks.json"], steve1_prompts=False, task_files_set=False)
    assert empty.tasks == () and empty.notes[1].startswith("the task vocabulary is empty: goal_clips mines only")
    with pytest.raises(ValueError, match="task file 'tasks.json' not found"):
        load_task_vocabulary(tmp_path, ["tasks.json"], steve1_prompts=True, task_files_set=True)


# -- the clip stage's keyword list ----------------------------------------------------------------


def test_keywords_from_a_text_file_with_comments_and_duplicates(tmp_path):
    path = tmp_path / "tasks.txt"
    path.write_text("Chop a tree  # MineDojo\n\ncollect   dirt\nchop a tree\n# only a comment\n")
    assert load_keywords(path) == ("chop a tree", "collect dirt")


def test_keywords_from_a_json_list_and_a_tasks_mapping(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["Gather Wood", "gather wood", "swim"]))
    assert load_keywords(listed) == ("gather wood", "swim")
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"collect_wood": {"instruction": "Collect wood", "paraphrases": ["chop a tree"]},
                                 "eat_cow": {"instruction": "eat a cow"}}))
    assert load_keywords(tasks) == ("collect wood", "chop a tree", "eat cow", "eat a cow")


def test_keywords_from_a_broken_json_file_name_the_file(tmp_path):
    path = tmp_path / "keywords.json"
    path.write_text("[\"chop a tree\",", encoding="utf-8")
    with pytest.raises(ValueError, match="keywords.json"):
        load_keywords(path)


# --------------------------------------------------------------------------------------------------
# STEVE-1 evaluation task files (konder/aimc's eval_tasks.yaml and instruction_variants.json)

AIMC = Path(__file__).parent / "fixtures" / "aimc"


def test_eval_tasks_yaml_gives_en_instruction_and_every_variant_as_paraphrases():
    from goalcraft.data.task_vocabulary import load_aimc_tasks

    tasks = load_aimc_tasks(AIMC / "eval_tasks.yaml")
    assert [t.name for t in tasks] == ["harvest_1_log", "combat_pig", "techtree_craft_planks"]  # task_sets: not tasks
    log, pig, planks = tasks
    assert (log.instruction, log.source) == ("chop a tree", "aimc:eval_tasks")
    # every category's variants in file order, de-duplicated, without the instruction itself
    assert log.paraphrases == ("cut down a tree", "get a log", "go punch some wood", "grab a log real quick")
    assert log.phrasings == (*log.paraphrases, "chop a tree")
    assert pig.paraphrases == ("kill a pig", "get some pork", "attack the pig")  # a bare-list category too
    assert (planks.instruction, planks.paraphrases, planks.phrasings) == ("craft wooden planks", (), ("craft wooden planks",))


def test_instruction_variants_json_gives_canonical_and_variants():
    from goalcraft.data.task_vocabulary import load_instruction_variants

    log, pig = load_instruction_variants(AIMC / "instruction_variants.json")
    assert (log.name, log.instruction, log.paraphrases, log.source) == (
        "harvest_1_log", "chop a tree", ("cut down a tree", "collect some wood"), "aimc:instruction_variants")
    assert pig.phrasings == ("kill a pig", "get some pork", "hunt a pig")


def test_task_files_tell_the_evaluation_forms_by_content(tmp_path):
    import shutil

    for name in ("eval_tasks.yaml", "instruction_variants.json"):
        shutil.copy(AIMC / name, tmp_path / name)
    (tmp_path / "programmatic_tasks.yaml").write_text("harvest_milk:\n  prompt: obtain milk from a cow\n")
    (tmp_path / "tasks.json").write_text(json.dumps({"collect_dirt": {"instruction": "dig dirt"}}))
    tasks = load_task_files(tmp_path, ["eval_tasks.yaml", "programmatic_tasks.yaml", "tasks.json"], steve1_prompts=False)
    assert [(t.name, t.source) for t in tasks] == [
        ("harvest_1_log", "aimc:eval_tasks"), ("combat_pig", "aimc:eval_tasks"),
        ("techtree_craft_planks", "aimc:eval_tasks"), ("harvest_milk", "minedojo:programmatic_tasks"),
        ("collect_dirt", "tasks")]
    # a transcript saying a variant is matched to its task (the mining vocabulary)
    matcher = TaskMatcher(tasks)
    assert matcher.best("ok now I go punch some wood over here").task.name == "harvest_1_log"
    assert matcher.best("time to attack the pig").task.instruction == "hunt a pig"
    # both files define harvest_1_log: task names must stay unique across the vocabulary
    with pytest.raises(ValueError, match="defined by both"):
        load_task_files(tmp_path, ["eval_tasks.yaml", "instruction_variants.json"], steve1_prompts=False)
    variants = load_task_files(tmp_path, ["instruction_variants.json"], steve1_prompts=False)
    assert [t.source for t in variants] == ["aimc:instruction_variants"] * 2


@pytest.mark.parametrize("content, message", [
    ("tasks: {}\n", "non-empty 'tasks' mapping"),
    ("tasks:\n  a: 3\n", "expected a mapping"),
    ("tasks:\n  a:\n    description: no instruction\n", "no 'en_instruction'"),
    ("tasks:\n  a:\n    en_instruction: '  '\n", "'en_instruction' must be a non-blank string"),
    ("tasks:\n  a:\n    en_instruction: x\n    instruction_variants: [x]\n", "must be a mapping of categories"),
    ("tasks:\n  a:\n    en_instruction: x\n    instruction_variants:\n      c:\n        variants: [1]\n",
     "instruction_variants.c: variants must be a list of strings"),
])
def test_an_eval_tasks_yaml_with_the_wrong_structure_raises(tmp_path, content, message):
    from goalcraft.data.task_vocabulary import load_aimc_tasks

    _refused(tmp_path / "eval_tasks.yaml", content, message, load_aimc_tasks)


@pytest.mark.parametrize("content, message", [
    ('{"a": {"canonical": "x", "variants": "y"}}', "variants must be a list"),
    ('{"a": {"canonical": " ", "variants": []}}', "'canonical' must be a non-blank string"),
    ('{"a": {"canonical": "x"}, "b": {"variants": ["y"]}}', "'canonical'"),
    ('{"a": {"canonical": "x"}, "b": 3}', "expected an object"),
])
def test_an_instruction_variants_json_with_the_wrong_structure_raises(tmp_path, content, message):
    _refused(tmp_path / "instruction_variants.json", content, message,
             lambda path: load_task_files(path.parent, [path.name], steve1_prompts=False))
