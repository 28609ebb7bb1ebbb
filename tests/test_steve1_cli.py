"""Goals back to the user's STEVE-1 agent (``goalcraft export-goals``) and their prior evaluation run
standalone (``goalcraft evaluate-prior``), on tiny checkpoints in the original file formats
(conftest.user_models), eval_tasks.yaml and success visuals built here; figures checked by hand."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from goalcraft.cli import main
from goalcraft.data.safe_pickle import safe_load
from goalcraft.evaluation.goal_models import baseline_under_test
from goalcraft.models.mineclip import MINECLIP_CONFIGS, load_mineclip_checkpoint
from goalcraft.models.prior import load_steve1_prior

FIXTURES = Path(__file__).parent / "fixtures" / "aimc"
#: The evaluator's PriorEvaluationSummary.to_dict and PriorAnalysisResult.to_dict fields.
SUMMARY_FIELDS = {"task_results", "discriminability", "avg_goal_accuracy", "avg_consistency",
                  "avg_semantic_robustness", "is_degraded", "degradation_warning", "visualization_data"}
TASK_FIELDS = {"task_id", "instruction", "goal_accuracy", "goal_accuracy_std", "consistency", "semantic_robustness",
               "n_success_visuals", "n_samples", "n_variants", "prior_embed_dim", "visual_embed_dim"}


@pytest.fixture(autouse=True)
def _no_settings_file(monkeypatch, tmp_path):
    monkeypatch.delenv("GOALCRAFT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def baseline(user_models):
    mineclip = load_mineclip_checkpoint(user_models.mineclip, MINECLIP_CONFIGS["demo"])
    return baseline_under_test(mineclip, load_steve1_prior(user_models.prior, config=None), {})


def _models_args(user_models) -> list[str]:
    return ["--mineclip", str(user_models.mineclip), "--prior", str(user_models.prior), "--mineclip-config", "demo"]


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# export-goals


def test_export_goals_writes_steve1_visual_prompt_pickles(user_models, baseline, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("# goals for the agent\nchop a tree\n\nhunt a pig\nchop a tree!\n")
    out = tmp_path / "goals"
    out.mkdir()
    (out / "theirs.pkl").write_bytes(b"left alone")
    assert main(["export-goals", "--instructions", str(tmp_path / "prompts.txt"), "--out", str(out),
                 "--model", "baseline", *_models_args(user_models)]) == 0
    assert "wrote 3 goals (mineclip_prior, deterministic, shape (1, 512) float32)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["chop_a_tree.pkl", "chop_a_tree_2.pkl", "goals.npz",
                                                     "hunt_a_pig.pkl", "index.json", "theirs.pkl"]
    expected = baseline.predict(["chop a tree", "hunt a pig", "chop a tree!"], None)
    for name, row in (("chop_a_tree", 0), ("hunt_a_pig", 1), ("chop_a_tree_2", 2)):
        data = (out / f"{name}.pkl").read_bytes()
        # NumPy 1.x's module path (the user's Python 3.9 environment), loaded by plain pickle and our unpickler.
        assert b"numpy.core.multiarray" in data and b"numpy._core" not in data
        for goal in (pickle.loads(data), safe_load(out / f"{name}.pkl")):
            assert isinstance(goal, np.ndarray) and goal.shape == (1, 512) and goal.dtype == np.float32
            assert np.allclose(goal[0], expected[row], atol=1e-6)
        # What STEVE-1's MineRLConditionalAgent does with it: th.from_numpy, a batch of one.
        assert torch.from_numpy(pickle.loads(data)).shape == (1, 512)
    with np.load(out / "goals.npz", allow_pickle=False) as npz:
        assert npz["z_goal"].shape == (3, 512) and npz["z_goal"].dtype == np.float32
        assert npz["names"].tolist() == ["chop_a_tree", "hunt_a_pig", "chop_a_tree_2"]
        assert npz["instructions"].tolist() == ["chop a tree", "hunt a pig", "chop a tree!"]
    index = json.loads((out / "index.json").read_text())
    assert index["model"] == "mineclip_prior" and index["mode"] == "deterministic" and index["shape"] == [1, 512]
    assert index["checkpoints"]["prior"] == str(user_models.prior) and len(index["checkpoints"]["prior_sha256"]) == 64
    assert [g["file"] for g in index["goals"]] == ["chop_a_tree.pkl", "hunt_a_pig.pkl", "chop_a_tree_2.pkl"]
    assert (out / "theirs.pkl").read_bytes() == b"left alone"


def test_export_goals_from_a_task_file_and_sampled_as_steve1(user_models, baseline, tmp_path):
    out = tmp_path / "goals"
    args = ["export-goals", "--instructions", str(FIXTURES / "eval_tasks.yaml"), "--out", str(out), "--model",
            "baseline", *_models_args(user_models), "--sample", "--seed", "3"]
    assert main(args) == 0
    index = json.loads((out / "index.json").read_text())
    assert [(g["name"], g["instruction"], g["task"]) for g in index["goals"]][:2] == [
        ("harvest_1_log", "chop a tree", "harvest_1_log"), ("combat_pig", "hunt a pig", "combat_pig")]
    texts = [g["instruction"] for g in index["goals"]]
    sampled = baseline.predict(texts, 3)
    assert np.allclose(pickle.loads((out / "combat_pig.pkl").read_bytes())[0], sampled[1], atol=1e-6)
    assert not np.allclose(sampled, baseline.predict(texts, None)) and index["mode"] == "sampled (seed 3)"


def test_export_goals_from_a_goal_predictor(tmp_path):
    from goalcraft.models.backbones import BackboneSpec, load_text_backbone
    from goalcraft.models.predictor import PREDICTOR_CONFIGS, GoalPredictor, load_goal_predictor, save_goal_predictor

    torch.manual_seed(0)
    model = GoalPredictor(PREDICTOR_CONFIGS["tiny-minilm"], load_text_backbone(BackboneSpec())).eval()
    save_goal_predictor(model, tmp_path / "predictor" / "best")
    (tmp_path / "prompts.txt").write_text("chop a tree\n")
    assert main(["export-goals", "--instructions", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out"),
                 "--predictor", str(tmp_path / "predictor")]) == 0
    goal = pickle.loads((tmp_path / "out" / "chop_a_tree.pkl").read_bytes())
    expected = load_goal_predictor(tmp_path / "predictor" / "best").predict_goal(["chop a tree"]).numpy()
    assert goal.shape == (1, 32) and goal.dtype == np.float32 and np.allclose(goal, expected, atol=1e-6)


def test_export_goals_errors_are_one_line(user_models, tmp_path, capsys):
    cases = [
        (["--instructions", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")], "instructions file not found"),
        (["--instructions", str(FIXTURES / "eval_tasks.yaml"), "--out", str(tmp_path / "o")], "no goal predictor in"),
        (["--instructions", str(FIXTURES / "eval_tasks.yaml"), "--out", str(tmp_path / "o"), "--model", "baseline",
          "--mineclip", str(user_models.mineclip)], "--mineclip and --prior go together"),
        (["--instructions", str(FIXTURES / "eval_tasks.yaml"), "--out", str(tmp_path / "o"), "--model", "baseline",
          "--mineclip", str(user_models.mineclip), "--prior", str(user_models.prior)], "does not match MineCLIP"),
    ]
    for args, message in cases:
        assert main(["export-goals", *args]) != 0
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


# --------------------------------------------------------------------------------------------------
# evaluate-prior


@pytest.fixture
def visuals_file(tmp_path):
    """Grouped success visuals in the user's pickle format: two tasks of the fixture's eval_tasks.yaml
    (harvest_1_log: 3 visuals, combat_pig: 1), the third task without any."""
    rng = np.random.default_rng(5)
    data = {"harvest_1_log": {"instruction": "chop a tree", "n_success_trials": 3, "embed_dim": 512,
                              "success_visual_embeds": [rng.normal(size=512).astype(np.float32) for _ in range(3)]},
            "combat_pig": {"instruction": "hunt a pig", "n_success_trials": 1, "embed_dim": 512,
                           "success_visual_embeds": [rng.normal(size=512).astype(np.float32)]}}
    path = tmp_path / "success_visuals.pkl"
    path.write_bytes(pickle.dumps(data))
    return path, data


def test_evaluate_prior_writes_the_users_summary_with_hand_checked_figures(user_models, baseline, visuals_file,
                                                                           tmp_path, capsys):
    from goalcraft.evaluation.instructions import load_instruction_set

    path, data = visuals_file
    out = tmp_path / "eval"
    assert main(["evaluate-prior", "--tasks", str(FIXTURES / "eval_tasks.yaml"), "--success-visuals", str(path),
                 *_models_args(user_models), "--out", str(out), "--n-boot", "20", "--seed", "4"]) == 0
    said = capsys.readouterr().out
    assert "aimc:eval_tasks: 3 tasks, 4 success visuals; mineclip_prior: goal accuracy" in said
    summary = json.loads((out / "prior_evaluation_summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert set(summary) == SUMMARY_FIELDS | {"goalcraft"}
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["differences", "examples", "per_instruction",
                                                                   "per_pair", "per_task", "runs", "summary"]

    # By hand, from the model's own goals: the prior's deterministic mode (latent 0) and its sampled mode
    # as the evaluation draws it (every phrasing in one call with the seed; repeats of the canonical
    # instruction with seed + 1).
    iset = load_instruction_set(str(FIXTURES / "eval_tasks.yaml"), tmp_path)
    texts = [p for t in iset.tasks for p in t.phrasings]
    first = np.cumsum([0] + [len(t.phrasings) for t in iset.tasks])[:-1]
    visuals = {t: _unit(np.stack(v["success_visual_embeds"])) for t, v in data.items()}

    def expected(z, draws=None):
        canon = _unit(z[first])
        per_task = []
        for k, task in enumerate(iset.tasks):
            acc = (visuals[task.name] @ canon[k] + 1) / 2 if task.name in visuals else None
            variants = _unit(z[first[k] + 1:first[k] + len(task.phrasings)])
            i, j = np.triu_indices(len(variants), 1)
            robust = float(np.mean(np.sum(variants[i] * variants[j], 1))) if len(variants) >= 2 else None
            consistency = 1.0
            if draws is not None:
                d = _unit(draws[:, k])
                i, j = np.triu_indices(len(d), 1)
                consistency = float(np.mean(np.sum(d[i] * d[j], 1)))
            per_task.append({"task_id": task.name, "instruction": task.phrasings[0],
                             "goal_accuracy": None if acc is None else float(acc.mean()),
                             "goal_accuracy_std": None if acc is None else float(acc.std()),
                             "semantic_robustness": robust, "consistency": consistency,
                             "n_success_visuals": len(visuals.get(task.name, [])),
                             "n_variants": len(task.phrasings) - 1, "prior_embed_dim": 512, "visual_embed_dim": 512})
        i, j = np.triu_indices(len(canon), 1)
        collapse = float(np.mean(np.sum(canon[i] * canon[j], 1)))
        variance = float(np.var(z[first], axis=0).mean())
        return per_task, 1 - collapse, variance

    firsts = [t.phrasings[0] for t in iset.tasks]
    draws = baseline.predict(firsts * 10, 5).reshape(10, len(firsts), -1)
    for result, z, d, n_samples in ((summary, baseline.predict(texts, 4), draws, 10),
                                    (summary["goalcraft"]["entries"]["mineclip_prior:deterministic"],
                                     baseline.predict(texts, None), None, 1)):
        per_task, discriminability, variance = expected(z, d)
        for got, want in zip(result["task_results"], per_task):
            assert TASK_FIELDS <= set(got) and got["n_samples"] == n_samples
            for key, value in want.items():
                assert got[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
        assert result["discriminability"] == pytest.approx(discriminability, abs=1e-6)
        accuracies = [t["goal_accuracy"] for t in per_task if t["goal_accuracy"] is not None]
        assert result["avg_goal_accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-6)  # tasks with visuals
        robust = [t["semantic_robustness"] for t in per_task if t["semantic_robustness"] is not None]
        assert result["avg_semantic_robustness"] == pytest.approx(np.mean(robust), abs=1e-6)
        assert result["avg_consistency"] == pytest.approx(np.mean([t["consistency"] for t in per_task]), abs=1e-6)
        degraded = discriminability < 0.3 or variance < 1e-4
        assert result["is_degraded"] == degraded and ("not degraded" in result["degradation_warning"]) != degraded
        vis = result["visualization_data"]
        assert vis["variance"]["mean_variance"] == pytest.approx(variance, rel=1e-5)
        assert vis["similarity_matrix"]["labels"] == [t.name for t in iset.tasks]
        assert vis["similarity_matrix"]["matrix"][0][0] == 1.0 and vis["tsne"] is None
        assert [r["task_id"] for r in vis["rankings"]["top_tasks"]] == [
            t["task_id"] for t in sorted((t for t in per_task if t["goal_accuracy"] is not None),
                                         key=lambda t: -t["goal_accuracy"])]
    g = summary["goalcraft"]
    assert g["entry"] == "mineclip_prior" and g["mode"] == "sampled" and g["instruction_set"] == "aimc:eval_tasks"
    assert g["metrics"]["goal_accuracy"]["value"] == pytest.approx(summary["avg_goal_accuracy"])
    assert g["metrics"]["top1"]["chance"] == pytest.approx(0.5)  # two tasks have visuals
    assert g["success_visuals_by_source"] == {"imported:success_visuals.pkl": 4}
    assert summary["task_results"][2]["goal_accuracy"] is None  # no visuals: null, not the evaluator's 0.0
    assert g["models"]["mineclip_prior#seed0"]["prior_sha256"] and g["left_out"] == []
    runs = pq.read_table(next((out / "tables" / "runs").glob("*.parquet"))).to_pylist()
    assert json.loads(runs[0]["settings"])["n_boot"] == 20


def test_evaluate_prior_is_the_dagster_evaluations_computation(user_models, baseline, visuals_file, tmp_path):
    """The JSON the CLI writes is prior_evaluation_summary of run_evaluation's tables, the pair of calls
    the goal_model_evaluation asset makes (with the asset's own models, sets and clips)."""
    from goalcraft.data.steve1_eval import load_success_visuals
    from goalcraft.evaluation.instructions import load_instruction_set
    from goalcraft.evaluation.run import HeldOutClips, run_evaluation
    from goalcraft.evaluation.steve1_summary import prior_evaluation_summary, write_prior_summaries

    path, _ = visuals_file
    out = tmp_path / "eval"
    main(["evaluate-prior", "--tasks", str(FIXTURES / "eval_tasks.yaml"), "--success-visuals", str(path),
          *_models_args(user_models), "--out", str(out), "--n-boot", "20", "--seed", "4"])
    cli = json.loads((out / "prior_evaluation_summary.json").read_text())
    iset = load_instruction_set(str(FIXTURES / "eval_tasks.yaml"), tmp_path)
    clips = HeldOutClips.from_success_visuals(load_success_visuals(path)[0], "imported:success_visuals.pkl")
    tables = run_evaluation([baseline], [iset], clips, data_versions={}, n_boot=20, seed=4)
    direct = json.loads(json.dumps(prior_evaluation_summary(tables, iset.name)))
    strip = lambda s: {k: v for k, v in s.items() if k != "goalcraft"}  # noqa: E731  (run ids, provenance differ)
    assert strip(cli) == strip(direct)
    written = write_prior_summaries(tables, tmp_path / "asset")
    assert written == {"aimc:eval_tasks": tmp_path / "asset" / "aimc_eval_tasks" / "prior_evaluation_summary.json"}
    assert strip(json.loads(written["aimc:eval_tasks"].read_text())) == strip(cli)


def test_evaluate_prior_on_the_users_trials_and_with_a_predictor(user_models, aimc_corpus, tmp_path):
    from goalcraft.models.backbones import BackboneSpec, load_text_backbone
    from goalcraft.models.predictor import PREDICTOR_CONFIGS, GoalPredictor, save_goal_predictor

    tasks = tmp_path / "instruction_variants.json"
    tasks.write_text(json.dumps({"combat_pig": {"canonical": "hunt pig", "variants": ["kill a pig", "get pork"]},
                                 "harvest_1_log": {"canonical": "chop a tree", "variants": ["get a log"]}}))
    torch.manual_seed(0)
    config = PREDICTOR_CONFIGS["tiny-minilm"].replace(goal_dim=512, frame_dim=512)
    save_goal_predictor(GoalPredictor(config, load_text_backbone(BackboneSpec())).eval(), tmp_path / "pred")
    out = tmp_path / "eval"
    assert main(["evaluate-prior", "--tasks", str(tasks), "--trials", str(aimc_corpus / "evaluation"),
                 *_models_args(user_models), "--predictor", str(tmp_path / "pred"), "--out", str(out),
                 "--n-boot", "10"]) == 0
    summary = json.loads((out / "prior_evaluation_summary.json").read_text())
    # combat_pig: trials 1 (mp4) and 3 (report frames) succeeded; harvest_1_log: trial 1.
    assert {t["task_id"]: t["n_success_visuals"] for t in summary["task_results"]} == {"combat_pig": 2,
                                                                                        "harvest_1_log": 1}
    assert {t["visual_sources"] for t in summary["task_results"]} == {"steve1_trials"}
    g = summary["goalcraft"]
    assert set(g["entries"]) == {"mineclip_prior:deterministic", "goal_predictor"}
    assert {(d["model_a"], d["model_b"], d["mode_b"]) for d in g["differences"]} == {
        ("goal_predictor", "mineclip_prior", "sampled"), ("goal_predictor", "mineclip_prior", "deterministic")}
    runs = pq.read_table(next((out / "tables" / "runs").glob("*.parquet"))).to_pylist()
    assert json.loads(runs[0]["data_versions"])["resize"] == "steve1-bilinear"


def test_evaluate_prior_errors_are_one_line(user_models, visuals_file, tmp_path, capsys):
    path, _ = visuals_file
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(Vtouch " + str(tmp_path / "pwned").encode() + b"\ntR.")
    base = ["evaluate-prior", "--out", str(tmp_path / "o")]
    cases = [
        ([*base, "--tasks", str(tmp_path / "none.yaml"), "--success-visuals", str(path)], "tasks file not found"),
        ([*base, "--tasks", str(FIXTURES / "eval_tasks.yaml"), "--success-visuals", str(path)], "nothing to evaluate"),
        ([*base, "--tasks", str(FIXTURES / "eval_tasks.yaml"), "--success-visuals", str(tmp_path / "no.pkl"),
          *_models_args(user_models)], "does not exist"),
        ([*base, "--tasks", str(FIXTURES / "eval_tasks.yaml"), "--success-visuals", str(evil),
          *_models_args(user_models)], "refus"),
        ([*base, "--tasks", str(FIXTURES / "eval_tasks.yaml"), "--success-visuals", str(path),
          "--mineclip", str(user_models.mineclip), "--prior", str(user_models.mineclip), "--mineclip-config", "demo"],
         "attn.pth: entries that are not tensors"),  # MineCLIP's file given as the prior
    ]
    for args, message in cases:
        assert main(args) != 0
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "pwned").exists()
