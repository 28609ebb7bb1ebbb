"""The Crafter task vocabulary: one task per achievement, with its instruction, paraphrases and the
lines a narrating player says when it happens (``tasks.json`` next to this module, shipped as package
data and copied as is into every generated corpus)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from crafter import constants as crafter_constants

__all__ = ["ACHIEVEMENTS", "STUDY_TRIAL_TARGETS", "TASKS", "TASKS_FILE", "TRIAL_TARGETS", "tasks_json_text"]

ACHIEVEMENTS: tuple[str, ...] = tuple(crafter_constants.achievements)

TASKS_FILE = "tasks.json"


def tasks_json_text() -> str:
    """The packaged ``tasks.json``, exactly as shipped."""
    return resources.files("goalcraft.crafter").joinpath(TASKS_FILE).read_text(encoding="utf-8")


TASKS: dict[str, dict[str, Any]] = json.loads(tasks_json_text())
assert set(TASKS) == set(ACHIEVEMENTS), "tasks.json must cover every Crafter achievement"

# Achievements the scripted agent reaches reliably within a trial's step cap; trial targets cycle
# through them. The others are still in tasks.json and can show up in the free-play videos.
TRIAL_TARGETS: tuple[str, ...] = (
    "collect_wood",
    "place_table",
    "collect_drink",
    "eat_cow",
    "collect_sapling",
    "make_wood_pickaxe",
    "place_plant",
    "wake_up",
    "make_wood_sword",
)


# More achievements for study corpora (``generate_crafter_corpus(trial_targets=TRIAL_TARGETS +
# STUDY_TRIAL_TARGETS)``): the varied agent (:class:`goalcraft.crafter.agent.VariedAgent`) pursues
# these, prerequisites included (a pickaxe before stone, a table before tools, stone before a
# furnace). Measured on a corpus's own trials: within 250 steps 16 of 16 succeed for each target but
# coal and iron (14 of 16 each); within 300 steps 12 of 12 (iron 11 of 12). Give them 300 steps.
STUDY_TRIAL_TARGETS: tuple[str, ...] = (
    "collect_stone",
    "place_stone",
    "collect_coal",
    "make_stone_pickaxe",
    "make_stone_sword",
    "place_furnace",
    "defeat_zombie",
    "collect_iron",
)
