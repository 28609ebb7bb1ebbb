"""The user's STEVE-1 evaluator metrics against values computed by hand on a 3-task, 2-D example."""

import math

import numpy as np
import pytest

from goalcraft.evaluation.goal_model_metrics import (
    ModelGoals,
    Visuals,
    bootstrap_models,
    chance_levels,
    compute_metrics,
    probe_cosines,
)

R2 = math.sqrt(0.5)


def _example(**kw):
    # Task A: goal (1,0), variants (1,0),(0,1); B: (0,1), variants (0,2),(0,3); C: (1,1), no variants.
    tasks = ("A", "B", "C")
    g = ModelGoals(tasks, np.array([[1.0, 0], [0, 1], [1, 1]]),
                   (np.array([[1.0, 0], [0, 1]]), np.array([[0.0, 2], [0, 3]]), np.zeros((0, 2))),
                   text=np.array([[1.0, 1], [1, 0], [0, 1]]), **kw)
    vis = Visuals(tasks, (np.array([[1.0, 0], [0, 1]]), np.array([[0.0, 1]]), np.zeros((0, 2))))
    return g, vis


def test_metrics_match_hand_computed_values():
    g, vis = _example()
    m = compute_metrics(g, vis)
    assert m["goal_accuracy"] == pytest.approx((0.75 + 1.0) / 2)  # A: (1+1)/2, (0+1)/2; B: 1
    assert m["goal_accuracy_std"] == pytest.approx((0.25 + 0.0) / 2)
    assert m["consistency"] == 1.0  # deterministic
    assert m["semantic_robustness"] == pytest.approx(0.5)  # A: cos((1,0),(0,1)) = 0; B: 1; C: none
    assert m["prior_collapse"] == pytest.approx((0 + R2 + R2) / 3)
    assert m["discriminability"] == pytest.approx(1 - (0 + R2 + R2) / 3)
    assert m["visual_similarity"] == pytest.approx(0.5)  # only A-B: (0 + 1) / 2
    assert m["variance"] == pytest.approx(2 / 9)  # per dim: values 1, 0, 1 → var 2/9
    assert m["degraded"] == 0.0
    assert m["mineclip_baseline"] == pytest.approx((R2 + 0.0) / 2)
    assert m["prior_gain"] == pytest.approx(((0.75 - R2) + (1.0 - 0.0)) / 2)
    # Retrieval against centroids A (.5,.5), B (0,1): A's rows (1,0),(1,0) hit, (0,1) goes to B.
    assert m["top1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["top5"] == 1.0
    same = (1 / 3 + 1.0) / 2
    cross = (1 / 3 + R2 + R2) / 3
    assert m["separation_gap"] == pytest.approx(same - cross)
    assert chance_levels(vis) == {"top1": 0.5, "top5": 1.0}


def test_degraded_when_goals_collapse():
    tasks = ("A", "B")
    g = ModelGoals(tasks, np.array([[1.0, 0.001], [1.0, 0.0]]), (np.zeros((0, 2)), np.zeros((0, 2))))
    vis = Visuals(tasks, (np.array([[1.0, 0]]), np.array([[0.0, 1]])))
    m = compute_metrics(g, vis)
    assert m["discriminability"] < 0.3 and m["degraded"] == 1.0
    assert math.isnan(m["semantic_robustness"])


def test_consistency_is_mean_pairwise_cosine_of_samples():
    g, vis = _example(samples=(np.array([[1.0, 0], [0, 1], [1, 0]]), np.array([[0.0, 1]] * 3),
                               np.array([[1.0, 1], [1, 1]])))
    # A: pairs 0, 1, 0 → 1/3; B: 1; C: 1.
    assert compute_metrics(g, vis)["consistency"] == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_centred_metrics_subtract_the_centre():
    g, vis = _example()
    centre = np.array([0.5, 0.5])
    m = compute_metrics(g, vis, centre=centre)
    # canonical − centre: A (.5,-.5), B (-.5,.5), C (.5,.5): cosines −1, 0, 0.
    assert m["prior_collapse_centred"] == pytest.approx(-1 / 3)
    assert m["discriminability_centred"] == pytest.approx(4 / 3)
    # A's visuals − centre: (.5,-.5), (-.5,.5) vs B's (-.5,.5): cosines −1, 1 → 0.
    assert m["visual_similarity_centred"] == pytest.approx(0.0)
    # A: cos((.5,-.5), (.5,-.5)) = 1, cos((.5,-.5), (-.5,.5)) = −1 → 0; B: 1 → mean 0.5
    assert m["goal_cosine_centred"] == pytest.approx(0.5)


def test_task_weights_count_copies_but_never_pair_a_task_with_itself():
    g, vis = _example()
    m = compute_metrics(g, vis, w=np.array([2.0, 0.0, 1.0]))
    assert m["prior_collapse"] == pytest.approx(R2)  # only A–C pairs remain
    assert m["goal_accuracy"] == pytest.approx(0.75)  # C has no visuals, B has weight 0


def test_probe_cosines_and_difference():
    table = {"kill pig": [1.0, 0.0], "chop tree": [1.0, 1.0], "build house": [0.0, 1.0]}
    out = probe_cosines(lambda texts: np.array([table[t] for t in texts]))
    assert out["cos(kill pig | chop tree)"] == pytest.approx(R2)
    assert out["cos(kill pig | build house)"] == pytest.approx(0.0)
    assert out["difference"] == pytest.approx(R2)


def test_bootstrap_pairs_models_and_flags_zero_width():
    g, vis = _example()
    stats, diffs = bootstrap_models({"a": [g], "b": [g]}, vis, pairs=[("a", "b")], n_boot=50, seed=1)
    d = diffs[("a", "b")]["goal_accuracy"]
    assert d.value == 0.0 and d.ci_low == 0.0 and d.ci_high == 0.0 and d.zero_width
    ci = stats["a"]["goal_accuracy"]
    assert ci.value == pytest.approx(0.875) and ci.ci_low <= ci.value <= ci.ci_high and ci.n_seeds == 1


def test_bootstrap_carries_seed_variance_and_separates_a_better_model():
    rng = np.random.default_rng(0)
    tasks = tuple(f"t{i}" for i in range(8))
    centres = rng.normal(size=(8, 16))
    vis = Visuals(tasks, tuple(c + 0.3 * rng.normal(size=(10, 16)) for c in centres))
    empty = tuple(np.zeros((0, 16)) for _ in tasks)
    good = [ModelGoals(tasks, centres + 0.05 * rng.normal(size=(8, 16)), empty) for _ in range(3)]
    bad = [ModelGoals(tasks, rng.normal(size=(8, 16)), empty) for _ in range(3)]
    stats, diffs = bootstrap_models({"good": good, "bad": bad}, vis, pairs=[("good", "bad")], n_boot=200, seed=0)
    assert stats["good"]["top1"].value == 1.0
    assert stats["bad"]["top1"].seed_std > 0  # three different random models
    d = diffs[("good", "bad")]["goal_accuracy"]
    assert d.ci_low > 0 and not d.zero_width
    with pytest.raises(ValueError, match="both models"):
        bootstrap_models({"good": good}, vis, pairs=[("good", "bad")], n_boot=2)


def test_task_lists_must_match():
    g, vis = _example()
    with pytest.raises(ValueError, match="same list"):
        compute_metrics(g, Visuals(("A", "C", "B"), vis.embeddings))
