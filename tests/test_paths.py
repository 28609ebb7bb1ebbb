from __future__ import annotations

import os
from pathlib import Path

import pytest

from goalcraft.data.paths import relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "a.mp4").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.mp4").write_bytes(b"s")
    return root


def reason(root: Path, rel: str) -> str:
    with pytest.raises(InputError) as info:
        resolve_inside(root, rel)
    return info.value.reason


def test_plain_relative_path_resolves_inside(corpus: Path) -> None:
    assert resolve_inside(corpus, "videos/a.mp4") == corpus.resolve() / "videos" / "a.mp4"


def test_missing_file_is_fine(corpus: Path) -> None:
    assert resolve_inside(corpus, "videos/nope.mp4") == corpus.resolve() / "videos" / "nope.mp4"


def test_dotdot_that_stays_inside_is_allowed(corpus: Path) -> None:
    assert resolve_inside(corpus, "videos/../videos/./a.mp4") == corpus.resolve() / "videos" / "a.mp4"
    assert resolve_inside(corpus, ".") == corpus.resolve()


@pytest.mark.parametrize("rel", ["../outside/secret.mp4", "videos/../../outside/secret.mp4", ".."])
def test_dotdot_escape_is_rejected(corpus: Path, rel: str) -> None:
    assert reason(corpus, rel) == "path_escapes_root"


@pytest.mark.parametrize(
    "rel", ["/etc/passwd", "//server/share/x", "C:\\videos\\a.mp4", "C:a.mp4", "\\\\host\\share\\a", "\\a"]
)
def test_absolute_paths_are_rejected(corpus: Path, rel: str) -> None:
    assert reason(corpus, rel) == "path_escapes_root"


def test_absolute_path_inside_root_is_still_rejected(corpus: Path) -> None:
    # Manifests must be relocatable: even an absolute path that happens to be inside is refused.
    assert reason(corpus, str(corpus.resolve() / "videos" / "a.mp4")) == "path_escapes_root"


def test_symlink_file_out_of_root_is_rejected(corpus: Path) -> None:
    os.symlink(corpus.parent / "outside" / "secret.mp4", corpus / "videos" / "link.mp4")
    assert reason(corpus, "videos/link.mp4") == "path_escapes_root"


def test_symlink_dir_out_of_root_is_rejected(corpus: Path) -> None:
    os.symlink(corpus.parent / "outside", corpus / "elsewhere")
    assert reason(corpus, "elsewhere/secret.mp4") == "path_escapes_root"
    assert reason(corpus, "elsewhere/not_there.mp4") == "path_escapes_root"


def test_symlink_inside_root_resolves_to_target(corpus: Path) -> None:
    os.symlink(corpus / "videos" / "a.mp4", corpus / "videos" / "alias.mp4")
    resolved = resolve_inside(corpus, "videos/alias.mp4")
    assert resolved == corpus.resolve() / "videos" / "a.mp4"
    assert relative_to_root(corpus, resolved) == "videos/a.mp4"


def test_root_given_through_a_symlink(tmp_path: Path, corpus: Path) -> None:
    os.symlink(corpus, tmp_path / "root_link")
    assert resolve_inside(tmp_path / "root_link", "videos/a.mp4") == corpus.resolve() / "videos" / "a.mp4"


def test_symlink_loop_is_rejected(corpus: Path) -> None:
    os.symlink(corpus / "loop_b", corpus / "loop_a")
    os.symlink(corpus / "loop_a", corpus / "loop_b")
    assert reason(corpus, "loop_a/x") == "path_escapes_root"


@pytest.mark.parametrize("rel", ["", "   ", "videos/a\x00.mp4", "videos/\ud800.mp4"])
def test_invalid_paths(corpus: Path, rel: str) -> None:
    assert reason(corpus, rel) == "path_invalid"


def test_non_string_is_invalid(corpus: Path) -> None:
    assert reason(corpus, 3) == "path_invalid"  # type: ignore[arg-type]


def test_relative_to_root(corpus: Path) -> None:
    assert relative_to_root(corpus, corpus.resolve() / "videos" / "a.mp4") == "videos/a.mp4"
    assert relative_to_root(corpus, corpus.resolve()) == "."
