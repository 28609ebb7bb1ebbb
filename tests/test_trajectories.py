"""Trajectories with actions: the corpus records every episode's actions beside its video (new files
only), the exploratory players, STEVE-1's actions.pkl, and the reader with its quarantine."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from goalcraft.crafter.agent import play_episode
from goalcraft.crafter.corpus import generate_crafter_corpus
from goalcraft.crafter.deterministic_env import make_env
from goalcraft.crafter.explore import EXPLORE_AGENTS, MixedAgent, RandomWalkAgent
from goalcraft.data.safe_pickle import safe_load
from goalcraft.data.trajectories import ACTIONS_FORMAT, actions_jsonl, read_actions_file, scan_trajectories
from goalcraft.formats import CRAFTER_ACTIONS

SEED = 7
SMALL = dict(seed=SEED, n_videos=1, steps_per_video=40, n_trials=1, n_steve1_episodes=1, trial_max_steps=60)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trajectories")
    generate_crafter_corpus(base / "plain", record_actions=False, **SMALL)
    summary = generate_crafter_corpus(base / "full", n_explore_episodes=2, explore_steps=30, **SMALL)
    assert summary.trajectories == 5 and summary.explore_ids == (f"crafter-{SEED}-x00", f"crafter-{SEED}-x01")
    return {"plain": base / "plain", "full": base / "full"}


def test_recording_adds_files_and_changes_none(corpora):
    plain, full = _files(corpora["plain"]), _files(corpora["full"])
    assert all(full[name] == data for name, data in plain.items())
    x = f"trajectories/crafter-{SEED}-x"
    assert sorted(set(full) - set(plain)) == sorted([
        f"trials/crafter-{SEED}-t00/actions.jsonl", f"trials/crafter-{SEED}-s00/actions.jsonl",
        f"trials/crafter-{SEED}-s00/actions.pkl", f"trajectories/crafter-{SEED}-v00/actions.jsonl",
        *(f"{x}0{i}/{name}" for i in (0, 1)
          for name in ("actions.jsonl", "actions.pkl", "frames.mp4", "len.txt", "metadata.json")),
    ])


@pytest.mark.slow
def test_actions_replay_the_episode(corpora):
    """Replaying the recorded actions in the recorded world gives the recorded rewards and unlocks."""
    records, quarantined = scan_trajectories(corpora["full"])
    assert quarantined == []
    events = [json.loads(line) for line in (corpora["full"] / "ground_truth/events.jsonl").read_text().splitlines()]
    for record in records:
        env = make_env(record.env_seed)
        env.reset()
        counts = Counter()
        unlocked, rewards = [], []
        for step, action in enumerate(record.actions, start=1):
            _, reward, _, info = env.step(int(action))
            rewards.append(reward)
            for name in sorted(info["achievements"], key=list(info["achievements"]).index):
                if info["achievements"][name] > counts[name]:
                    unlocked.append((step, name))
                counts[name] = info["achievements"][name]
        np.testing.assert_allclose(rewards, record.rewards, atol=1e-6)
        assert sorted(unlocked) == sorted(record.unlocked), record.id
        if record.kind != "explore":
            logged = [(e["step"], e["achievement"]) for e in events if e["source_id"] == record.id]
            assert sorted(logged) == sorted(record.unlocked)


def test_reader_joins_trials_and_folders(corpora):
    records, _ = scan_trajectories(corpora["full"])
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == sorted([f"crafter-{SEED}-{s}" for s in ("s00", "t00", "v00", "x00", "x01")])
    trial = by_id[f"crafter-{SEED}-t00"]
    assert trial.kind == "trial" and trial.trial is not None and trial.trial.instruction
    assert trial.video_path == f"trials/crafter-{SEED}-t00/video.mp4"
    assert trial.num_frames == trial.steps + 1 and trial.action_names == CRAFTER_ACTIONS
    video = by_id[f"crafter-{SEED}-v00"]
    assert video.kind == "video" and video.video_path == f"videos/crafter-{SEED}-v00.mp4" and video.steps == 40
    assert video.trial is None and video.agent == "ScriptedAgent"
    explore = [by_id[f"crafter-{SEED}-x0{i}"] for i in (0, 1)]
    assert [r.agent for r in explore] == ["RandomWalkAgent", "MixedAgent"]
    assert all(r.kind == "explore" and r.video_path.endswith("/frames.mp4") for r in explore)
    seeds = [r.env_seed for r in records]
    assert all(isinstance(s, int) for s in seeds)


def test_steve1_actions_pickle_matches_the_jsonl(corpora):
    folder = corpora["full"] / f"trials/crafter-{SEED}-s00"
    frames = int((folder / "len.txt").read_text())
    loaded = safe_load(folder / "actions.pkl")
    assert len(loaded) == frames  # STEVE-1: one action per frame, len(actions) == len.txt
    assert all(set(a) == {"action"} and a["action"].shape == (1,) for a in loaded)
    jsonl = read_actions_file(folder / "actions.jsonl")
    assert [int(a["action"][0]) for a in loaded] == [*jsonl["actions"].tolist(), -1]


def test_pickle_alone_is_read(corpora, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(corpora["full"], root)
    expected = {r.id: r.actions for r in scan_trajectories(root)[0]}
    (root / f"trials/crafter-{SEED}-s00/actions.jsonl").unlink()
    records, quarantined = scan_trajectories(root)
    assert quarantined == []
    record = next(r for r in records if r.id == f"crafter-{SEED}-s00")
    assert np.array_equal(record.actions, expected[record.id]) and np.isnan(record.rewards).all()


def _damaged(corpora, tmp_path) -> Path:
    root = tmp_path / "c"
    shutil.copytree(corpora["full"], root)
    return root


def test_quarantine(corpora, tmp_path):
    root = _damaged(corpora, tmp_path)
    x0, x1, t0 = (root / f"trajectories/crafter-{SEED}-x00", root / f"trajectories/crafter-{SEED}-x01",
                  root / f"trials/crafter-{SEED}-t00")
    lines = (x0 / "actions.jsonl").read_text().splitlines()
    (x0 / "actions.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # one step short
    (x1 / "actions.jsonl").unlink()
    (x1 / "actions.pkl").write_bytes(__import__("pickle").dumps([{"forward": np.array([1])}]))  # MineRL's
    lines = (t0 / "actions.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"step": 3, "action": 17, "reward": 0.0, "unlocked": []})
    (t0 / "actions.jsonl").write_text("\n".join(lines) + "\n")
    (root / "trajectories/empty").mkdir()
    (root / "trajectories/novideo").mkdir()
    (root / "trajectories/novideo/actions.jsonl").write_text(actions_jsonl(
        source_id="novideo", kind="video", agent="a", env_seed=1, fps=10, video="videos/missing.mp4",
        actions=[0], rewards=[0.0], events=[], action_names=CRAFTER_ACTIONS))
    (root / "trajectories/escape").mkdir()
    os.symlink("/etc/hostname", root / "trajectories/escape/frames.mp4")
    (root / "trajectories/escape/actions.pkl").write_bytes((x0 / "actions.pkl").read_bytes())
    records, quarantined = scan_trajectories(root)
    assert sorted(r.id for r in records) == [f"crafter-{SEED}-s00", f"crafter-{SEED}-v00"]
    reasons = {q.source_id: (q.stage, q.reason) for q in quarantined}
    assert reasons == {
        f"crafter-{SEED}-x00": ("trajectory", "trajectory_malformed"),
        f"crafter-{SEED}-x01": ("trajectory", "trajectory_not_crafter"),
        f"crafter-{SEED}-t00": ("trajectory", "trajectory_malformed"),
        "empty": ("trajectory", "trajectory_actions_missing"),
        "novideo": ("trajectory", "trajectory_no_video"),
        "escape": ("trajectory", "path_escapes_root"),
    }


def test_trial_quarantined_by_the_trial_reader_has_no_trajectory(corpora, tmp_path):
    root = _damaged(corpora, tmp_path)
    (root / f"trials/crafter-{SEED}-t00/metadata.json").write_text("{not json")
    records, quarantined = scan_trajectories(root)
    assert f"crafter-{SEED}-t00" not in {r.id for r in records}
    assert [(q.stage, q.reason) for q in quarantined] == [("trial", "trial_metadata_malformed")]


def test_len_txt_must_agree(corpora, tmp_path):
    root = _damaged(corpora, tmp_path)
    (root / f"trajectories/crafter-{SEED}-x00/len.txt").write_text("3")
    _, quarantined = scan_trajectories(root)
    assert [(q.source_id, q.reason) for q in quarantined] == [(f"crafter-{SEED}-x00", "trajectory_malformed")]


def test_actions_jsonl_header_and_validation(tmp_path):
    text = actions_jsonl(source_id="a", kind="trial", agent="X", env_seed=3, fps=10, video="v.mp4",
                         actions=[1, 5], rewards=[0.0, 1.0], events=[(2, "collect_wood")],
                         action_names=CRAFTER_ACTIONS, target="collect_wood")
    header = json.loads(text.splitlines()[0])
    assert header["format"] == ACTIONS_FORMAT and header["frames"] == 3 and header["steps"] == 2
    path = tmp_path / "actions.jsonl"
    path.write_text(text)
    data = read_actions_file(path)
    assert data["actions"].tolist() == [1, 5] and data["unlocked"] == ((2, "collect_wood"),)
    with pytest.raises(ValueError):
        actions_jsonl(source_id="a", kind="nope", agent="X", env_seed=3, fps=10, video="v", actions=[],
                      rewards=[], events=[], action_names=CRAFTER_ACTIONS)


# -- exploratory players ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPLORE_AGENTS))
def test_explore_agents_are_seeded(name):
    a = play_episode(11, 3, (256, 160), 60, agent=EXPLORE_AGENTS[name])
    b = play_episode(11, 3, (256, 160), 60, agent=EXPLORE_AGENTS[name])
    assert a.actions == b.actions and a.events == b.events
    assert a.agent == {"random_walk": "RandomWalkAgent", "mixed": "MixedAgent"}[name]


@pytest.mark.slow
def test_explore_agents_cover_more_actions_than_the_scripted_player():
    scripted = play_episode(11, 3, (256, 160), 120)
    walk = play_episode(11, 3, (256, 160), 120, agent=RandomWalkAgent)
    mixed = play_episode(11, 3, (256, 160), 120, agent=MixedAgent)
    assert len(set(walk.actions)) > len(set(scripted.actions))
    assert len(set(mixed.actions)) > len(set(scripted.actions))
    assert walk.events  # it does get things done (wood, saplings, ...)


def test_corpus_refuses_unknown_explore_agents(tmp_path):
    with pytest.raises(ValueError, match="explore_agents"):
        generate_crafter_corpus(tmp_path / "c", n_explore_episodes=1, explore_agents=("nope",), n_videos=0)
