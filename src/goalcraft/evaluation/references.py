"""Success visuals from the user's own files, as :class:`~goalcraft.evaluation.run.HeldOutClips`: the
references the goal models are scored against beside the pipeline's held-out goal clips.

* :func:`imported_visuals`: grouped success-visual pickles and recorded-samples folders
  (goalcraft.data.steve1_eval.read_success_visuals, through the restricted unpickler), marked
  ``imported:<entry>``.
* :func:`trial_visuals`: the successful trials of STEVE-1 evaluation result folders or recorded
  samples, each cut into its goal clip (the 16 frames ending at the success frame, as the goal stage
  cuts them) and embedded by a MineCLIP (``goal_embedding``: STEVE-1's goal space), marked
  ``steve1_trials``.

Problems with single tasks or trials come back as quarantine records; a path that does not exist or a
pickle that would run code is a :class:`VisualsError` (one line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from goalcraft.data.quarantine import InputError, QuarantineRecord
from goalcraft.evaluation.run import HeldOutClips

__all__ = ["VisualsError", "imported_visuals", "trial_visuals"]

#: The source of success visuals made from the user's trials outside the pipeline.
TRIALS_SOURCE = "steve1_trials"


class VisualsError(ValueError):
    """Success visuals that cannot be read at all (missing, refused, not success visuals)."""


def imported_visuals(entries: Sequence[str], corpus_root: Path, embed_dim: int,
                     ) -> tuple[HeldOutClips, list[QuarantineRecord]]:
    """Every entry (a grouped pickle or a recorded-samples folder, relative to ``corpus_root`` or
    absolute) as success visuals marked ``imported:<entry>``."""
    from goalcraft.data.steve1_eval import read_success_visuals

    clips, quarantined = HeldOutClips([], [], np.zeros((0, embed_dim))), []
    for entry in entries:
        try:
            visuals, bad = read_success_visuals(entry, corpus_root, embed_dim=embed_dim)
        except (ValueError, InputError) as exc:
            raise VisualsError(str(exc)) from None
        clips = clips + HeldOutClips.from_success_visuals(visuals, f"imported:{entry}")
        quarantined += bad
    return clips, quarantined


def trial_visuals(folder: Path, mineclip: Any, *, resize: str = "steve1-bilinear", frames_fps: float = 20.0,
                  batch_size: int = 8) -> tuple[HeldOutClips, list[QuarantineRecord]]:
    """The goal clips of the successful trials under ``folder`` (STEVE-1 evaluation result folders at
    any depth, else recorded samples ``<task>/trial<N>/``), embedded by ``mineclip``."""
    import torch

    from goalcraft.data.decode import get_decoder
    from goalcraft.data.goal_stage import goal_clips
    from goalcraft.data.mining import mine_trials
    from goalcraft.data.steve1_eval import scan_recorded_samples, scan_steve1_results

    root = Path(folder)
    if not root.is_dir():
        raise VisualsError(f"trials folder {root} does not exist")
    scan = scan_steve1_results if any(root.rglob("result.json")) else scan_recorded_samples
    try:
        trials, quarantined = scan(Path("."), root)
    except ValueError as exc:
        raise VisualsError(str(exc)) from None
    moments, bad = mine_trials(trials)
    quarantined += bad
    decoder = get_decoder("pyav", frames_fps=frames_fps, resize=resize)
    keys, tasks, frames = [], [], []
    for moment in moments:
        for item in goal_clips(moment.source, moment.source_id, moment.video_path, [(moment.source_id, moment)],
                               root, decoder):
            if isinstance(item, QuarantineRecord):
                quarantined.append(item)
            else:
                keys.append(item.key)
                tasks.append(moment.task or "")
                frames.append(item.frames)
    embeddings = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            batch = torch.from_numpy(np.stack(frames[i:i + batch_size]))
            embeddings.append(mineclip.goal_embedding(batch).float().cpu().numpy())
    emb = np.concatenate(embeddings) if embeddings else np.zeros((0, mineclip.embed_dim), np.float32)
    return HeldOutClips(keys, tasks, emb, [TRIALS_SOURCE] * len(keys)), quarantined
