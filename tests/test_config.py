from pathlib import Path

import pytest

from goalcraft.config import ConfigError, config_from_dict, load_config


def test_defaults_put_demo_corpus_under_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("GOALCRAFT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert Path(config.paths.data_root) == tmp_path / "goalcraft_data"
    assert config.paths.corpus_path == tmp_path / "goalcraft_data" / "demo_corpus"
    assert config.partitions.count == 4
    assert config.clips.decoder == "auto"
    assert config.source == "defaults"


def test_env_var_file_relative_paths_resolve_against_file(tmp_path, monkeypatch):
    cfg = tmp_path / "conf" / "goalcraft.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        '[paths]\ndata_root = "out"\ncorpus_root = "../corpus"\nmanifests = "m.jsonl"\n'
        "[partitions]\ncount = 256\n[clips]\noverlap = \"merge\"\nmin_window_s = 1.5\n"
    )
    monkeypatch.setenv("GOALCRAFT_CONFIG", str(cfg))
    config = load_config()
    assert Path(config.paths.data_root) == tmp_path / "conf" / "out"
    assert config.paths.corpus_path == tmp_path / "corpus"
    assert config.paths.manifests == ["m.jsonl"]
    assert config.partitions.count == 256
    assert config.clips.overlap == "merge" and config.clips.min_window_s == 1.5
    assert config.source == str(cfg)


def test_cwd_goalcraft_toml_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("GOALCRAFT_CONFIG", raising=False)
    (tmp_path / "goalcraft.toml").write_text("[partitions]\ncount = 7\n")
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.partitions.count == 7
    assert Path(config.paths.data_root) == tmp_path / "goalcraft_data"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[pathz]\n", "unknown section(s) in"),
        ("[clips]\nwindow = 3\n", "invalid [clips] in {cfg}: unknown key window"),
        ('[clips]\noverlap = "sideways"\n', "invalid [clips] in {cfg}: overlap: Input should be 'trim', 'merge' or 'keep'"),
        ("[clips]\nmin_window_s = 5.0\nmax_window_s = 2.0\n", "max_window_s (2.0) must be >= min_window_s (5.0)"),
        ("[partitions]\ncount = 0\n", "invalid [partitions] in {cfg}: count: Input should be greater than 0"),
        ("[predictor]\naligner = \"transformer\"\n", "aligner: Input should be 'mlp' or 'attention'"),
        ("[predictor.stage1]\nepochs = 0\n", "invalid [predictor] in {cfg}: stage1.epochs: Input should be greater than 0"),
        ('[predictor.stage2]\nprecision = "fp16"\n', "stage2.precision: Input should be 'fp32' or 'bf16'"),
        ("[predictor.stage1]\nlearning_rate = 1.0\n", "unknown key stage1.learning_rate"),
        ("[splits]\nval_fraction = 0.6\ntest_fraction = 0.5\n", "val_fraction + test_fraction must be below 1"),
        ('[gpu]\ntarget = "slurm"\n', "target: Input should be 'inprocess', 'k8s' or 'ray'"),
        ("[success]\nsteve1_prompts = false\n", "section(s) [success] renamed to [goals]"),
        ("[clips\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert message.format(cfg=cfg) in str(info.value)
    assert "\n" not in str(info.value).strip()  # one line


def test_sections_are_the_typed_settings_the_code_takes(tmp_path):
    from goalcraft.config import PredictorSettings, Stage1Settings, Stage2Settings

    cfg = tmp_path / "goalcraft.toml"
    cfg.write_text('[predictor]\naligner = "attention"\n[predictor.stage1]\nepochs = 2\nlora_r = 4\n'
                   '[predictor.stage2]\nlr = 0.01\n[goal_space]\ndevice = "cpu"\n')
    config = load_config(cfg)
    assert isinstance(config.predictor, PredictorSettings)
    assert config.predictor.stage1 == Stage1Settings(epochs=2, lora_r=4)
    assert config.predictor.stage2 == Stage2Settings(lr=0.01)
    # Shared defaults are declared once (TrainRunSettings) and reach both stages.
    assert config.predictor.stage1.precision == config.predictor.stage2.precision == "fp32"
    # An explicit "cpu" is kept as the user's choice; leaving it out means the preset's device.
    assert config.goal_space.device == "cpu" and load_config(tmp_path / "goalcraft.toml").goal_space.device == "cpu"
    assert config_from_dict({}, tmp_path).goal_space.device is None


def test_example_file_loads_and_shows_every_section():
    from goalcraft.config import SECTIONS

    example = Path(__file__).parents[1] / "goalcraft.example.toml"
    config = load_config(example)
    text = example.read_text()
    assert [s for s in SECTIONS if f"[{s}]" not in text] == []
    assert config.partitions.count == 256 and config.predictor.stage1.epochs > 0


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_real_model_settings(tmp_path):
    import typing

    from goalcraft.config import MineCLIPConfigName
    from goalcraft.models.mineclip import MINECLIP_CONFIGS

    assert set(typing.get_args(MineCLIPConfigName)) == set(MINECLIP_CONFIGS)
    config = config_from_dict({"goal_space": {"mineclip_checkpoint": "w/attn.pth"},
                               "prior": {"checkpoint": "/abs/steve1_prior.pt"}}, tmp_path)
    # Relative to the settings file's folder, like data_root.
    assert config.goal_space.mineclip_checkpoint == str(tmp_path / "w" / "attn.pth")
    assert config.prior.checkpoint == "/abs/steve1_prior.pt" and config.goal_space.mineclip_config == "vitb16"
    for raw, message in [({"prior": {"checkpoint": "p.pt"}}, r"\[prior\] checkpoint .* set \[goal_space\] mineclip"),
                         ({"evaluation": {"success_visuals": ["v.pkl"]}}, r"success_visuals .* mineclip_checkpoint"),
                         ({"goal_space": {"mineclip_config": "vitl14"}}, r"invalid \[goal_space\].*mineclip_config")]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(raw, tmp_path)


def test_the_study_preset_loads_under_a_users_file(tmp_path):
    study = load_config(None, preset="study")
    # what docs/results.md measured the study with
    assert (study.demo.videos, study.demo.transcripts, study.goals.transcript_lag_s) == (8, "json", 0.6)
    assert (study.demo.trials, study.demo.trial_pace_steps, study.goals.exclusive_s) == (960, 24, 1.6)
    assert (study.goal_space.batch_size, study.goal_space.train_on, study.splits.test_fraction) == (64, "goal_clips", 0.4)
    assert (study.evaluation.replicates, study.demo.video_agent) == (3, "varied")
    assert (study.policy.dagger_rounds, study.policy.dagger_warm_epochs, study.policy.dagger_episodes) == (3, 2, 680)
    assert (study.predictor_rl.explore, load_config(None).predictor_rl.explore) == ("goals", "full")  # seventh
    assert load_config(None).policy.dagger_rounds == 0  # the demo's policy: behaviour cloning alone
    mine = tmp_path / "goalcraft.toml"
    mine.write_text("[goals]\ntranscript_lag_s = 0.25\n")
    layered = load_config(mine, preset="study")
    assert layered.goals.transcript_lag_s == 0.25 and layered.demo.videos == 8 and layered.demo.trials == 960
    assert load_config(mine).demo.videos == 6  # no preset: the demo's defaults


def test_reinforce_pairs_need_an_even_episode_count(tmp_path):
    from goalcraft.config import PredictorRLSettings

    assert PredictorRLSettings(episodes_per_task=6).episodes_per_task == 6
    with pytest.raises(ValueError, match="even"):
        PredictorRLSettings(episodes_per_task=5)
