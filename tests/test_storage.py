import pytest

from goalcraft.storage import atomic_path, commit_directory, new_staging_dir, recover_directory


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "table.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in target.parent.iterdir()] == ["table.parquet"]


def test_commit_directory_replaces_whole_folder(tmp_path):
    final, staging = tmp_path / "clips" / "p0001", tmp_path / "clips" / ".staging"
    final.mkdir(parents=True)
    (final / "old.tar").write_text("old")
    staged = new_staging_dir(final, staging)
    (staged / "new.tar").write_text("new")
    commit_directory(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.tar"]
    assert not staged.exists()
    assert not list(final.parent.glob(".trash-*"))


def test_recover_restores_folder_lost_between_renames(tmp_path):
    # Simulate a kill after the old folder was moved aside but before the new one moved in.
    final, staging = tmp_path / "clips" / "p0001", tmp_path / "clips" / ".staging"
    trash = final.with_name(".trash-p0001-deadbeef")
    trash.mkdir(parents=True)
    (trash / "old.tar").write_text("old")
    stale = new_staging_dir(final, staging)
    (stale / "half.tar").write_text("half")
    recover_directory(final, staging)
    assert (final / "old.tar").read_text() == "old"
    assert not stale.exists()
    assert not trash.exists()
