"""Checkpoint helpers: safe reading, strict all-or-nothing loading, atomic model folders."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from goalcraft.models import checkpoints
from goalcraft.models.checkpoints import (
    CheckpointError,
    load_config_json,
    load_state_dict_file,
    save_model_dir,
    strict_load,
)


class Small(nn.Module):
    def __init__(self, hidden: int = 4):
        super().__init__()
        self.encoder = nn.Linear(3, hidden)
        self.head = nn.Linear(hidden, 2, bias=False)
        self.register_buffer("steps", torch.zeros(()))


@dataclass(frozen=True)
class SmallConfig:
    model_type = "small"  # plain class attribute, not a field
    hidden: int = 4
    shape: tuple[int, int] = (2, 3)
    name: str = "x"


class MakesMarker:
    """Unpickling this object would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _filled(seed: int = 0) -> Small:
    torch.manual_seed(seed)
    return Small()


# ----------------------------------------------------------------------------- reading


def test_reads_safetensors_and_torch_files(tmp_path):
    sd = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2, 3])}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(sd, tmp_path / "w.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    for loaded in (
        load_state_dict_file(tmp_path / "w.safetensors"),
        load_state_dict_file(tmp_path / "w.pt"),
        load_state_dict_file(tmp_path / "wrapped.pth", key="state_dict"),
    ):
        assert set(loaded) == {"a", "b"}
        assert torch.equal(loaded["a"], sd["a"]) and torch.equal(loaded["b"], sd["b"])
        assert loaded["a"].device.type == "cpu"


def test_wrapped_file_without_key_names_its_non_tensor_entries(tmp_path):
    torch.save({"state_dict": {"a": torch.ones(1)}, "epoch": 3}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match=r"not tensors: \[(epoch, state_dict|state_dict, epoch)\].*key="):
        load_state_dict_file(tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match="no entry 'weights'.*epoch, state_dict"):
        load_state_dict_file(tmp_path / "wrapped.pth", key="weights")


def test_unreadable_files_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_file(tmp_path / "absent.pt")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint suffix"):
        load_state_dict_file(tmp_path / "w.npz")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_state_dict_file(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_state_dict_file(tmp_path / "junk.safetensors")


def test_pickle_that_needs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": MakesMarker(marker)}, path)
    with pytest.raises(CheckpointError, match="needs code to load") as info:
        load_state_dict_file(path, key="state_dict")
    assert "system" in str(info.value)  # names the global it refused
    assert not marker.exists()


# ----------------------------------------------------------------------------- strict loading


def test_strict_load_copies_everything():
    src, dst = _filled(0), _filled(1)
    strict_load(dst, src.state_dict(), source="mem")
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda sd: sd.pop("head.weight"), r"missing keys \(1\): \[head\.weight\]"),
        (lambda sd: sd.update({"extra.weight": torch.ones(1)}), r"unexpected keys \(1\): \[extra\.weight\]"),
        (lambda sd: sd.update({"encoder.bias": torch.ones(5)}), r"shape mismatches \(1\): \[encoder\.bias: checkpoint \[5\] vs model \[4\]\]"),
        (lambda sd: sd.pop("steps"), r"missing keys \(1\): \[steps\]"),  # buffers count too
    ],
)
def test_strict_load_names_the_problem_and_loads_nothing(change, expected):
    src, dst = _filled(0), _filled(1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    sd = dict(src.state_dict())
    change(sd)
    with pytest.raises(CheckpointError, match=expected) as info:
        strict_load(dst, sd, source="some/file.pt")
    assert "some/file.pt" in str(info.value) and "nothing was loaded" in str(info.value)
    for key, value in dst.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} was modified by a failed load"


def test_strict_load_truncates_long_lists_and_prefixes_names():
    sd = dict(_filled().state_dict())
    sd.update({f"junk.{i}": torch.zeros(1) for i in range(30)})
    with pytest.raises(CheckpointError) as info:
        strict_load(Small(), sd, source="f", key_prefix="model.")
    message = str(info.value)
    assert "unexpected keys (30)" in message and "... and 10 more" in message
    assert "model.junk.0" in message and "model.junk.29" not in message


# ----------------------------------------------------------------------------- model folders


def test_save_model_dir_round_trip(tmp_path):
    model = _filled(0)
    out = save_model_dir(model, SmallConfig(hidden=4, shape=(5, 6)), tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    data = json.loads((out / "config.json").read_text())
    assert data == {"model_type": "small", "hidden": 4, "shape": [5, 6], "name": "x"}
    config = load_config_json(out, SmallConfig)
    assert config == SmallConfig(hidden=4, shape=(5, 6)) and isinstance(config.shape, tuple)
    fresh = _filled(1)
    strict_load(fresh, load_state_dict_file(out / "model.safetensors"), source=str(out))
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_save_model_dir_replaces_whole_folder_and_leaves_no_temp(tmp_path):
    save_model_dir(_filled(0), SmallConfig(name="old"), tmp_path / "m")
    (tmp_path / "m" / "stale.txt").write_text("from the old folder")
    save_model_dir(_filled(1), SmallConfig(name="new"), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert not (tmp_path / "m" / "stale.txt").exists()
    assert load_config_json(tmp_path / "m", SmallConfig).name == "new"


def test_failed_save_keeps_the_old_folder(tmp_path, monkeypatch):
    save_model_dir(_filled(0), SmallConfig(name="old"), tmp_path / "m")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model_dir(_filled(1), SmallConfig(name="new"), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert load_config_json(tmp_path / "m", SmallConfig).name == "old"


def test_tied_weights_are_saved_under_every_name(tmp_path):
    model = _filled(0)
    model.tied = nn.Linear(3, 4)
    model.tied.weight = model.encoder.weight  # shared parameter: two state-dict keys, one tensor
    save_model_dir(model, SmallConfig(), tmp_path / "m")
    sd = load_state_dict_file(tmp_path / "m" / "model.safetensors")
    assert torch.equal(sd["tied.weight"], sd["encoder.weight"])
    target = _filled(1)
    target.tied = nn.Linear(3, 4)
    target.tied.weight = target.encoder.weight
    strict_load(target, sd, source="m")
    assert torch.equal(target.encoder.weight, model.encoder.weight)


def test_load_config_json_rejects_wrong_content(tmp_path):
    save_model_dir(_filled(), SmallConfig(), tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    data = json.loads(path.read_text())

    path.write_text(json.dumps({**data, "model_type": "other"}))
    with pytest.raises(CheckpointError, match="model_type is 'other', expected 'small'"):
        load_config_json(tmp_path / "m", SmallConfig)
    path.write_text(json.dumps({**data, "depth": 3}))
    with pytest.raises(CheckpointError, match=r"unknown config fields.*\[depth\]"):
        load_config_json(tmp_path / "m", SmallConfig)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_config_json(tmp_path, SmallConfig)


def test_key_lists_are_truncated():
    assert checkpoints.format_key_list(["a", "b"]) == "[a, b]"
    assert checkpoints.format_key_list(map(str, range(25)), limit=3) == "[0, 1, 2, ... and 22 more]"
