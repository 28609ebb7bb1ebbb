"""Instruction sets from data files: STEVE-1's prompts, a corpus tasks.json, MineDojo YAML, MineStudio."""

import json
from pathlib import Path

import pytest

from goalcraft.evaluation.instructions import load_instruction_set, load_instruction_sets

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "minecraft" / "tasks"


def test_steve1_set_has_the_eleven_prompts_with_their_paraphrases(tmp_path):
    s = load_instruction_set("steve1", tmp_path)
    assert [t.name for t in s.tasks] == ["dig", "dirt", "sky", "leaves", "wood", "seeds", "flower", "explore",
                                         "swim", "underwater", "inventory"]
    by = {t.name: t.phrasings for t in s.tasks}
    assert by["dirt"] == ("get dirt", "dig hole", "dig dirt", "gather a ton of dirt", "collect dirt")
    assert by["wood"] == ("chop down the tree", "gather wood", "pick up wood", "chop it down", "break tree")
    assert by["seeds"][0] == "break tall grass" and len(by["seeds"]) == 5
    assert by["inventory"] == ("open inventory",)
    assert s.rows()[1:3] == [("dirt", "get dirt", False), ("dirt", "dig hole", True)]


def test_corpus_tasks_json_uses_instruction_and_paraphrases_not_narration(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({
        "collect_coal": {"instruction": "mine coal", "paraphrases": ["collect some coal", "mine coal"],
                         "narration": ["got a piece of coal"]}}))
    s = load_instruction_set("corpus", tmp_path)
    assert s.name == "corpus" and s.tasks[0].phrasings == ("mine coal", "collect some coal")
    # In the pipeline the set comes from the task vocabulary (the configured task files, not STEVE-1's).
    from goalcraft.data.task_vocabulary import load_task_vocabulary

    vocabulary = load_task_vocabulary(tmp_path, ["tasks.json"], steve1_prompts=True)
    assert load_instruction_set("corpus", tmp_path / "elsewhere", vocabulary) == s
    assert load_instruction_set("corpus", tmp_path / "elsewhere").tasks == ()  # no tasks.json: an empty set
    (tmp_path / "bad.json").write_text(json.dumps({"x": {"paraphrases": ["a"]}}))
    with pytest.raises(ValueError, match="instruction"):
        load_instruction_set("bad.json", tmp_path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_instruction_set("broken.json", tmp_path)
    with pytest.raises(ValueError, match="not found"):
        load_instruction_set("absent.json", tmp_path)
    with pytest.raises(ValueError, match="same name"):
        load_instruction_sets(["corpus", "corpus"], tmp_path)


def test_minedojo_and_minestudio_texts(tmp_path):
    (tmp_path / "programmatic_tasks.yaml").write_text(
        "harvest_milk:\n  prompt: obtain milk from a cow\n  guidance: find a cow\n"
        "combat_zombie:\n  prompt: combat a zombie\n")
    folder = tmp_path / "simple"
    folder.mkdir()
    (folder / "build_pillar.yaml").write_text("text: build a pillar\ncustom_init_commands: []\n")
    sets = load_instruction_sets(["programmatic_tasks.yaml", "simple"], tmp_path)
    assert sets[0].name == "minedojo:programmatic_tasks"
    assert [(t.name, t.phrasings) for t in sets[0].tasks] == [("harvest_milk", ("obtain milk from a cow",)),
                                                              ("combat_zombie", ("combat a zombie",))]
    assert sets[1].name == "minestudio:simple" and sets[1].tasks[0].phrasings == ("build a pillar",)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/minecraft/tasks is absent (real MineDojo/MineStudio files)")
def test_real_minedojo_and_minestudio_files():
    minedojo = load_instruction_set(str(SHARED / "minedojo" / "programmatic_tasks.yaml"), Path("/"))
    assert len(minedojo.tasks) > 1000
    creative = load_instruction_set(str(SHARED / "minedojo" / "creative_tasks.yaml"), Path("/"))
    assert creative.name == "minedojo:creative_tasks" and len(creative.tasks) > 1000
    minestudio = load_instruction_set(str(SHARED / "minestudio" / "simple"), Path("/"))
    assert len(minestudio.tasks) > 10 and all(t.phrasings[0] for t in minestudio.tasks)


def test_unseen_paraphrases_are_new_to_every_training_text():
    """The fair synonym-robustness set: the Crafter instructions, with paraphrases that appear nowhere in
    tasks.json (instructions, paraphrases or narration), which is all any model or goal space trains on."""
    from pathlib import Path

    from goalcraft.crafter.tasks import TASKS
    from goalcraft.evaluation.instructions import load_instruction_set

    unseen = load_instruction_set("unseen_paraphrases", Path("."))
    trained = {p for spec in TASKS.values() for p in [spec["instruction"], *spec["paraphrases"], *spec["narration"]]}
    assert {t.name for t in unseen.tasks} == set(TASKS)
    for task in unseen.tasks:
        assert task.phrasings[0] == TASKS[task.name]["instruction"]
        assert len(task.phrasings) >= 4 and not set(task.phrasings[1:]) & trained


def test_steve1_evaluation_task_files_are_instruction_sets_with_their_variants(tmp_path):
    import shutil

    aimc = Path(__file__).parent / "fixtures" / "aimc"
    for name in ("eval_tasks.yaml", "instruction_variants.json"):
        shutil.copy(aimc / name, tmp_path / name)
    config, variants = load_instruction_sets(["eval_tasks.yaml", "instruction_variants.json"], tmp_path)
    assert config.name == "aimc:eval_tasks" and variants.name == "aimc:instruction_variants"
    by = {t.name: t.phrasings for t in config.tasks}
    assert by["harvest_1_log"] == ("chop a tree", "cut down a tree", "get a log", "go punch some wood",
                                   "grab a log real quick")
    assert by["techtree_craft_planks"] == ("craft wooden planks",)
    assert config.rows()[:2] == [("harvest_1_log", "chop a tree", False), ("harvest_1_log", "cut down a tree", True)]
    assert [(t.name, t.phrasings) for t in variants.tasks] == [
        ("harvest_1_log", ("chop a tree", "cut down a tree", "collect some wood")),
        ("combat_pig", ("hunt a pig", "kill a pig", "get some pork"))]
