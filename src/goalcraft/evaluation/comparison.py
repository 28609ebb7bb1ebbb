"""The goal models side by side on held-out goal clips: each model's z_goal for a clip's instruction (and
for its task's other phrasings) against the clip's true goal embedding.

Figures: mean cosine, the same centred on the training goals' mean (the component every goal shares
would otherwise hide whether the task-specific part is right), and the predicted/true median norm
ratio (a policy expects raw goal-space scale). The ``goal_model_comparison`` asset runs it on the
test split; the trainers know nothing of it.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from goalcraft.training.predictor import PredictorExamples


def goal_metrics(pred: Tensor, goal: Tensor, center: Tensor) -> dict[str, float]:
    """Mean cosine(pred, goal); the same after subtracting ``center`` (the training goals' mean, so the
    shared component every goal has does not hide whether the task-specific part is right); the
    predicted/true median norm ratio."""
    pred, goal = pred.float(), goal.float()
    return {
        "cosine": float(F.cosine_similarity(pred, goal, dim=-1).mean()),
        "centered_cosine": float(F.cosine_similarity(pred - center, goal - center, dim=-1).mean()),
        "norm_ratio": float(pred.norm(dim=-1).median() / goal.norm(dim=-1).median()),
    }


def compare_with_baseline(examples: PredictorExamples, splits: Mapping[str, np.ndarray],
                          predictor: Callable[[list[str]], Tensor], baseline: Callable[[list[str]], Tensor],
                          split: str = "test") -> dict[str, dict[str, float]]:
    """:func:`goal_metrics` of both models on ``split`` (instructions → z_goal vs the clips' embeddings)."""
    idx = np.asarray(splits[split])
    texts = [examples.instructions[i] for i in idx]
    goal = torch.from_numpy(examples.goals[idx])
    center = torch.from_numpy(examples.goals[np.asarray(splits["train"])]).mean(0)
    return {"predictor": goal_metrics(predictor(texts), goal, center),
            "baseline": goal_metrics(baseline(texts), goal, center), "n": {"clips": float(len(idx))}}


def paraphrase_rows(examples: PredictorExamples, idx: Sequence[int],
                    variants: Mapping[str, Sequence[str]]) -> tuple[list[str], np.ndarray]:
    """(paraphrase, goal row) for every phrasing of each clip's task other than the clip's own."""
    texts, rows = [], []
    for i in idx:
        for text in variants.get(examples.tasks[i], ()):
            if text != examples.instructions[i]:
                texts.append(text)
                rows.append(i)
    return texts, np.asarray(rows, dtype=np.int64)


def evaluate_against_baseline(examples: PredictorExamples, splits: Mapping[str, np.ndarray],
                              predictor: Callable[[list[str]], Tensor], baseline: Callable[[list[str]], Tensor],
                              variants: Mapping[str, Sequence[str]] | None = None,
                              split: str = "test") -> dict[str, dict[str, float]]:
    """Both models on the held-out ``split``: with each clip's own instruction, and (given ``variants``)
    with its task's other phrasings, which neither model was trained on unless passed as variants."""
    out = compare_with_baseline(examples, splits, predictor, baseline, split)
    idx = np.asarray(splits[split])
    texts, rows = paraphrase_rows(examples, idx, variants or {})
    if texts:
        goal = torch.from_numpy(examples.goals[rows])
        center = torch.from_numpy(examples.goals[np.asarray(splits["train"])]).mean(0)
        out["predictor_paraphrases"] = goal_metrics(predictor(texts), goal, center)
        out["baseline_paraphrases"] = goal_metrics(baseline(texts), goal, center)
        out["n"]["paraphrases"] = float(len(texts))
    return out
