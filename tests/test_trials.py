from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from goalcraft.data.trials import TrialRecord, scan_trials, trial_id_for


def make_trial(
    trials: Path,
    name: str,
    metadata: object | bytes | None,
    *,
    video: str | None = "video.mp4",
    len_txt: str | None = None,
) -> Path:
    folder = trials / name
    folder.mkdir(parents=True)
    if video is not None:
        (folder / video).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    if metadata is not None:
        data = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
        (folder / "metadata.json").write_bytes(data)
    if len_txt is not None:
        (folder / "len.txt").write_text(len_txt, encoding="utf-8")
    return folder


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "trials").mkdir(parents=True)
    return root


def scan(corpus: Path) -> tuple[list[TrialRecord], list[tuple[str, str]]]:
    records, quarantined = scan_trials(corpus / "trials", corpus)
    assert all(q.stage == "trial" for q in quarantined)
    return records, [(q.input, q.reason) for q in quarantined]


def test_goalcraft_layout(corpus: Path) -> None:
    trials = corpus / "trials"
    make_trial(trials, "t2", {"instruction": "  chop a\ttree ", "success": True, "success_time": 12.5,
                              "fps": 20, "task": "harvest_log"})
    make_trial(trials, "t1", {"instruction": "dig down", "success": False}, video="video.webm")
    make_trial(trials, "t3", {"instruction": "swim", "success": True, "success_frame": 30, "fps": 20})
    make_trial(trials, "t4", {"instruction": "build", "success": True, "success_frame": 7})
    make_trial(trials, "t5", {"instruction": "jump", "success": True, "success_time": 1.0,
                              "success_frame": 21, "fps": 20})  # within one frame
    (trials / "t5" / "video.mkv").write_bytes(b"x")  # mp4 preferred over mkv

    records, quarantined = scan(corpus)

    assert quarantined == []
    assert records == [
        TrialRecord("t1", "goalcraft", "trials/t1/video.webm", "dig down", None, False, None, None, None, None),
        TrialRecord("t2", "goalcraft", "trials/t2/video.mp4", "chop a tree", "harvest_log", True, 12.5, 250, 20.0, None),
        TrialRecord("t3", "goalcraft", "trials/t3/video.mp4", "swim", None, True, 1.5, 30, 20.0, None),
        TrialRecord("t4", "goalcraft", "trials/t4/video.mp4", "build", None, True, None, 7, None, None),
        TrialRecord("t5", "goalcraft", "trials/t5/video.mp4", "jump", None, True, 1.0, 21, 20.0, None),
    ]


def test_steve1_layout(corpus: Path) -> None:
    trials = corpus / "trials"
    ep = make_trial(trials, "episode_0", {"text_prompt": "get dirt", "task": "dirt"},
                    video="frames.mp4", len_txt="1200\n")
    # a pickle that would run code if unpickled; the scanner must never open it
    (ep / "actions.pkl").write_bytes(b"cos\nsystem\n(S'exit 1'\ntR.")
    (ep / "embeds_attn.pkl").write_bytes(b"not a pickle at all")
    make_trial(trials, "episode_1", {"prompt": "find a cave", "task": "explore", "success": True,
                                     "success_frame": 600, "fps": 20},
               video="frames.mp4", len_txt="1200")
    make_trial(trials, "episode_2", {"task": "collect wood", "instruction": " "}, video="frames.mp4")

    records, quarantined = scan(corpus)

    assert quarantined == []
    assert records == [
        TrialRecord("episode_0", "steve1", "trials/episode_0/frames.mp4", "get dirt", "dirt", False,
                    None, None, None, 1200),
        TrialRecord("episode_1", "steve1", "trials/episode_1/frames.mp4", "find a cave", "explore", True,
                    30.0, 600, 20.0, 1200),
        TrialRecord("episode_2", "steve1", "trials/episode_2/frames.mp4", "collect wood", "collect wood",
                    False, None, None, None, None),
    ]


def test_instruction_key_order() -> None:
    from goalcraft.data.trials import INSTRUCTION_KEYS

    assert INSTRUCTION_KEYS == ("instruction", "text_prompt", "prompt", "task")


def test_both_layouts_present_reads_goalcraft(corpus: Path) -> None:
    folder = make_trial(corpus / "trials", "both", {"instruction": "x", "success": False})
    (folder / "frames.mp4").write_bytes(b"x")
    (record,), _ = scan(corpus)
    assert (record.layout, record.video_path) == ("goalcraft", "trials/both/video.mp4")


def test_hidden_entries_and_plain_files_are_ignored(corpus: Path) -> None:
    trials = corpus / "trials"
    make_trial(trials, ".ipynb_checkpoints", None, video=None)
    (trials / "README.txt").write_text("not a trial", encoding="utf-8")
    make_trial(trials, "ok", {"instruction": "x", "success": False})
    records, quarantined = scan(corpus)
    assert [r.id for r in records] == ["ok"] and quarantined == []


def test_unsafe_folder_names_get_a_key_safe_id(corpus: Path) -> None:
    trials = corpus / "trials"
    make_trial(trials, "my trial #1", {"instruction": "x", "success": False})
    make_trial(trials, "été", {"instruction": "y", "success": False})
    records, quarantined = scan(corpus)
    digest = hashlib.sha1("my trial #1".encode()).hexdigest()[:8]
    assert quarantined == []
    assert [(r.id, r.video_path) for r in records] == [
        (f"my_trial__1-{digest}", "trials/my trial #1/video.mp4"),
        (f"_t_-{hashlib.sha1('été'.encode()).hexdigest()[:8]}", "trials/été/video.mp4"),
    ]
    assert trial_id_for("run-01_b") == "run-01_b"


def test_colliding_ids_are_quarantined(corpus: Path) -> None:
    trials = corpus / "trials"
    make_trial(trials, "a b", {"instruction": "x", "success": False})
    make_trial(trials, trial_id_for("a b"), {"instruction": "x", "success": False})
    records, quarantined = scan(corpus)
    assert [r.video_path for r in records] == ["trials/a b/video.mp4"]
    assert quarantined == [(f"trials/{trial_id_for('a b')}", "trial_duplicate_id")]


def test_bad_trials_are_quarantined(tmp_path: Path, corpus: Path) -> None:
    trials = corpus / "trials"
    ok = {"instruction": "chop", "success": True, "success_time": 3.0}
    make_trial(trials, "a_ok", ok)
    make_trial(trials, "b_no_video", ok, video=None)
    make_trial(trials, "b_only_pkl", None, video=None).joinpath("actions.pkl").write_bytes(b"x")
    make_trial(trials, "c_no_metadata", None)
    make_trial(trials, "d_not_json", b'{"instruction": "chop", "success": tr')
    make_trial(trials, "e_not_utf8", b'{"instruction": "caf\xe9", "success": false}')
    make_trial(trials, "f_not_object", [ok])
    make_trial(trials, "g_success_string", {"instruction": "x", "success": "yes"})
    make_trial(trials, "h_success_missing", {"instruction": "x"})
    make_trial(trials, "i_instruction_int", {"instruction": 3, "success": False})
    make_trial(trials, "j_no_instruction", {"prompt": "x", "success": False})  # goalcraft: only 'instruction'
    make_trial(trials, "k_steve1_no_instruction", {"fps": 20}, video="frames.mp4")
    make_trial(trials, "l_true_without_time", {"instruction": "x", "success": True})
    make_trial(trials, "m_negative_time", {"instruction": "x", "success": True, "success_time": -1})
    make_trial(trials, "n_nan_time", b'{"instruction": "x", "success": true, "success_time": NaN}')
    make_trial(trials, "o_disagree", {"instruction": "x", "success": True, "success_time": 1.0,
                                      "success_frame": 25, "fps": 20})
    make_trial(trials, "p_false_with_time", {"instruction": "x", "success": False, "success_time": 2})
    make_trial(trials, "q_frame_float", {"instruction": "x", "success": True, "success_frame": 2.5})
    make_trial(trials, "r_negative_frame", {"instruction": "x", "success": True, "success_frame": -3})
    make_trial(trials, "s_bad_fps", {"instruction": "x", "success": False, "fps": 0})
    make_trial(trials, "t_bad_len", {"text_prompt": "x"}, video="frames.mp4", len_txt="12 frames")
    make_trial(trials, "u_frame_past_len", {"text_prompt": "x", "success": True, "success_frame": 50},
               video="frames.mp4", len_txt="50")
    make_trial(trials, "v_time_string", {"instruction": "x", "success": True, "success_time": "3"})
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "video.mp4").write_bytes(b"x")
    (tmp_path / "outside" / "metadata.json").write_text(json.dumps(ok), encoding="utf-8")
    os.symlink(tmp_path / "outside", trials / "w_folder_link")
    link = make_trial(trials, "x_video_link", ok, video=None)
    os.symlink(tmp_path / "outside" / "video.mp4", link / "video.mp4")
    meta_link = make_trial(trials, "y_metadata_link", None)
    os.symlink(tmp_path / "outside" / "metadata.json", meta_link / "metadata.json")

    records, quarantined = scan(corpus)

    assert [r.id for r in records] == ["a_ok"]
    assert quarantined == [
        ("trials/b_no_video", "trial_no_video"),
        ("trials/b_only_pkl", "trial_no_video"),
        ("trials/c_no_metadata", "trial_metadata_missing"),
        ("trials/d_not_json", "trial_metadata_malformed"),
        ("trials/e_not_utf8", "trial_metadata_malformed"),
        ("trials/f_not_object", "trial_metadata_malformed"),
        ("trials/g_success_string", "trial_metadata_malformed"),
        ("trials/h_success_missing", "trial_metadata_malformed"),
        ("trials/i_instruction_int", "trial_metadata_malformed"),
        ("trials/j_no_instruction", "trial_no_instruction"),
        ("trials/k_steve1_no_instruction", "trial_no_instruction"),
        ("trials/l_true_without_time", "trial_invalid_success"),
        ("trials/m_negative_time", "trial_invalid_success"),
        ("trials/n_nan_time", "trial_invalid_success"),
        ("trials/o_disagree", "trial_invalid_success"),
        ("trials/p_false_with_time", "trial_invalid_success"),
        ("trials/q_frame_float", "trial_metadata_malformed"),
        ("trials/r_negative_frame", "trial_invalid_success"),
        ("trials/s_bad_fps", "trial_metadata_malformed"),
        ("trials/t_bad_len", "trial_metadata_malformed"),
        ("trials/u_frame_past_len", "trial_invalid_success"),
        ("trials/v_time_string", "trial_metadata_malformed"),
        ("trials/w_folder_link", "path_escapes_root"),
        ("trials/x_video_link", "path_escapes_root"),
        ("trials/y_metadata_link", "path_escapes_root"),
    ]
    records_again, quarantined_again = scan_trials(corpus / "trials", corpus)
    assert [q.source_id for q in quarantined_again][:2] == ["b_no_video", "b_only_pkl"]
    assert "more than one frame" in quarantined_again[14].detail


def test_trials_dir_must_exist_inside_root(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        scan_trials(corpus / "nope", corpus)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ValueError, match="not inside the corpus root"):
        scan_trials(tmp_path / "elsewhere", corpus)


def test_relative_trials_dir_is_taken_from_the_root(corpus: Path) -> None:
    make_trial(corpus / "trials", "t", {"instruction": "x", "success": False})
    records, _ = scan_trials(Path("trials"), corpus)
    assert [r.video_path for r in records] == ["trials/t/video.mp4"]


def test_folder_name_that_is_not_utf8(corpus: Path) -> None:
    from goalcraft.data.quarantine import quarantine_table

    raw = os.fsencode(corpus / "trials") + b"/bad\xff"
    try:
        os.mkdir(raw)
    except OSError:  # pragma: no cover - file systems that insist on UTF-8 names
        pytest.skip("file system refuses non-UTF-8 names")
    (Path(os.fsdecode(raw)) / "video.mp4").write_bytes(b"x")
    records, quarantined = scan_trials(corpus / "trials", corpus)
    assert records == []
    assert [(q.input, q.reason) for q in quarantined] == [("trials/bad\ufffd", "path_invalid")]
    assert quarantine_table(quarantined).num_rows == 1  # writable as UTF-8


def test_pathological_metadata_is_quarantined_not_a_crash(corpus: Path) -> None:
    trials = corpus / "trials"
    make_trial(trials, "a_deep", b"[" * 100_000 + b"]" * 100_000)
    make_trial(trials, "b_long_int", b'{"instruction": "x", "success": true, "success_frame": 1' + b"0" * 5000 + b"}")
    make_trial(trials, "c_huge_frame", {"instruction": "x", "success": True, "success_frame": 10**30, "fps": 20})
    make_trial(trials, "d_huge_fps", {"instruction": "x", "success": False, "fps": 10**400})
    make_trial(trials, "e_huge_len", {"text_prompt": "x"}, video="frames.mp4", len_txt="9" * 30)
    records, quarantined = scan(corpus)
    assert records == []
    assert quarantined == [
        ("trials/a_deep", "trial_metadata_malformed"),
        ("trials/b_long_int", "trial_metadata_malformed"),
        ("trials/c_huge_frame", "trial_invalid_success"),
        ("trials/d_huge_fps", "trial_metadata_malformed"),
        ("trials/e_huge_len", "trial_metadata_malformed"),
    ]
