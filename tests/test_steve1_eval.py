"""A user's own STEVE-1 evaluation files (konder/aimc's layouts) as agent trials and success visuals:
real result folders with mp4s and PNG report frames, recorded samples, pickles (conftest.aimc_corpus)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from goalcraft.data.clip_stage import trial_clips
from goalcraft.data.decode import get_decoder
from goalcraft.data.goal_stage import goal_clips
from goalcraft.data.mining import mine_trials
from goalcraft.data.quarantine import InputError
from goalcraft.data.steve1_eval import (
    load_success_visuals,
    recorded_success_visuals,
    scan_recorded_samples,
    scan_steve1_results,
    trial_sources,
)
from goalcraft.data.trials import drop_duplicate_ids


def _by_id(records):
    return {r.id: r for r in records}


def _reasons(quarantined):
    return [(q.input, q.reason) for q in quarantined]


# --------------------------------------------------------------------------------------------------
# Evaluation result folders


def test_result_folders_at_any_depth_become_trials(aimc_corpus, aimc):
    records, quarantined = scan_steve1_results(Path("evaluation"), aimc_corpus)
    assert quarantined == []
    prefix = aimc.RESULT.replace("/", "__")
    trials = _by_id(records)
    assert sorted(trials) == sorted([f"{prefix}__trial1", f"{prefix}__trial2", f"{prefix}__trial3",
                                     aimc.OLD_RESULT.replace("/", "__") + "__trial1"])
    one, two, three = (trials[f"{prefix}__trial{i}"] for i in (1, 2, 3))
    assert (one.layout, one.video_path, one.task, one.instruction) == (
        "steve1_result", f"{aimc.RESULT}/trial_1.mp4", "combat_pig", "hunt pig")
    # the episode ends at success: the success frame is steps - 1; footage time is left to the decoder
    assert (one.success, one.success_frame, one.success_time, one.fps, one.num_frames) == (True, 23, None, None, None)
    assert (two.success, two.success_frame) == (False, None)
    # no mp4 (has_video false): the report's PNG frames are the footage
    assert (three.video_path, three.num_frames, three.success_frame) == (
        f"{aimc.RESULT}/report_combat_pig_trial3/frames", 20, 19)
    (old,) = [r for r in records if r.task == "harvest_1_log"]
    assert (old.instruction, old.success_frame) == ("砍树获取原木", 17)


def test_result_folders_and_samples_give_clips_and_goal_clips_ending_at_steps_minus_one(aimc_corpus, aimc):
    records, _ = trial_sources(aimc_corpus, ["evaluation"], [aimc.SAMPLES])
    decoder = get_decoder("pyav")
    moments, _ = mine_trials(records)
    assert len(moments) == 4  # combat_pig 1 and 3, harvest_1_log 1, harvest_1_dirt trial1
    for moment in moments:
        (sample,) = goal_clips(moment.source, moment.source_id, moment.video_path, [("k", moment)], aimc_corpus,
                               decoder)
        frame = moment.success_frame
        assert sample.meta["frame_indices"] == list(range(frame - 15, frame + 1))
        assert sample.meta["fps"] == 20.0 and sample.frames.shape == (16, 160, 256, 3)
        for pixels, index in ((sample.frames[-1], frame), (sample.frames[0], frame - 15)):
            assert np.abs(pixels.reshape(-1, 3).mean(0) - aimc.colour(index)).max() < 4  # H.264 / PNG
    # the clip stage tiles a failed trial's whole footage (30 frames at 20 fps: one 1.5 s window)
    failed = next(r for r in records if r.id.endswith("trial2") and r.layout == "steve1_result")
    (clip,) = list(trial_clips(failed, aimc_corpus, decoder, window_s=1.5))
    assert clip.caption == "hunt pig" and clip.meta["layout"] == "steve1_result"


def test_bad_trials_of_a_result_are_quarantined_one_by_one(aimc_corpus, aimc):
    folder = aimc_corpus / "evaluation" / "set_1" / "harvest_1_sand_en_1"
    trials = [
        {"trial_idx": 1, "success": True, "steps": 10, "has_video": True},  # fine
        {"trial_idx": 2, "success": True, "steps": 12, "has_video": True},  # video lost
        {"trial_idx": 1, "success": False, "steps": 5},  # listed twice
        {"trial_idx": 0, "success": True, "steps": 5},
        {"trial_idx": 4, "success": "yes", "steps": 5},
        {"trial_idx": 5, "success": True, "steps": 0},
        {"trial_idx": 6, "success": True, "steps": 9},  # report of 6 frames only
        {"trial_idx": 7, "success": False, "steps": 3.5},
        "trial 8",
        {"trial_idx": 9, "success": True, "steps": 4},  # a report with a gap
    ]
    aimc.result(folder, "harvest_1_sand", "dig sand", trials, videos={1: 10}, reports={6: 6, 9: 4})
    (folder / "report_harvest_1_sand_trial9" / "frames" / "step_0002.png").unlink()
    records, quarantined = scan_steve1_results(aimc_corpus / "evaluation" / "set_1", aimc_corpus)
    assert [r.id for r in records] == ["evaluation__set_1__harvest_1_sand_en_1__trial1"]
    where = "evaluation/set_1/harvest_1_sand_en_1/result.json"
    assert _reasons(quarantined) == [
        (f"{where}#trial2", "trial_no_video"), (f"{where}#trial1", "trial_duplicate_id"),
        (f"{where}#3", "trial_metadata_malformed"), (f"{where}#trial4", "trial_metadata_malformed"),
        (f"{where}#trial5", "trial_invalid_success"), (f"{where}#trial6", "trial_invalid_success"),
        (f"{where}#trial7", "trial_metadata_malformed"), (f"{where}#8", "trial_metadata_malformed"),
        (f"{where}#trial9", "frame_missing"),
    ]
    details = {q.input: q.detail for q in quarantined}
    assert "no trial_2.mp4 and no report_harvest_1_sand_trial2/frames/ (result.json says has_video: true)" in \
        details[f"{where}#trial2"]
    assert "frame 8" in details[f"{where}#trial6"] and "6 frames" in details[f"{where}#trial6"]
    assert quarantined[0].source_id == "evaluation__set_1__harvest_1_sand_en_1__trial2"


@pytest.mark.parametrize("content, reason, says", [
    (b"{not json", "trial_metadata_malformed", "result.json is not valid JSON"),
    (b"[]", "trial_metadata_malformed", "must hold an object"),
    (json.dumps({"language": "en", "instruction": "x", "trials": []}).encode(), "trial_metadata_malformed",
     "no 'task_id'"),
    (json.dumps({"task_id": "t", "language": "en", "trials": []}).encode(), "trial_no_instruction", "'instruction'"),
    (json.dumps({"task_id": "t", "instruction": "x", "language": "en", "trials": {}}).encode(),
     "trial_metadata_malformed", "'trials' must be a list"),
])
def test_a_bad_result_file_is_one_quarantine_record(aimc_corpus, content, reason, says):
    folder = aimc_corpus / "evaluation" / "broken"
    folder.mkdir()
    (folder / "result.json").write_bytes(content)
    records, quarantined = scan_steve1_results(Path("evaluation"), aimc_corpus)
    assert len(records) == 4  # the good results still count
    (record,) = quarantined
    assert (record.input, record.stage, record.reason) == ("evaluation/broken/result.json", "trial", reason)
    assert says in record.detail


def test_nothing_under_a_results_folder_is_skipped_silently(aimc_corpus, aimc, tmp_path):
    evaluation = aimc_corpus / "evaluation"
    # an interrupted run: videos but no result.json
    interrupted = evaluation / "set_2" / "combat_cow_en_1"
    interrupted.mkdir(parents=True)
    shutil.copy(aimc_corpus / aimc.RESULT / "trial_1.mp4", interrupted / "trial_1.mp4")
    # recorded samples put where results are expected
    shutil.copytree(aimc_corpus / aimc.SAMPLES, evaluation / "samples_by_mistake")
    # a symlink out of the corpus, and hidden folders (skipped: not results)
    outside = tmp_path / "outside"
    shutil.copytree(aimc_corpus / aimc.RESULT, outside)
    os.symlink(outside, evaluation / "linked_out")
    shutil.copytree(aimc_corpus / aimc.RESULT, evaluation / ".trash")
    records, quarantined = scan_steve1_results(Path("evaluation"), aimc_corpus)
    assert len(records) == 4
    assert _reasons(quarantined) == [
        ("evaluation/linked_out", "path_escapes_root"),
        ("evaluation/samples_by_mistake/harvest_1_dirt/result.json", "trial_metadata_malformed"),
        ("evaluation/set_2/combat_cow_en_1", "trial_metadata_missing"),
    ]
    assert "recorded_samples_dirs" in quarantined[1].detail and "no result.json" in quarantined[2].detail
    with pytest.raises(ValueError, match="does not exist"):
        scan_steve1_results(Path("no_such_folder"), aimc_corpus)
    with pytest.raises(ValueError, match="not inside the corpus root"):
        scan_steve1_results(outside, aimc_corpus)


# --------------------------------------------------------------------------------------------------
# Recorded samples


def test_recorded_samples_become_frame_folder_trials(aimc_corpus, aimc):
    records, quarantined = scan_recorded_samples(Path(aimc.SAMPLES), aimc_corpus)
    assert quarantined == []  # the task folder's result.json summary is not a trial
    one, two = records
    assert (one.id, one.layout, one.video_path, one.task, one.instruction) == (
        "train_samples__harvest_1_dirt__trial1", "recorded_sample", "train_samples/harvest_1_dirt/trial1/frames",
        "harvest_1_dirt", "dig dirt")
    assert (one.success, one.success_frame, one.num_frames) == (True, 21, 22)
    assert (two.success, two.success_frame, two.num_frames) == (False, None, 17)


def test_bad_recorded_samples_are_quarantined(aimc_corpus, aimc):
    task = aimc_corpus / aimc.SAMPLES / "harvest_1_dirt"
    aimc.sample(task / "trial3", "harvest_1_sand", "dig sand", success=True, steps=5, frames=5)  # wrong task
    aimc.sample(task / "trial4", "harvest_1_dirt", "dig dirt", success=True, steps=9, frames=5)  # past the frames
    aimc.sample(task / "trial5", "harvest_1_dirt", "dig dirt", success=True, steps=5, frames=5)
    shutil.rmtree(task / "trial5" / "frames")
    aimc.sample(task / "trial6", "harvest_1_dirt", "dig dirt", success=True, steps=5, frames=5)
    (task / "trial6" / "frames" / "step_0001.png").unlink()
    aimc.sample(task / "trial7", "harvest_1_dirt", "", success=True, steps=5, frames=5)
    (task / "trial8").mkdir()  # no trial_info.json
    (task / "notes.txt").write_text("not a trial")
    records, quarantined = scan_recorded_samples(Path(aimc.SAMPLES), aimc_corpus)
    assert [r.id for r in records] == ["train_samples__harvest_1_dirt__trial1", "train_samples__harvest_1_dirt__trial2"]
    base = "train_samples/harvest_1_dirt"
    assert _reasons(quarantined) == [
        (f"{base}/trial3", "trial_metadata_malformed"), (f"{base}/trial4", "trial_invalid_success"),
        (f"{base}/trial5", "trial_no_video"), (f"{base}/trial6", "frame_missing"),
        (f"{base}/trial7", "trial_no_instruction"), (f"{base}/trial8", "trial_metadata_missing"),
    ]
    assert "'harvest_1_sand'" in quarantined[0].detail and "step_0001.png is missing" in quarantined[3].detail


def test_the_same_trial_from_two_configured_folders_is_kept_once(aimc_corpus, aimc):
    records, quarantined = trial_sources(aimc_corpus, ["evaluation", "evaluation"], [aimc.SAMPLES])
    kept, duplicates = drop_duplicate_ids(records)
    assert quarantined == [] and len(kept) == 6 and len(duplicates) == 4
    assert {d.reason for d in duplicates} == {"trial_duplicate_id"} and "already used by" in duplicates[0].detail


# --------------------------------------------------------------------------------------------------
# Success visuals


def test_recorded_success_visuals_group_successful_embeddings_by_task(aimc_corpus, aimc, tmp_path):
    visuals, quarantined = recorded_success_visuals(Path(aimc.SAMPLES), aimc_corpus)
    assert quarantined == []  # trial2 failed: its missing pickle is not wanted
    instruction, embeds = visuals["harvest_1_dirt"]
    assert instruction == "dig dirt" and embeds.shape == (1, 512) and embeds.dtype == np.float32
    assert np.array_equal(embeds[0], np.linspace(-1, 1, 512, dtype=np.float32))

    task = aimc_corpus / aimc.SAMPLES / "harvest_1_dirt"
    aimc.sample(task / "trial3", "harvest_1_dirt", "dig dirt", success=True, steps=4, frames=4)  # no pickle
    aimc.sample(task / "trial4", "harvest_1_dirt", "dig dirt", success=True, steps=4, frames=4,
                embed=np.zeros(256, np.float32))
    target = tmp_path / "pwned"
    aimc.sample(task / "trial5", "harvest_1_dirt", "dig dirt", success=True, steps=4, frames=4)
    (task / "trial5" / "visual_embeds.pkl").write_bytes(
        b"cposix\nsystem\n(V" + f"touch {target}".encode() + b"\ntR.")
    visuals, quarantined = recorded_success_visuals(Path(aimc.SAMPLES), aimc_corpus)
    assert visuals["harvest_1_dirt"].embeds.shape == (1, 512)
    assert [(q.input, q.stage, q.reason) for q in quarantined] == [
        ("train_samples/harvest_1_dirt/trial3/visual_embeds.pkl", "success_visuals", "embedding_missing"),
        ("train_samples/harvest_1_dirt/trial4/visual_embeds.pkl", "success_visuals", "embedding_invalid"),
        ("train_samples/harvest_1_dirt/trial5/visual_embeds.pkl", "success_visuals", "pickle_refused"),
    ]
    assert not target.exists() and "posix.system" in quarantined[2].detail
    assert "shape (256,), expected (512,)" in quarantined[1].detail


def _visuals_file(path: Path, data) -> Path:
    path.write_bytes(pickle.dumps(data))
    return path


def _entry(n: int = 2, **changes):
    rng = np.random.default_rng(n)
    entry = {"instruction": "chop tree", "success_visual_embeds": [rng.normal(size=512).astype(np.float32)
                                                                     for _ in range(n)],
             "n_success_trials": n, "embed_dim": 512}
    return entry | changes


def test_grouped_success_visuals_load_as_float32_arrays(tmp_path):
    good = _entry(3)
    path = _visuals_file(tmp_path / "success_visuals.pkl", {
        "harvest_1_log": good,
        "harvest_1_dirt": _entry(1, instruction="  dig   dirt ", success_visual_embeds=np.ones((1, 512))),
        "combat_pig": _entry(1, success_visual_embeds=[np.ones((1, 512), np.float16)]),  # (1, 512) is squeezed
    })
    visuals, quarantined = load_success_visuals(path)
    assert quarantined == []
    instruction, embeds = visuals["harvest_1_log"]
    assert instruction == "chop tree" and embeds.dtype == np.float32 and embeds.shape == (3, 512)
    assert np.array_equal(embeds, np.stack(good["success_visual_embeds"]))
    assert visuals["harvest_1_dirt"].instruction == "dig dirt" and visuals["combat_pig"].embeds.shape == (1, 512)


def test_bad_success_visuals_are_quarantined_per_task_or_refused_whole(tmp_path):
    nan = _entry(2)
    nan["success_visual_embeds"][1][7] = np.nan
    path = _visuals_file(tmp_path / "v.pkl", {
        "ok": _entry(2),
        "dim": _entry(2, embed_dim=768),
        "nan": nan,
        "huge": _entry(1, success_visual_embeds=[np.full(512, 1e300)]),  # inf as float32
        "shape": _entry(1, success_visual_embeds=[np.ones(511, np.float32)]),
        "ints": _entry(1, success_visual_embeds=[np.ones(512, np.int64)]),
        "count": _entry(2, n_success_trials=3),
        "empty": _entry(0),
        "no_instruction": _entry(1, instruction=None),
        "not_a_dict": [np.ones(512)],
    })
    visuals, quarantined = load_success_visuals(path, shown="v.pkl")
    assert list(visuals) == ["ok"]
    assert [(q.input, q.reason) for q in quarantined] == [
        ("v.pkl#dim", "embedding_invalid"), ("v.pkl#nan", "embedding_invalid"), ("v.pkl#huge", "embedding_invalid"),
        ("v.pkl#shape", "embedding_invalid"), ("v.pkl#ints", "embedding_invalid"),
        ("v.pkl#count", "success_visuals_malformed"), ("v.pkl#empty", "success_visuals_malformed"),
        ("v.pkl#no_instruction", "success_visuals_malformed"), ("v.pkl#not_a_dict", "success_visuals_malformed"),
    ]
    details = {q.input: q.detail for q in quarantined}
    assert "'embed_dim' is 768, expected 512" in details["v.pkl#dim"]
    assert "embedding 1: 1 non-finite" in details["v.pkl#nan"]
    assert "'n_success_trials' is 3, expected 2" in details["v.pkl#count"]

    for data, reason in (([1, 2], "success_visuals_malformed"), ({}, "success_visuals_malformed")):
        with pytest.raises(InputError) as info:
            load_success_visuals(_visuals_file(tmp_path / "w.pkl", data))
        assert info.value.reason == reason
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cbuiltins\nexec\n(Vopen(" + repr(str(target)).encode() + b", 'w')\ntR.")
    with pytest.raises(InputError) as info:
        load_success_visuals(evil)
    assert info.value.reason == "pickle_refused" and "builtins.exec" in info.value.detail and not target.exists()


def test_a_configured_folder_that_does_not_exist_stops_ingest_in_one_line(aimc_corpus, tmp_path):
    from goalcraft.stages import StageError
    from goalcraft.stages.ingest import ingest_trials
    from goalcraft.storage import StoragePaths

    paths = StoragePaths(tmp_path / "data")
    with pytest.raises(StageError, match="STEVE-1 results folder .*no_such.* does not exist .*steve1_results_dirs"):
        ingest_trials(paths, aimc_corpus, aimc_corpus / "trials", 1, steve1_results_dirs=["no_such"])
    result = ingest_trials(paths, aimc_corpus, aimc_corpus / "trials", 1, recorded_samples_dirs=["train_samples"])
    assert result.metadata["recorded_samples"] == 2 and result.warnings  # no trials/ folder: said, not an error
