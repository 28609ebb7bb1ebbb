from pathlib import Path

import pytest

from goalcraft.config import ConfigError, load_config


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
        ("[pathz]\n", "unknown section"),
        ("[clips]\nwindow = 3\n", "unknown key(s) in [clips]"),
        ('[clips]\noverlap = "sideways"\n', "invalid value in [clips]"),
        ("[partitions]\ncount = 0\n", "at least 1"),
        ("[clips\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(cfg)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
