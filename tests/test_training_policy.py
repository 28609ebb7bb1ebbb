"""Policy training by hindsight relabelling: STEVE-1's goal segments, clip goal embeddings, behaviour
cloning that learns to follow goals, seeded resumable runs. Tiny configs, synthetic episodes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from goalcraft.models.policy import POLICY_CONFIGS, load_policy
from goalcraft.training.policy import (
    HINDSIGHT_GAP,
    PolicyEpisode,
    PolicyTrainingError,
    clip_goal_embeddings,
    hindsight_goal_frames,
    load_best_policy,
    train_policy,
    unlock_goal_frames,
)

TINY = POLICY_CONFIGS["tiny"]


# -- hindsight goals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_frames", [16, 17, 40, 61, 300])
def test_goal_frames_follow_steve1_segments(n_frames):
    rng = np.random.default_rng(0)
    goals = hindsight_goal_frames(n_frames, rng)
    t = np.arange(n_frames - 1)
    assert goals.shape == (n_frames - 1,)
    assert (goals >= t).all() and (goals >= 15).all() and (goals <= n_frames - 1).all()
    ends = np.unique(goals)
    assert ends[-1] == n_frames - 1  # the last segment ends at the last frame
    gaps = np.diff(np.concatenate([[0], ends]))
    assert (gaps[:-1] >= HINDSIGHT_GAP[0]).all() and (gaps[:-1] < HINDSIGHT_GAP[1]).all()
    # Each step's goal is the end of its segment: k = g - t is below the segment's length.
    assert ((goals - t) < HINDSIGHT_GAP[1] + HINDSIGHT_GAP[0]).all()
    for end in ends:  # within a segment the goal is constant and the segment is contiguous
        steps = np.flatnonzero(goals == end)
        assert (np.diff(steps) == 1).all() and steps[-1] == min(end, n_frames - 2)


def test_goal_frames_are_seeded_and_cover_the_range_of_k():
    a = hindsight_goal_frames(2000, np.random.default_rng(3))
    assert np.array_equal(a, hindsight_goal_frames(2000, np.random.default_rng(3)))
    k = a - np.arange(1999)
    assert k.min() == 0 and k.max() >= 35 and 10 < k.mean() < 25


def test_goal_frames_reject_bad_arguments():
    with pytest.raises(ValueError):
        hindsight_goal_frames(100, np.random.default_rng(0), (10, 40))  # below a clip's 15
    with pytest.raises(ValueError):
        hindsight_goal_frames(100, np.random.default_rng(0), (20, 20))
    with pytest.raises(ValueError):
        hindsight_goal_frames(15, np.random.default_rng(0))


def test_clip_goal_embeddings_are_the_goal_clips_embeddings():
    from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MineCLIP(MINECLIP_CONFIGS["tiny"].replace(resolution=(32, 48))).eval()
    frames = np.random.default_rng(1).integers(0, 256, (19, 32, 48, 3), dtype=np.uint8)
    out = clip_goal_embeddings(model, frames, batch_size=5)
    assert out.shape == (19, 32) and np.isnan(out[:15]).all()
    with torch.no_grad():
        for f in (15, 18):
            expected = model.goal_embedding(torch.from_numpy(frames[f - 15:f + 1])[None])[0].numpy()
            np.testing.assert_allclose(out[f], expected, rtol=1e-4, atol=1e-5)


# -- training ------------------------------------------------------------------------------------------


def goal_following_episodes(n: int = 12, frames: int = 40, seed: int = 0) -> list[PolicyEpisode]:
    """Episodes whose frames say nothing and whose every action is the one their goals point at."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(TINY.n_actions, TINY.goal_dim)).astype(np.float32)
    out = []
    for i in range(n):
        action = i % 4
        goals = directions[action] + 0.1 * rng.normal(size=(frames, TINY.goal_dim)).astype(np.float32)
        goals[:15] = np.nan
        out.append(PolicyEpisode(
            id=f"e{i:02d}", frames=rng.integers(0, 256, (frames, TINY.frame_height, TINY.frame_width, 3), dtype=np.uint8),
            actions=np.full(frames - 1, action, np.int64), goals=goals, env_seed=i))
    return out


def test_unlock_goals_end_at_kept_unlocks_and_steve1_segments_after_the_last():
    goals = unlock_goal_frames(100, [5, 20, 50, 80], np.random.default_rng(0), keep=1.0)
    t = np.arange(99)
    # Unlock 5 has no 16-frame clip, so it is no goal; every unlock from 15 on ends a segment.
    assert (goals[:21] == 20).all() and (goals[21:51] == 50).all() and (goals[51:81] == 80).all()
    tail = goals[81:]  # after the last unlock: STEVE-1's segments over frames 81 ... 99
    assert (tail >= t[81:]).all() and (tail > 80).all() and tail[-1] == 99
    # keep -> 0: only the last unlock (always kept) remains before it.
    assert (unlock_goal_frames(100, [20, 50, 80], np.random.default_rng(0), keep=1e-9)[:81] == 80).all()
    # No usable unlock: exactly STEVE-1's segments with the same draws.
    assert np.array_equal(unlock_goal_frames(100, [3], np.random.default_rng(4)),
                          hindsight_goal_frames(100, np.random.default_rng(4)))
    one_step_tail = unlock_goal_frames(100, [97], np.random.default_rng(0))
    assert (one_step_tail[:98] == 97).all() and one_step_tail[98] == 99


def test_unlock_goals_skip_an_unlock_with_probability_one_minus_keep():
    rng = np.random.default_rng(1)
    first = np.array([unlock_goal_frames(60, [20, 40, 59], rng, keep=0.3)[0] for _ in range(4000)])
    # Step 0's goal: unlock 20 if kept (0.3), else 40 if kept (0.7 * 0.3), else 59 (0.49).
    shares = [np.mean(first == u) for u in (20, 40, 59)]
    assert np.allclose(shares, [0.3, 0.21, 0.49], atol=0.03)
    with pytest.raises(ValueError):
        unlock_goal_frames(60, [20], rng, keep=0.0)


def test_training_with_unlock_goals_is_fingerprinted_and_checked(tmp_path):
    episodes = [PolicyEpisode(e.id, e.frames, e.actions, e.goals, e.env_seed, (20, 30))
                for e in goal_following_episodes(4)]
    kw = dict(epochs=1, batch_size=16, seed=2, log=lambda r: None)
    result = train_policy(episodes, TINY, tmp_path / "run", relabel="unlocks", unlock_keep=0.5, **kw)
    assert result.epochs_completed == 1
    with pytest.raises(PolicyTrainingError, match="other data or settings"):  # the relabelling is part of the run
        train_policy(episodes, TINY, tmp_path / "run", epochs=2, batch_size=16, seed=2, log=lambda r: None)
    with pytest.raises(PolicyTrainingError, match="relabel"):
        train_policy(episodes, TINY, tmp_path / "bad", relabel="future", **kw)


def _weights(path):
    return {k: v.clone() for k, v in load_policy(path).state_dict().items()}


def test_training_learns_to_follow_goals(tmp_path):
    records = []
    result = train_policy(goal_following_episodes(), TINY, tmp_path / "run", epochs=6, batch_size=32, lr=3e-3,
                          seed=1, val_fraction=0.34, log=records.append)
    last = result.history[-1]
    assert last["val_goal_gain"] > 0.5 and last["val_accuracy"] > 0.9
    assert result.history[0]["val_loss"] > last["val_loss"]
    assert result.n_train_steps == 8 * 39 and result.n_val_steps == 4 * 39
    assert set(result.train_episodes).isdisjoint(result.val_episodes)
    assert [r["epoch"] for r in records if r["event"] == "eval"] == [1, 2, 3, 4, 5, 6]
    assert all(r["train_samples_per_s"] > 0 for r in result.history)
    history = json.loads(result.history_path.read_text())
    assert history["val_episodes"] == list(result.val_episodes)
    assert load_best_policy(tmp_path / "run").config == TINY
    # Acting on the oracle goal picks the goal's action.
    ep = goal_following_episodes()[0]
    frames = torch.from_numpy(np.repeat(ep.frames[20][None, None], TINY.frame_stack, 1))
    model = load_best_policy(tmp_path / "run")
    assert int(model.act(frames, torch.from_numpy(ep.goals[20][None]), 3.0, greedy=True)[0]) == ep.actions[0]


def test_resume_continues_exactly(tmp_path):
    episodes = goal_following_episodes(6)
    kw = dict(batch_size=16, lr=1e-3, seed=2, log=lambda r: None)
    train_policy(episodes, TINY, tmp_path / "once", epochs=3, **kw)
    train_policy(episodes, TINY, tmp_path / "twice", epochs=1, **kw)
    resumed = train_policy(episodes, TINY, tmp_path / "twice", epochs=3, **kw)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 3
    for name in ("last", "best"):
        a, b = _weights(tmp_path / "once" / name), _weights(tmp_path / "twice" / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_fewer_epochs_than_the_folder_holds_retrain_under_auto(tmp_path):
    """Asking a folder that holds 3 epochs for 1 (a lowered [policy] epochs or dagger_warm_epochs on an
    existing data root) trains the one epoch afresh, as a new folder would, instead of handing back
    the longer run; resume=True refuses it."""
    episodes = goal_following_episodes(6)
    kw = dict(batch_size=16, lr=1e-3, seed=2, log=lambda r: None)
    train_policy(episodes, TINY, tmp_path / "long", epochs=3, **kw)
    with pytest.raises(PolicyTrainingError, match="holds a run of 3 epochs, more than the 1 asked for"):
        train_policy(episodes, TINY, tmp_path / "long", epochs=1, **kw)
    records = []
    short = train_policy(episodes, TINY, tmp_path / "long", epochs=1, resume="auto",
                         **{**kw, "log": records.append})
    assert short.epochs_completed == 1 and short.resumed_from_epoch == 0
    assert records[0]["event"] == "restart" and "more than the 1 asked for" in records[0]["line"]
    train_policy(episodes, TINY, tmp_path / "fresh", epochs=1, **kw)
    for name in ("last", "best"):
        a, b = _weights(tmp_path / "long" / name), _weights(tmp_path / "fresh" / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_data_and_auto_restarts(tmp_path):
    kw = dict(batch_size=16, lr=1e-3, seed=2, log=lambda r: None)
    train_policy(goal_following_episodes(4), TINY, tmp_path / "run", epochs=1, **kw)
    with pytest.raises(PolicyTrainingError, match="other data or settings"):
        train_policy(goal_following_episodes(4, seed=9), TINY, tmp_path / "run", epochs=2, **kw)
    result = train_policy(goal_following_episodes(4, seed=9), TINY, tmp_path / "run", epochs=1, resume="auto", **kw)
    assert result.resumed_from_epoch == 0


def test_a_warm_start_begins_at_the_runs_best_weights_and_keeps_its_split(tmp_path):
    """Starting from a run: its best weights replace the initialization (with lr ~ 0 they come out
    unchanged, where a cold start's differ), its validation episodes stay held out, its training
    episodes are never validated on, and only the new episodes are split."""
    kw = dict(batch_size=16, seed=2, val_fraction=0.25, log=lambda r: None)
    first = train_policy(goal_following_episodes(8), TINY, tmp_path / "r0", epochs=2, lr=3e-3, **kw)
    more = goal_following_episodes(8) + [PolicyEpisode(f"n{e.id}", e.frames, e.actions, e.goals, e.env_seed)
                                         for e in goal_following_episodes(8, seed=5)]
    warm = train_policy(more, TINY, tmp_path / "r1", epochs=1, lr=1e-12, init=tmp_path / "r0", **kw)
    start, after = _weights(tmp_path / "r0" / "best"), _weights(tmp_path / "r1" / "best")
    assert all(torch.allclose(start[k], after[k], atol=1e-6) for k in start)
    cold = train_policy(more, TINY, tmp_path / "cold", epochs=1, lr=1e-12, **kw)
    cold_w = _weights(tmp_path / "cold" / "best")
    assert not all(torch.allclose(start[k], cold_w[k], atol=1e-3) for k in start)
    assert set(first.val_episodes) <= set(warm.val_episodes)
    assert set(first.train_episodes) <= set(warm.train_episodes)
    new_val = set(warm.val_episodes) - set(first.val_episodes)
    assert len(new_val) == 2 and all(v.startswith("n") for v in new_val)  # 0.25 of the 8 new ones
    # The start is part of the run: another start does not resume it.
    train_policy(goal_following_episodes(8), TINY, tmp_path / "r0b", epochs=1, lr=3e-3, **kw)
    with pytest.raises(PolicyTrainingError, match="other data or settings"):
        train_policy(more, TINY, tmp_path / "r1", epochs=1, lr=1e-12, init=tmp_path / "r0b", **kw)
    assert train_policy(more, TINY, tmp_path / "r1", epochs=1, lr=1e-12, init=tmp_path / "r0", **kw).resumed_from_epoch == 1


def test_a_warm_start_from_a_bad_run_is_a_one_line_error(tmp_path):
    kw = dict(epochs=1, batch_size=16, seed=2, log=lambda r: None)
    episodes = goal_following_episodes(4)
    with pytest.raises(PolicyTrainingError, match="not a finished policy run"):
        train_policy(episodes, TINY, tmp_path / "a", init=tmp_path / "nothing", **kw)
    train_policy(episodes, TINY, tmp_path / "r0", **kw)
    other = dataclasses.replace(TINY, hidden_dim=TINY.hidden_dim * 2)
    with pytest.raises(PolicyTrainingError, match="config differs"):
        train_policy(episodes, other, tmp_path / "b", init=tmp_path / "r0", **kw)
    (tmp_path / "r0" / "history.json").write_text("{}")
    with pytest.raises(PolicyTrainingError, match="lacks the episode split"):
        train_policy(episodes, TINY, tmp_path / "c", init=tmp_path / "r0", **kw)
    (tmp_path / "r0" / "best" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PolicyTrainingError, match="cannot start from"):
        train_policy(episodes, TINY, tmp_path / "d", init=tmp_path / "r0", **kw)


def test_same_seed_same_weights(tmp_path):
    kw = dict(epochs=1, batch_size=16, seed=5, log=lambda r: None)
    train_policy(goal_following_episodes(4), TINY, tmp_path / "a", **kw)
    train_policy(goal_following_episodes(4), TINY, tmp_path / "b", **kw)
    a, b = _weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["short", "actions", "goals", "nan_goal", "dtype", "dupe"])
def test_rejects_bad_episodes(tmp_path, damage):
    episodes = goal_following_episodes(3)
    e = episodes[0]
    if damage == "short":
        episodes[0] = PolicyEpisode("e00", e.frames[:10], e.actions[:9], e.goals[:10])
    elif damage == "actions":
        episodes[0] = PolicyEpisode("e00", e.frames, np.full_like(e.actions, 17), e.goals)
    elif damage == "goals":
        episodes[0] = PolicyEpisode("e00", e.frames, e.actions, e.goals[:, :4])
    elif damage == "nan_goal":
        goals = e.goals.copy()
        goals[20, 0] = np.nan
        episodes[0] = PolicyEpisode("e00", e.frames, e.actions, goals)
    elif damage == "dtype":
        episodes[0] = PolicyEpisode("e00", e.frames.astype(np.float32), e.actions, e.goals)
    else:
        episodes[1] = PolicyEpisode("e00", e.frames, e.actions, e.goals)
    with pytest.raises(PolicyTrainingError):
        train_policy(episodes, TINY, tmp_path / "run", epochs=1, log=lambda r: None)


@pytest.mark.parametrize("frame_size", [(32, 20), (64, 40)])
def test_replay_frames_reproduce_a_played_episode_through_the_night(frame_size):
    """Crafter's night noise draws from the world's random state, one number a pixel: replays at
    another render size must draw as the 256x160 render did, or the game changes after dusk."""
    from goalcraft.crafter.agent import play_episode
    from goalcraft.crafter.explore import RandomWalkAgent
    from goalcraft.training.policy import replay_frames

    episode = play_episode(5, 6, (256, 160), 230, agent=RandomWalkAgent)
    assert len(episode.actions) > 170  # well into the night (noise from about step 147)
    frames, unlocked, rewards = replay_frames(5, np.array(episode.actions), frame_size)
    assert frames.shape == (len(episode.actions) + 1, frame_size[1], frame_size[0], 3) and frames.dtype == np.uint8
    assert unlocked == episode.events
    np.testing.assert_allclose(rewards, episode.rewards, atol=1e-6)
