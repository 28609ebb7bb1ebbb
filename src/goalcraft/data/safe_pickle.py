"""Reading untrusted pickles: only numpy arrays, dtypes, numpy scalars and plain containers.

Unpickling an ordinary pickle can run any code (a ``__reduce__`` names a callable and its arguments,
and the loader calls it), so the pickles users hand us (STEVE-1 ``visual_embeds.pkl``, grouped
success visuals) are read with :class:`RestrictedUnpickler`: the only globals it resolves are the
ones numpy's own pickles of arrays, dtypes and scalars name, plus a few builtin containers. Any other
global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a class of some package) is refused
*before* anything is called, with a one-line error that names it.

What loads: ``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``str``, ``bytes``, ``bytearray``,
numbers, ``None``, ``collections.OrderedDict``, numpy ``ndarray`` (any dtype; object arrays only
hold what this loader itself rebuilt), ``dtype`` and numpy scalars, written with pickle protocols 2 to
5 (numpy 1.x pickles name ``numpy.core``, numpy 2.x ``numpy._core``: both are accepted and resolved
to the installed numpy). Protocol 2 writes ``bytes`` as ``_codecs.encode(text, "latin1")``; that call
is allowed for the latin-1 codec only.

Errors are :class:`~goalcraft.data.quarantine.InputError` with the reason

* ``pickle_refused``: the pickle names a global outside the allow-list (the detail names it); or
* ``pickle_malformed``: the bytes are not a complete pickle (truncated, garbage, an empty file, a
  persistent id, arguments numpy rejects).
"""

from __future__ import annotations

import codecs
import collections
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from goalcraft.data.quarantine import InputError

__all__ = ["ALLOWED_GLOBALS", "RestrictedUnpickler", "safe_load", "safe_loads"]


def _numpy_core(submodule: str) -> Any:
    """``numpy._core.<submodule>`` (numpy 2) or ``numpy.core.<submodule>`` (numpy 1)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{package}.{submodule}")
        except ImportError:
            continue
    raise ImportError(f"numpy has no core.{submodule} module")  # pragma: no cover - numpy is broken


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 text to bytes, nothing else."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed for latin-1 text, got {type(text).__name__} and {encoding!r}")
    return text.encode("latin-1")


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    numpy_names = {
        ("multiarray", "_reconstruct"): multiarray._reconstruct,
        ("multiarray", "scalar"): multiarray.scalar,
        ("numeric", "_frombuffer"): numeric._frombuffer,
    }
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for package in ("numpy.core", "numpy._core"):
        for (module, name), value in numpy_names.items():
            table[(f"{package}.{module}", name)] = value
    for name in ("set", "frozenset", "bytearray", "complex"):
        for module in ("builtins", "__builtin__"):
            table[(module, name)] = getattr(__import__("builtins"), name)
    return table


#: ``(module, name)`` → what the restricted loader gives for it. Everything else is refused.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise InputError(
                "pickle_refused",
                f"refused global {module}.{name}: only numpy arrays, dtypes, scalars and plain containers "
                "are loaded (unpickling it could run code)",
            ) from None


def safe_loads(data: bytes, where: str = "pickle") -> Any:
    """The object pickled in ``data``; :class:`InputError` when it is refused or malformed."""
    if not data:
        raise InputError("pickle_malformed", f"{where}: empty file, not a pickle")
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except InputError as exc:
        raise InputError(exc.reason, f"{where}: {exc.detail}") from None
    except (Exception, RecursionError) as exc:  # EOFError, UnpicklingError, ValueError from numpy, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError("pickle_malformed", f"{where}: not a loadable pickle ({type(exc).__name__}: {text[:200]})") \
            from None


def safe_load(path: Path, where: str | None = None) -> Any:
    """:func:`safe_loads` of a file; an unreadable file is ``pickle_malformed`` too."""
    shown = where or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError("pickle_malformed", f"{shown}: cannot read: {exc.strerror or exc}") from None
    return safe_loads(data, shown)

