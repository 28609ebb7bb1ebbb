"""Safe resolution of corpus-relative paths.

Every path that comes from an input file (a manifest's ``path`` / ``transcript`` field, a trial
folder, a file inside it) goes through :func:`resolve_inside` before it is opened, so a corpus can
never make the pipeline read outside its root: absolute paths, ``..`` that climbs out, and symlinks
(anywhere along the path) whose target lies outside the root are all rejected with the quarantine
reason ``path_escapes_root``. Empty strings, strings holding a NUL byte and strings that are not
valid Unicode (lone surrogates) are rejected with ``path_invalid``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from goalcraft.data.quarantine import InputError

__all__ = ["resolve_inside", "relative_to_root", "is_absolute_like", "join_relative"]


def is_absolute_like(rel: str) -> bool:
    """True for anything that names a location independent of the root.

    POSIX absolute (``/x``) and Windows absolute or drive-relative (``C:\\x``, ``C:x``,
    ``\\\\host\\share``, ``\\x``) paths all count: a manifest written on one system must not point
    at an absolute location when read on another.
    """
    if rel.startswith(("/", "\\")):
        return True
    if PurePosixPath(rel).is_absolute():
        return True
    win = PureWindowsPath(rel)
    return bool(win.drive) or win.is_absolute()


def resolve_inside(root: Path, rel: str) -> Path:
    """Resolve ``rel`` (relative to ``root``) and check that the result stays inside ``root``.

    ``..`` components are allowed as long as the fully resolved path (symlinks followed, see
    :meth:`pathlib.Path.resolve`) is still ``root`` itself or below it. The returned path is absolute
    and resolved; it need not exist.

    Raises :class:`InputError` with reason ``path_escapes_root`` (absolute path, ``..`` escape,
    symlink out of the root) or ``path_invalid`` (not a string, empty, holding a NUL byte, or not
    encodable as UTF-8).
    """
    if not isinstance(rel, str):
        raise InputError("path_invalid", f"path must be a string, got {type(rel).__name__}")
    if rel == "" or rel.strip() == "":
        raise InputError("path_invalid", "path is empty")
    if "\x00" in rel:
        raise InputError("path_invalid", f"path contains a NUL byte: {rel!r}")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. from a "\\ud800" JSON escape
        raise InputError("path_invalid", f"path is not valid Unicode: {rel!r}") from exc
    if is_absolute_like(rel):
        raise InputError("path_escapes_root", f"absolute path not allowed: {rel!r}")

    root_resolved = Path(root).resolve()
    try:
        candidate = (root_resolved / rel).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops and the like
        raise InputError("path_escapes_root", f"cannot resolve {rel!r}: {exc}") from exc

    if candidate != root_resolved and not candidate.is_relative_to(root_resolved):
        raise InputError(
            "path_escapes_root", f"{rel!r} resolves to {str(candidate)!r}, outside the corpus root"
        )
    return candidate


def relative_to_root(root: Path, resolved: Path) -> str:
    """The POSIX-style form of ``resolved`` relative to ``root`` (both resolved), e.g. ``videos/a.mp4``."""
    rel = Path(resolved).relative_to(Path(root).resolve())
    text = rel.as_posix()
    return "." if text in ("", ".") else text


def join_relative(rel: str, *names: str) -> str:
    """``rel/name/...`` for a corpus-relative ``rel`` as :func:`relative_to_root` gives it (``.``: the root)."""
    return "/".join(([] if rel == "." else [rel]) + list(names))
