"""goalcraft.evaluation.metrics: known answers, the bootstrap's coverage, determinism, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from goalcraft.evaluation.metrics import (
    aggregate_over_seeds,
    bootstrap_ci,
    separation_gap,
    evaluate_model,
    task_retrieval,
    goal_similarity,
    mean_cross_task_cosine,
    mean_same_task_cosine,
    metric_with_ci,
    most_confused_pairs,
    pairwise_task_cosine,
    synonym_robustness,
    text_discriminability,
)

R2 = math.sqrt(2.0)

# The hand-computed example: task A has rows a1, a2, task B has row b (raw scales differ on purpose).
#   cos(a1, a2) = 1/sqrt2, cos(a1, b) = 0, cos(a2, b) = 1/sqrt2
SMALL = np.array([[1.0, 0.0], [3.0, 3.0], [0.0, 2.0]])
SMALL_TASKS = ["A", "A", "B"]
SAME = 1 / R2  # only task A has a pair
CROSS = (0 + 1 / R2) / 2  # the one task pair {A, B}: mean over its 2 row pairs


# --------------------------------------------------------------------------- known answers

def test_identical_rows():
    z = np.tile([0.3, -1.2, 2.0, 0.5], (9, 1)) * 7.0
    tasks = np.repeat([0, 1, 2], 3)
    assert separation_gap(z, tasks) == pytest.approx(0.0, abs=1e-12)
    assert goal_similarity(z, tasks) == pytest.approx(1.0)
    assert synonym_robustness(z, tasks) == pytest.approx(1.0)


def test_orthogonal_tasks():
    eye = np.eye(4) * np.array([[1.0], [2.0], [0.5], [3.0]])  # one direction per task, raw scales differ
    z = np.repeat(eye, 2, axis=0)  # two identical phrasings per task
    tasks = np.repeat(["w", "x", "y", "z"], 2)
    assert mean_cross_task_cosine(z, tasks) == pytest.approx(0.0, abs=1e-12)
    assert goal_similarity(z, tasks) == pytest.approx(0.0, abs=1e-12)
    assert separation_gap(z, tasks) == pytest.approx(1.0)
    assert synonym_robustness(z, tasks) == pytest.approx(1.0)
    text = text_discriminability(z, tasks)
    assert text["discriminability"] == pytest.approx(1.0)
    assert text["gap"] == pytest.approx(1.0)
    assert text["paraphrase_cosine"] == pytest.approx(1.0)


def test_small_example_every_pair_metric():
    assert mean_same_task_cosine(SMALL, SMALL_TASKS) == pytest.approx(SAME)
    assert mean_cross_task_cosine(SMALL, SMALL_TASKS) == pytest.approx(CROSS)
    assert goal_similarity(SMALL, SMALL_TASKS) == pytest.approx(CROSS)
    assert separation_gap(SMALL, SMALL_TASKS) == pytest.approx(SAME - CROSS)
    assert synonym_robustness(SMALL, SMALL_TASKS) == pytest.approx(SAME)
    text = text_discriminability(SMALL, SMALL_TASKS)
    assert text == pytest.approx({"discriminability": 1 - CROSS, "paraphrase_cosine": SAME, "gap": SAME - CROSS})
    # integer labels give the same answers as string labels
    assert separation_gap(SMALL, [5, 5, 9]) == pytest.approx(SAME - CROSS)


def test_small_example_pairwise_matrix_and_accuracy():
    names, m = pairwise_task_cosine(SMALL, SMALL_TASKS)
    assert names == ["A", "B"]
    np.testing.assert_allclose(m, [[SAME, CROSS], [CROSS, 1.0]])  # B has one row: diagonal 1.0
    # clips: A's centroid points along x, B's along (1, 2). a1 → A (hit), a2 → B (miss), b → B (hit).
    acc = task_retrieval(SMALL, SMALL_TASKS, [[3.0, 0.0], [1.0, 2.0]], ["A", "B"], ks=(1, 2))
    assert acc["top1"] == pytest.approx((1 / 2 + 1) / 2)  # per task: A 1/2, B 1, mean over tasks
    assert acc["top2"] == pytest.approx(1.0)
    assert acc["chance@1"] == pytest.approx(0.5) and acc["chance@2"] == pytest.approx(1.0)
    assert acc["rows_without_clips"] == 0 and acc["n_rows_scored"] == 3
    rows = task_retrieval(SMALL, SMALL_TASKS, [[3.0, 0.0], [1.0, 2.0]], ["A", "B"], ks=(1,), weighting="row")
    assert rows["top1"] == pytest.approx(2 / 3)


def test_small_example_bootstrap_is_exact():
    # Two tasks: resamples {A, B} / {B, A} reproduce the point estimate; {A, A} has no cross-task pair
    # (the copies are one task: same group) and {B, B} no same-task pair, so both are NaN and dropped.
    point, low, high = metric_with_ci(separation_gap, SMALL, SMALL_TASKS, n_boot=50, seed=1)
    assert point == pytest.approx(SAME - CROSS)
    assert low == pytest.approx(SAME - CROSS) and high == pytest.approx(SAME - CROSS)
    # synonym robustness: {B, B} is NaN, {A, A} and {A, B} both give SAME
    assert metric_with_ci(synonym_robustness, SMALL, SMALL_TASKS, n_boot=50) == pytest.approx((SAME, SAME, SAME))


def test_row_weighting_differs_from_task_weighting():
    # task P: 3 identical rows along x; task Q: 2 rows, cos 0 to each other; task R: a row along y.
    z = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float)
    tasks = ["P", "P", "P", "Q", "Q", "R"]
    # same-task: P pairs all 1 (3 pairs), Q pair 0 (1 pair)
    assert mean_same_task_cosine(z, tasks) == pytest.approx((1 + 0) / 2)
    assert mean_same_task_cosine(z, tasks, weighting="row") == pytest.approx(3 / 4)
    # cross: P-Q block mean (3*1 + 3*0)/6 = 1/2, P-R 0, Q-R 0 → task mean 1/6; row pairs: 3 of 11
    assert mean_cross_task_cosine(z, tasks) == pytest.approx(1 / 6)
    assert mean_cross_task_cosine(z, tasks, weighting="row") == pytest.approx(3 / 11)


def test_zero_vector_has_cosine_zero():
    z = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert mean_cross_task_cosine(z, [0, 1, 1]) == pytest.approx(0.0)
    assert mean_same_task_cosine(z, [0, 0, 1]) == pytest.approx(0.0)


def test_nan_when_undefined():
    z = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert math.isnan(mean_same_task_cosine(z, [0, 1]))  # no task has two rows
    assert math.isnan(mean_cross_task_cosine(z, [0, 0]))  # one task only


def test_goal_accuracy_three_tasks():
    clips = np.array([[2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 3.0, 0, 0], [0, 0, 5.0, 0]])
    clip_tasks = [0, 1, 1, 2]  # one-hot centroids
    z = np.array([[1.0, 0.5, 0, 0],  # task 0: best 0 (hit)
                  [0.9, 0.5, 0, 0],  # task 1: best 0, then 1 (miss at top-1, hit at top-2)
                  [0, 0, 1.0, 0],  # task 2: hit
                  [0, 0, 0, 1.0]])  # task 3: has no clips
    acc = task_retrieval(z, [0, 1, 2, 3], clips, clip_tasks, ks=(1, 2, 5))
    assert acc["top1"] == pytest.approx(2 / 3)
    assert acc["top2"] == pytest.approx(1.0) and acc["top5"] == pytest.approx(1.0)
    assert acc["chance@1"] == pytest.approx(1 / 3)
    assert acc["chance@2"] == pytest.approx(2 / 3)
    assert acc["chance@5"] == pytest.approx(1.0)  # capped
    assert acc["rows_without_clips"] == 1 and acc["n_rows_scored"] == 3 and acc["n_tasks_with_clips"] == 3


def test_goal_accuracy_ties_and_raw_centroid():
    clips = np.array([[1.0, 0.0], [0.0, 1.0]])
    z = np.array([[1.0, 1.0]])  # equally close to both tasks: the task that sorts first wins
    assert task_retrieval(z, ["a"], clips, ["a", "b"], ks=(1,))["top1"] == 1.0
    assert task_retrieval(z, ["b"], clips, ["a", "b"], ks=(1,))["top1"] == 0.0
    # the centroid is the mean of the raw clip embeddings: A = mean((10, 0), (0, 1)) = (5, 0.5), not the
    # mean of unit vectors (which would tie with B = (1, 1) for the row (0, 1) and hand the hit to A)
    acc = task_retrieval([[0.0, 1.0]], ["B"], [[10.0, 0.0], [0.0, 1.0], [1.0, 1.0]], ["A", "A", "B"], ks=(1,))
    assert acc["top1"] == 1.0


def test_pairwise_matrix_and_most_confused():
    z = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    tasks = ["p", "p", "q", "r", "s"]
    names, m = pairwise_task_cosine(z, tasks)
    assert names == ["p", "q", "r", "s"]
    np.testing.assert_array_equal(m, m.T)
    expected = np.array([[1.0, 1 / R2, 0.0, 0.0],
                         [1 / R2, 1.0, 1 / R2, 0.0],
                         [0.0, 1 / R2, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(m, expected, atol=1e-12)
    pairs = most_confused_pairs(names, m, n=3)
    assert [(a, b) for a, b, _ in pairs] == [("p", "q"), ("q", "r"), ("p", "r")]  # ties: earlier pair first
    assert pairs[0][2] == pytest.approx(1 / R2) and pairs[2][2] == pytest.approx(0.0, abs=1e-12)
    assert len(most_confused_pairs(names, m)) == 6


def test_aggregate_over_seeds():
    seed_a = [{"metric": "discriminability", "value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n_tasks": 4, "n_rows": 8},
              {"metric": "top1", "value": 0.25, "ci_low": 0.0, "ci_high": 0.5, "n_tasks": 4, "n_rows": 8}]
    seed_b = [{"metric": "discriminability", "value": 3.0, "ci_low": 2.5, "ci_high": 3.5, "n_tasks": 4, "n_rows": 8},
              {"metric": "top1", "value": 0.75, "ci_low": 0.5, "ci_high": 1.0, "n_tasks": 4, "n_rows": 8}]
    out = aggregate_over_seeds([seed_a, seed_b])
    assert [r["metric"] for r in out] == ["discriminability", "top1"]
    assert out[0]["value"] == pytest.approx(2.0)
    assert out[0]["seed_std"] == pytest.approx(R2)  # sample std (ddof=1) of 1 and 3
    assert out[0]["n_seeds"] == 2
    assert (out[0]["ci_low"], out[0]["ci_high"]) == pytest.approx((1.5, 2.5))
    assert out[1]["value"] == pytest.approx(0.5) and out[1]["seed_std"] == pytest.approx(math.sqrt(0.125))
    single = aggregate_over_seeds([seed_a])
    assert single[0]["seed_std"] == 0.0 and single[0]["n_seeds"] == 1


def test_evaluate_model_rows():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((5, 6))
    tasks = np.repeat([f"t{i}" for i in range(5)], 3)
    z = np.repeat(centres, 3, axis=0) + 0.1 * rng.standard_normal((15, 6))
    text = z + 0.05 * rng.standard_normal(z.shape)
    clip_tasks = ["t0", "t1", "t2", "t3"]  # t4 has no clips
    rows = evaluate_model(z, tasks, text_emb=text, clip_emb=centres[:4], clip_tasks=clip_tasks, n_boot=50)
    by = {r["metric"]: r for r in rows}
    assert list(by) == ["goal_similarity", "separation_gap", "synonym_robustness", "text_discriminability",
                        "text_paraphrase_cosine", "text_gap", "top1", "top5"]
    assert by["separation_gap"]["value"] == pytest.approx(separation_gap(z, tasks))
    assert by["goal_similarity"]["value"] == pytest.approx(goal_similarity(z, tasks))
    assert by["text_gap"]["value"] == pytest.approx(text_discriminability(text, tasks)["gap"])
    assert by["top1"]["value"] == pytest.approx(task_retrieval(z, tasks, centres[:4], clip_tasks)["top1"])
    assert (by["top1"]["n_tasks"], by["top1"]["n_rows"]) == (4, 12)
    assert (by["separation_gap"]["n_tasks"], by["separation_gap"]["n_rows"]) == (5, 15)
    for r in rows:
        assert r["ci_low"] <= r["ci_high"]
    only_z = evaluate_model(z, tasks, n_boot=20)
    assert [r["metric"] for r in only_z] == ["goal_similarity", "separation_gap", "synonym_robustness"]


# --------------------------------------------------------------------------- bootstrap

D, MU_SHIFT, TAU, SIGMA = 8, 1.5, 1.0, 0.7


def _population_discriminability() -> float:
    """E cos(same task) − E cos(different tasks) of the generative model, by a large Monte Carlo."""
    rng = np.random.default_rng(12345)
    m = 300_000
    mu = np.zeros(D)
    mu[0] = MU_SHIFT

    def cos(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    c1 = mu + TAU * rng.standard_normal((m, D))
    c2 = mu + TAU * rng.standard_normal((m, D))
    noise = lambda: SIGMA * rng.standard_normal((m, D))  # noqa: E731
    return float(cos(c1 + noise(), c1 + noise()).mean() - cos(c1 + noise(), c2 + noise()).mean())


def _instruction_set(rng: np.random.Generator, n_tasks: int, phrasings: int = 3):
    mu = np.zeros(D)
    mu[0] = MU_SHIFT
    centres = mu + TAU * rng.standard_normal((n_tasks, D))
    z = np.repeat(centres, phrasings, axis=0) + SIGMA * rng.standard_normal((n_tasks * phrasings, D))
    return z, np.repeat(np.arange(n_tasks), phrasings)


@pytest.mark.slow
def test_bootstrap_ci_covers_the_population_value():
    true = _population_discriminability()
    rng = np.random.default_rng(2024)
    covered = 0
    for rep in range(200):
        z, tasks = _instruction_set(rng, 20)
        _, low, high = metric_with_ci(separation_gap, z, tasks, n_boot=200, seed=rep)
        covered += low <= true <= high
    assert 0.88 <= covered / 200 <= 0.99, covered / 200


def test_bootstrap_ci_narrows_with_more_tasks():
    rng = np.random.default_rng(7)
    widths = {}
    for n_tasks in (10, 80):
        w = []
        for rep in range(5):
            z, tasks = _instruction_set(rng, n_tasks)
            _, low, high = metric_with_ci(separation_gap, z, tasks, n_boot=200, seed=rep)
            w.append(high - low)
        widths[n_tasks] = float(np.mean(w))
    assert widths[80] < 0.6 * widths[10], widths  # ~ 1/sqrt(8) ≈ 0.35 expected


def test_bootstrap_determinism():
    z, tasks = _instruction_set(np.random.default_rng(3), 15)
    a = metric_with_ci(separation_gap, z, tasks, n_boot=100, seed=11)
    b = metric_with_ci(separation_gap, z, tasks, n_boot=100, seed=11)
    c = metric_with_ci(separation_gap, z, tasks, n_boot=100, seed=12)
    assert a == b
    assert a[0] == c[0]
    assert a[1] != c[1] and a[2] != c[2]


def test_bootstrap_resamples_whole_tasks_with_fresh_labels():
    tasks = np.array(["x", "x", "y", "z", "z", "z"])
    seen = []

    def statistic(index, new_labels):
        seen.append((index.copy(), new_labels.copy()))
        return float(len(index))

    point, low, high = bootstrap_ci(statistic, tasks, n_boot=30, seed=0)
    assert point == 6.0
    original_index, original_labels = seen[0]
    np.testing.assert_array_equal(original_index, np.arange(6))
    np.testing.assert_array_equal(original_labels, tasks)
    for index, new_labels in seen[1:]:
        assert len(np.unique(new_labels)) == 3  # 3 draws, each its own label
        for label in np.unique(new_labels):
            rows = index[new_labels == label]
            assert len(np.unique(tasks[rows])) == 1  # one drawn task per label...
            assert len(rows) == int((tasks == tasks[rows[0]]).sum())  # ...with all its rows
    assert 3.0 <= low <= high <= 9.0


def test_bootstrap_drops_nan_resamples():
    tasks = np.array([0, 1, 2, 3])

    def statistic(index, new_labels):
        return float((index == 0).sum()) if 0 in index else math.nan  # NaN whenever task 0 was not drawn

    point, low, high = bootstrap_ci(statistic, tasks, n_boot=200, seed=0)
    assert point == 1.0
    assert 1.0 <= low <= high <= 4.0 and high > low  # the NaN resamples (about a third) are dropped
    assert bootstrap_ci(lambda i, t: math.nan, tasks, n_boot=10)[1:] == pytest.approx((math.nan,) * 2, nan_ok=True)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda: separation_gap(np.zeros(4), [0, 1, 2, 3]), "2-D"),
    (lambda: goal_similarity(np.ones((3, 4)), [0, 1]), "2 labels but z has 3 rows"),
    (lambda: mean_cross_task_cosine(np.ones((3, 4)), [[0, 1, 2]]), "1-D"),
    (lambda: synonym_robustness(np.full((2, 2), np.nan), [0, 1]), "NaN"),
    (lambda: task_retrieval(np.ones((2, 3)), [0, 1], np.ones((2, 4)), [0, 1]), "dimension"),
    (lambda: task_retrieval(np.ones((2, 3)), [0, 1], np.ones((2, 3)), [0]), "clip_tasks has 1 labels"),
    (lambda: task_retrieval(np.ones((2, 3)), [0, 1], np.ones((2, 3)), [0, 1], ks=(0,)), "ks"),
    (lambda: evaluate_model(np.ones((2, 3)), [0, 1], text_emb=np.ones((3, 3)), n_boot=5), "text_emb has 3 rows"),
    (lambda: evaluate_model(np.ones((2, 3)), [0, 1], clip_emb=np.ones((2, 3)), n_boot=5), "together"),
    (lambda: bootstrap_ci(lambda i, t: 0.0, [0, 1], level=1.5), "level"),
    (lambda: bootstrap_ci(lambda i, t: 0.0, [0, 1], n_boot=0), "n_boot"),
    (lambda: separation_gap(np.ones((2, 2)), [0, 1], weighting="pairs"), "weighting"),
    (lambda: separation_gap(np.ones((2, 2)), [0, 0], groups=[0, 1]), "constant within each task"),
    (lambda: most_confused_pairs(["a", "b"], np.ones((3, 3))), "square"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
