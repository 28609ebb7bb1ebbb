"""The closed loop's stages on the session's Crafter corpus: the policy trained on its trajectories
(with a random goal space), then agent success for a few sources. Tiny models, short episodes."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from goalcraft.config import AgentSettings, PolicySettings
from goalcraft.stages import StageError
from goalcraft.stages.agent import evaluate_agent_success, excluded_world_seeds, train_goal_policy
from goalcraft.storage import StoragePaths

# Each test here trains a policy on the session corpus first (the module's fixture); the closed loop's
# parts have fast tests of their own (test_training_policy, test_rollouts, test_agent_success).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(crafter_corpus, tmp_path_factory):
    from goalcraft.config import config_from_dict
    from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, save_mineclip

    data = tmp_path_factory.mktemp("agent")
    paths = StoragePaths(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_mineclip(MineCLIP(MINECLIP_CONFIGS["demo"]), paths.goal_space_dir / "best")
    clips = config_from_dict({}, data).clips
    settings = PolicySettings(config="tiny", epochs=2, batch_size=64)
    lines = []
    first = train_goal_policy(paths, crafter_corpus, settings, clips, say=lines.append)
    second = train_goal_policy(paths, crafter_corpus, settings, clips)
    return paths, first.metadata, second.metadata, lines


def test_policy_trains_on_every_trajectory(trained, crafter_corpus):
    paths, first, second, lines = trained
    # 3 videos, 2 trials, 1 STEVE-1 episode, each with its actions.
    assert first["trajectories"] == 6 and first["by_kind"] == {"video": 3, "trial": 2, "steve1_episode": 1}
    assert first["quarantined"] == 0 and first["reused_from_cache"] == 0
    assert second["reused_from_cache"] == 6  # the decoded, embedded, replayed episodes are cached
    assert first["train_steps"] + first["val_steps"] > 400 and np.isfinite(first["best_val_loss"])
    assert (paths.policy_dir / "best" / "model.safetensors").is_file()
    assert any(line.startswith("policy: epoch 2/2") for line in lines)
    seeds = json.loads((paths.policy_dir / "training_seeds.json").read_text())
    assert len(seeds) == 6 and seeds <= sorted(excluded_world_seeds(paths, crafter_corpus))
    cached = np.load(paths.policy_dir / "episodes" / "crafter-3-v00.npz")
    assert cached["frames"].shape == (151, 20, 32, 3) and cached["goals"].shape == (151, 512)
    assert np.isnan(cached["goals"][:15]).all() and np.isfinite(cached["goals"][15:]).all()
    # The unlock frames (for relabel = "unlocks") are the recorded unlocks' steps, found again by the replay.
    from goalcraft.data.trajectories import scan_trajectories

    record = {r.id: r for r in scan_trajectories(crafter_corpus)[0]}["crafter-3-v00"]
    assert len(record.unlocked) > 0
    assert cached["unlock_frames"].tolist() == [step for step, _name in record.unlocked]


def test_policy_trains_with_goals_at_unlocks(trained, crafter_corpus, tmp_path):
    import shutil

    from goalcraft.config import config_from_dict

    paths, *_ = trained
    mine = StoragePaths(tmp_path / "data")
    shutil.copytree(paths.goal_space_dir, mine.goal_space_dir)
    shutil.copytree(paths.policy_dir / "episodes", mine.policy_dir / "episodes")  # the prepared episodes
    settings = PolicySettings(config="tiny", epochs=1, batch_size=64, relabel="unlocks", unlock_keep=0.5)
    result = train_goal_policy(mine, crafter_corpus, settings, config_from_dict({}, tmp_path).clips)
    assert result.metadata["reused_from_cache"] == 6
    recorded = json.loads((mine.policy_dir / "history.json").read_text())["settings"]
    assert recorded["relabel"] == "unlocks" and recorded["unlock_keep"] == 0.5


@pytest.mark.slow
def test_a_bad_trajectory_is_quarantined_not_fatal(trained, crafter_corpus, tmp_path):
    import shutil

    from goalcraft.config import config_from_dict

    paths, *_ = trained
    corpus = tmp_path / "corpus"
    shutil.copytree(crafter_corpus, corpus)
    path = corpus / "trials/crafter-3-t00/actions.jsonl"
    lines = path.read_text().splitlines()
    step = json.loads(lines[5])
    step["action"] = (step["action"] + 1) % 17  # the replay no longer matches the video
    lines[5] = json.dumps(step)
    path.write_text("\n".join(lines) + "\n")
    mine = StoragePaths(tmp_path / "data")
    shutil.copytree(paths.goal_space_dir, mine.goal_space_dir)
    result = train_goal_policy(mine, corpus, PolicySettings(config="tiny", epochs=1), config_from_dict({}, tmp_path).clips)
    assert result.metadata["trajectories"] == 5 and result.metadata["quarantined"] == 1
    rows = pq.read_table(mine.policy_dir / "quarantine.parquet").to_pylist()
    assert [(r["source_id"], r["reason"]) for r in rows] == [("crafter-3-t00", "trajectory_replay_mismatch")]


def _goal_table(paths: StoragePaths) -> None:
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(4 * 512,)).astype(np.float32)
    table = pa.table({"key": ["a", "b", "c", "d"], "task": ["collect_wood", "collect_wood", "place_table", "collect_wood"],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat), 512),
                      "split": ["test", "test", "test", "train"]})
    paths.goal_embeddings_table.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, paths.goal_embeddings_table)


def test_oracle_goals_are_the_means_of_the_held_out_goal_clips(tmp_path):
    """STEVE-1's visual prompt: each task's mean over its test-split goal clips; training clips are
    not used (collect_wood's "d" is train), a task with none held out has no oracle goal."""
    from goalcraft.data.embeddings import embedding_matrix
    from goalcraft.stages.agent import oracle_goals

    paths = StoragePaths(tmp_path)
    _goal_table(paths)
    rows = embedding_matrix(pq.read_table(paths.goal_embeddings_table))
    goals = oracle_goals(paths)
    assert sorted(goals) == ["collect_wood", "place_table"]
    assert np.allclose(goals["collect_wood"], (rows[0] + rows[1]) / 2) and np.array_equal(goals["place_table"], rows[2])


def test_agent_success(trained, crafter_corpus):
    from goalcraft.sql import run_query

    paths, *_ = trained
    _goal_table(paths)
    settings = AgentSettings(tasks=["collect_wood"], episodes=2, max_steps=20, guidance=[0.0, 2.0], workers=0, slots=4,
                             sources=["oracle_visual", "mineclip_prior_sampled", "unconditional", "scripted"],
                             n_boot=100)
    lines = []
    result = evaluate_agent_success(paths, crafter_corpus, settings, say=lines.append)
    meta = result.metadata
    assert meta["sources"] == ["oracle_visual", "unconditional", "scripted"]
    assert any("prior skipped" in w for w in result.warnings)
    assert meta["episodes"] == 2 * 2 + 2 + 2
    table = pq.read_table(meta["table"])
    rows = table.to_pylist()
    assert {(r["model"], r["guidance"]) for r in rows} == {("oracle_visual", 0.0), ("oracle_visual", 2.0),
                                                          ("unconditional", 0.0), ("scripted", None)}
    excluded = excluded_world_seeds(paths, crafter_corpus)
    assert not {r["world_seed"] for r in rows} & excluded
    assert len({r["world_seed"] for r in rows}) == 2  # the same two worlds for every source
    assert all(r["steps"] <= 20 and r["task"] == "collect_wood" for r in rows)
    summary = run_query(paths.data_root, "agent_success").to_pylist()
    assert {r["model"] for r in summary} == {"oracle_visual", "unconditional", "scripted"}
    assert "oracle_visual" in str(meta["success"]) and lines[0].startswith("agent success: 8 episodes")
    # The report: a row per source, one animation per source and task, its caption the table's episode.
    page = meta["report_path"].read_text(encoding="utf-8")
    assert meta["report_path"] == paths.agent_success_dir / "report.html" and meta["report"].startswith("file://")
    assert (paths.agent_success_dir / "reports" / f"{meta['run_id']}.html").read_text(encoding="utf-8") == page
    for model, guidance in (("oracle_visual", 0.0), ("oracle_visual", 2.0), ("unconditional", 0.0), ("scripted", None)):
        assert f"<tr data-model='{model}' data-guidance='{guidance}'" in page
    figures = re.findall(r"<figure class='rollout' data-model='([^']+)' data-task='collect_wood'[^>]*>"
                         r"<img src='data:image/gif;base64,([^']+)'.*?class='outcome'>([^<]+)</span>", page)
    assert [f[0] for f in figures] == ["oracle_visual", "unconditional", "scripted"]
    first_world = {r["model"]: r for r in rows if r["episode"] == 0 and r["guidance"] in (2.0, 0.0, None)
                   and (r["model"] != "oracle_visual" or r["guidance"] == 2.0)}
    for model, gif, outcome in figures:
        r = first_world[model]
        assert outcome == (f"success in {r['steps']} steps" if r["success"] else f"fail: died at step {r['steps']}"
                           if r["died"] else f"fail: not in {r['steps']} steps")
        with Image.open(io.BytesIO(base64.b64decode(gif))) as image:
            # The tiny policy's 32x20 frames; max_steps 20: every 2nd step and the last (Pillow merges
            # repeated frames, so at most that many).
            assert image.size == (32, 20) and 2 <= image.n_frames <= 1 + r["steps"] // 2 + r["steps"] % 2


    # The paired oracle − zero goal difference at each λ of the oracle (the floor at its λ 0), in the
    # metadata and the report, computed from the table's episodes.
    won = {(r["model"], r["guidance"], r["world_seed"]): r["success"] for r in rows}
    for lam in (0.0, 2.0):
        expected = np.mean([won[("oracle_visual", lam, w)] - won[("unconditional", 0.0, w)]
                            for w in {r["world_seed"] for r in rows}])
        assert f"| oracle_visual@{lam} − unconditional@0.0 | 2 | {expected:+.3f} [" in meta["paired_pooled"]
        assert f"data-a='oracle_visual@{lam}' data-b='unconditional@0.0'" in page


def test_agent_success_needs_a_policy(tmp_path, crafter_corpus):
    with pytest.raises(StageError, match="materialize goal_policy"):
        evaluate_agent_success(StoragePaths(tmp_path), crafter_corpus, AgentSettings())


def test_goal_predictor_rl_then_agent_success_before_and_after(trained, crafter_corpus, monkeypatch):
    """The predictor itself is heavy; a stand-in gives its goals (the stage's only use of it)."""
    import goalcraft.stages.agent as stage
    from goalcraft.config import PredictorRLSettings
    from goalcraft.stages.agent import finetune_goal_predictor_rl

    paths, *_ = trained
    (paths.goal_predictor_dir / "best").mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(stage, "_predictor_goals", lambda _paths, instructions: np.random.default_rng(0).normal(
        size=(len(instructions), 512)).astype(np.float32))
    agent = AgentSettings(tasks=["collect_wood"], episodes=2, max_steps=15, guidance=[2.0, 1.0], workers=0, slots=4,
                          sources=["goal_predictor", "goal_predictor_rl"], n_boot=50)
    lines = []
    result = finetune_goal_predictor_rl(paths, crafter_corpus, PredictorRLSettings(iterations=2, episodes_per_task=2,
                                                                                  worlds=3), agent,
                                        say=lines.append)
    assert result.metadata["iterations"] == 2 and result.metadata["tasks"] == ["collect_wood"]
    # unset, T and λ are agent success's: its T, its largest λ
    assert (result.metadata["max_steps"], result.metadata["guidance"]) == (15, 2.0)
    assert [line.split(" success")[0] for line in lines[:2]] == ["goal predictor rl: iteration 1/2",
                                                                 "goal predictor rl: iteration 2/2"]
    informative = result.metadata["tasks_with_informative_pairs"]
    assert lines[2].startswith(f"goal predictor rl: informative pairs on {informative} of 1 tasks") and len(lines) == 3
    # 2 iterations of 2 episodes (1 mirrored pair) each on the one task
    assert "| collect_wood | 4 | " in result.metadata["per_task"] and " | 2 | " in result.metadata["per_task"]
    rl_seeds = set(json.loads((paths.goal_predictor_rl_dir / "rl_world_seeds.json").read_text()))
    trained_on = set(json.loads((paths.policy_dir / "training_seeds.json").read_text()))
    assert len(rl_seeds) == 3 and not rl_seeds & trained_on
    evaluated = evaluate_agent_success(paths, crafter_corpus, agent)
    rows = pq.read_table(evaluated.metadata["table"]).to_pylist()
    assert {r["model"] for r in rows} == {"goal_predictor", "goal_predictor_rl"}
    worlds = {r["world_seed"] for r in rows}
    assert len(worlds) == 2 and not worlds & rl_seeds and not worlds & trained_on
    assert evaluated.metadata["predictor_rl_minus_predictor_pooled"][0]["pairs"] == 2
    assert (result.metadata["explore"], result.metadata["explore_directions"]) == ("full", 512)

    # agent success plays the last head, not best/ (picked by a moving average of sampled goals' rewards)
    import torch

    from goalcraft.models.goal_head import ResidualGoalHead, ResidualGoalHeadConfig, load_goal_head, save_goal_head

    head_dir = paths.goal_predictor_rl_dir
    assert result.metadata["head"] == head_dir / "last"
    other = ResidualGoalHead(ResidualGoalHeadConfig(goal_dim=512))
    with torch.no_grad():
        other.linear.bias += 1.0  # any head but the last one
    save_goal_head(other, head_dir / "best")
    z = stage._predictor_goals(paths, ["chop a tree"])
    (rl,) = [s for s in stage._sources(paths, agent, [("collect_wood", "chop a tree")], 512)[0]
             if s.name == "goal_predictor_rl"]
    with torch.no_grad():
        last, best = (load_goal_head(head_dir / d)(torch.from_numpy(z)).numpy()[0] for d in ("last", "best"))
    np.testing.assert_array_equal(rl.goal("collect_wood", "chop a tree", 0), last)
    assert not np.allclose(last, best)

    # explore = "goals": the noise lives in the span of the training split's task means (one here)
    _goal_table(paths)
    result = finetune_goal_predictor_rl(paths, crafter_corpus, PredictorRLSettings(
        iterations=1, episodes_per_task=2, worlds=3, explore="goals"), agent)
    assert (result.metadata["explore"], result.metadata["explore_directions"]) == ("goals", 1)
    assert result.metadata["focus_after"] == 0 and "| iteration | tasks |" in result.metadata["history"]
    with pytest.raises(StageError, match="goal embeddings"):
        stage._goal_basis(StoragePaths(paths.data_root / "nothing_here"))


@pytest.mark.slow
def test_a_plan_played_elsewhere_gives_the_assets_outcomes(trained, crafter_corpus, tmp_path):
    """bench/agent_sweep.py: plan here, play in another process (as on a bigger machine), import back;
    every episode samples its actions from its own seed, so the outcomes equal the asset's own run."""
    import subprocess
    import sys
    from pathlib import Path

    paths, *_ = trained
    _goal_table(paths)
    settings = AgentSettings(tasks=["collect_wood"], episodes=2, max_steps=20, guidance=[0.0, 2.0], workers=0, slots=4,
                             sources=["oracle_visual", "unconditional", "scripted"], n_boot=100)
    here = pq.read_table(evaluate_agent_success(paths, crafter_corpus, settings).metadata["table"])
    config = tmp_path / "goalcraft.toml"
    config.write_text(f'[paths]\ndata_root = "{paths.data_root}"\ncorpus_root = "{crafter_corpus}"\n\n[agent]\n'
                      'sources = ["oracle_visual", "unconditional", "scripted"]\n')
    script = Path(__file__).resolve().parents[1] / "bench" / "agent_sweep.py"

    def sweep(*args: str) -> str:
        done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # In two parts (as a big sweep is played): the policy's sources, then the scripted ceiling (which
    # samples nothing, so its own sampling seed changes nothing); imported together as one run.
    common = ["--config", str(config), "--episodes", "2", "--guidance", "0,2", "--max-steps", "20", "--tasks",
              "collect_wood"]
    sweep("plan", *common, "--out", str(tmp_path / "a"), "--sources", "oracle_visual,unconditional")
    sweep("plan", *common, "--out", str(tmp_path / "b"), "--sources", "scripted", "--sample-seed", "1")
    sweep("play", str(tmp_path / "a"), "--workers", "1", "--slots", "3")
    sweep("play", str(tmp_path / "b"), "--workers", "0", "--slots", "2")
    printed = sweep("import", str(tmp_path / "a"), str(tmp_path / "b"), "--config", str(config))
    run_id = re.search(r"run (\S+): 8 episodes", printed).group(1)
    there = pq.read_table(paths.agent_success_dir / f"{run_id}.parquet")
    keep = ["model", "task", "guidance", "world_seed", "success", "steps", "achievements", "died", "policy"]
    key = lambda r: (r["model"], -1.0 if r["guidance"] is None else r["guidance"], r["world_seed"])  # noqa: E731
    assert sorted(there.select(keep).to_pylist(), key=key) == sorted(here.select(keep).to_pylist(), key=key)
    page = (paths.agent_success_dir / "reports" / f"{run_id}.html").read_text(encoding="utf-8")
    assert page.count("data:image/gif;base64,") == 3  # the played episodes' animations came back with them


@pytest.mark.slow
def test_trajectories_replayed_in_other_processes_are_the_same(trained, crafter_corpus, tmp_path, monkeypatch):
    """[policy] workers: whole trajectories are prepared in worker processes (torch on one thread); the
    prepared episodes are the same as when everything runs in the stage's own process."""
    import shutil

    from goalcraft.config import config_from_dict
    from goalcraft.stages.agent import _load_episodes

    from goalcraft.resources import as_config

    paths, *_ = trained
    # As a pipeline step passes them: Dagster's config class, made at run time (it does not pickle).
    clips = as_config(config_from_dict({}, tmp_path).clips)
    import torch

    import goalcraft.training.policy as training_policy

    # The goal embeddings are computed on one thread in this process too (then the cache does not
    # depend on the worker count or the machine's cores), and its thread count is given back.
    threads_seen, real = [], training_policy.clip_goal_embeddings
    monkeypatch.setattr(training_policy, "clip_goal_embeddings",
                        lambda *a, **k: threads_seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    prepared = {}
    for workers in (0, 2):
        mine = StoragePaths(tmp_path / f"w{workers}")
        shutil.copytree(paths.goal_space_dir, mine.goal_space_dir)
        lines = []
        episodes, quarantined, seeds, reused, kinds = _load_episodes(mine, crafter_corpus, "trials", clips, (32, 20),
                                                                     "cpu", lines.append, workers)
        assert (len(episodes), quarantined, reused) == (6, [], 0) and lines[-1] == "prepared 6/6 trajectories (0 from the cache)"
        prepared[workers] = {e.id: e for e in episodes}
    assert threads_seen == [1] * 6 and torch.get_num_threads() == 2  # (the workers' calls are not seen here)
    torch.set_num_threads(before)
    assert prepared[0].keys() == prepared[2].keys()
    for key, a in prepared[0].items():
        b = prepared[2][key]
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.goals, b.goals, equal_nan=True)


def test_the_scripted_ceiling_plays_only_tasks_it_has_a_player_for(tmp_path):
    """A task no scripted player can pursue is left out of the scripted source with a note, not a
    crash in the middle of the rollouts (collect_diamond: no errand reaches it)."""
    from goalcraft.evaluation.agent_success import rollout_plan
    from goalcraft.stages.agent import _sources

    tasks = [("collect_wood", "chop a tree"), ("collect_diamond", "mine a diamond")]
    sources, notes = _sources(StoragePaths(tmp_path), AgentSettings(sources=["unconditional", "scripted"]), tasks, 8)
    assert notes == ["scripted: no scripted player for collect_diamond; those tasks are skipped"]
    plan = rollout_plan(tasks, sources, [1, 2], guidance=[0.0], max_steps=10)
    assert sorted({(p.model, p.task) for p in plan}) == [("scripted", "collect_wood"), ("unconditional", "collect_diamond"),
                                                         ("unconditional", "collect_wood")]


@pytest.mark.slow
def test_dagger_rounds_label_the_policys_own_episodes_and_train_on_them(trained, crafter_corpus, tmp_path):
    import shutil

    from goalcraft.config import config_from_dict
    from goalcraft.training.dagger import read_labelled, write_labelled

    paths, first, *_ = trained
    mine = StoragePaths(tmp_path / "data")
    shutil.copytree(paths.goal_space_dir, mine.goal_space_dir)
    shutil.copytree(paths.policy_dir / "episodes", mine.policy_dir / "episodes")
    clips = config_from_dict({}, tmp_path).clips
    settings = PolicySettings(config="tiny", epochs=1, batch_size=64, dagger_rounds=1, dagger_episodes=3,
                              dagger_max_steps=40, workers=0)
    with pytest.raises(StageError, match="goal embeddings"):
        train_goal_policy(mine, crafter_corpus, settings, clips)
    _goal_table(mine)  # one training goal clip: collect_wood's
    lines = []
    result = train_goal_policy(mine, crafter_corpus, settings, clips, say=lines.append).metadata
    labelled = result["dagger_labelled_episodes"]
    assert 1 <= labelled <= 3 and "| 1 |" in result["dagger_rounds"]
    assert any(line.startswith("policy: DAgger round 1: 3/3 episodes played and labelled") for line in lines)
    # Round 0 is behaviour cloning alone; the policy trains on the trajectories plus the labelled steps.
    assert (mine.policy_dir / "dagger" / "round_0" / "best" / "model.safetensors").is_file()
    stored = mine.policy_dir / "dagger" / "round_1.npz"
    episodes, figures = read_labelled(stored, str(np.load(stored)["key"]))
    assert len(episodes) == labelled and figures["episodes"] == labelled
    assert all(e.id.startswith("dagger1-") and e.id.endswith("-collect_wood") for e in episodes)
    base_steps = first["train_steps"] + first["val_steps"]
    assert result["train_steps"] + result["val_steps"] == base_steps + sum(len(e.actions) for e in episodes)
    # Their worlds are training worlds: agent success never plays them.
    seeds = set(json.loads((mine.policy_dir / "training_seeds.json").read_text()))
    assert len(seeds) == 6 + 3 and {e.env_seed for e in episodes} <= seeds
    assert seeds <= excluded_world_seeds(mine, crafter_corpus)
    # A re-run reuses the labelled round and the trained runs.
    again = train_goal_policy(mine, crafter_corpus, settings, clips, say=lines.append).metadata
    assert "| True |" in again["dagger_rounds"] and again["best_val_loss"] == result["best_val_loss"]
    # A damaged round file is played again (the same episodes: the round is seeded), not a crash.
    stored.write_bytes(b"damaged")
    lines.clear()
    third = train_goal_policy(mine, crafter_corpus, settings, clips, say=lines.append).metadata
    assert any("not a labelled-episodes file" in line and "playing it again" in line for line in lines)
    assert third["best_val_loss"] == result["best_val_loss"]
    assert read_labelled(stored, str(np.load(stored)["key"]))[0][0].actions.tolist() == episodes[0].actions.tolist()
    # Raising dagger_rounds: round 1's training is the one-round run's policy, reused, not trained again.
    one_round = (mine.policy_dir / "best" / "model.safetensors").read_bytes()
    two = settings.model_copy(update={"dagger_rounds": 2})
    lines.clear()
    train_goal_policy(mine, crafter_corpus, two, clips, say=lines.append)
    round_1 = mine.policy_dir / "dagger" / "round_1"
    assert (round_1 / "best" / "model.safetensors").read_bytes() == one_round
    assert "policy: DAgger round 1: the last run's policy trained on the same data and settings: reused" in lines
    assert sum(line.startswith("policy: epoch ") for line in lines) == 1  # the final training's only
    assert any(line.startswith("policy: DAgger round 2: 3/3 episodes played and labelled") for line in lines)
    assert not list((mine.policy_dir / "dagger").glob(".*"))
    # Without round 1's folder and with other settings, the seeded copy is not taken for round 1's run.
    shutil.rmtree(round_1)
    lines.clear()
    train_goal_policy(mine, crafter_corpus, two.model_copy(update={"lr": two.lr * 2}), clips, say=lines.append)
    assert "policy: DAgger round 1: the last run's policy trained on other data or settings: trained afresh" in lines
    assert (round_1 / "best" / "model.safetensors").read_bytes() != one_round
    # Warm rounds: the policy starts from round 0's and keeps its held-out episodes held out.
    lines.clear()
    warm = settings.model_copy(update={"dagger_warm_epochs": 1})
    train_goal_policy(mine, crafter_corpus, warm, clips, say=lines.append)
    assert any(line.endswith("labelled episodes, from round 0's policy, 1 epoch(s)") for line in lines)
    split = [json.loads((d / "history.json").read_text()) for d in (mine.policy_dir / "dagger" / "round_0", mine.policy_dir)]
    assert set(split[0]["val_episodes"]) <= set(split[1]["val_episodes"])
    assert set(split[0]["train_episodes"]) <= set(split[1]["train_episodes"])
    assert "init_sha256" in split[1]["settings"] and "init_sha256" not in split[0]["settings"]
    # Focus: round 1's figures hold each target's success rate, and round 2 allots its episodes by them.
    episodes, figures = read_labelled(stored, str(np.load(stored)["key"]))
    assert set(figures["success_by_target"]) == {"collect_wood"}
    focused = settings.model_copy(update={"dagger_rounds": 2, "dagger_focus": 1.0})
    lines.clear()
    meta = train_goal_policy(mine, crafter_corpus, focused, clips, say=lines.append).metadata
    rate = figures["success_by_target"]["collect_wood"]
    assert str(meta["dagger_success_by_target"]).splitlines()[0] == "| target | round_1 | round_2 |"
    assert str(meta["dagger_success_by_target"]).splitlines()[2].startswith(f"| collect_wood | {rate:.4g} | ")
    assert f"policy: DAgger round 2: focus 1.0: most episodes to collect_wood 100% (round 1: {rate:.0%} success)" in lines
    # A round file from before per-target figures: the next round spreads its targets evenly, and says so.
    write_labelled(stored, episodes, str(np.load(stored)["key"]),
                   {k: v for k, v in figures.items() if k != "success_by_target"})
    lines.clear()
    train_goal_policy(mine, crafter_corpus, focused, clips, say=lines.append)
    assert "policy: DAgger round 2: round 1 has no per-target success rates; its targets spread evenly" in lines



def test_the_exploration_basis_spans_the_training_task_means_once(tmp_path):
    """Three training task means, one a multiple of another: two orthonormal directions that span all
    three; the test split's clips (the oracle's) play no part."""
    from goalcraft.stages.agent import _goal_basis

    rng = np.random.default_rng(0)
    a, b, held_out = rng.normal(size=(3, 512))
    rows = [("collect_wood", a, "train"), ("collect_wood", a, "train"), ("place_table", b, "train"),
            ("collect_drink", -2 * a, "train"), ("wake_up", held_out, "test")]
    paths = StoragePaths(tmp_path)
    flat = np.concatenate([v for _, v, _ in rows]).astype(np.float32)
    table = pa.table({"key": [f"k{i}" for i in range(len(rows))], "task": [t for t, _, _ in rows],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat), 512),
                      "split": [sp for _, _, sp in rows]})
    paths.goal_embeddings_table.parent.mkdir(parents=True)
    pq.write_table(table, paths.goal_embeddings_table)
    basis = _goal_basis(paths)
    assert basis.shape == (512, 2)
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-10)
    for v in (a, b):
        np.testing.assert_allclose(basis @ (basis.T @ v), v, atol=1e-5)
    assert np.linalg.norm(basis.T @ held_out) < 0.5 * np.linalg.norm(held_out)
