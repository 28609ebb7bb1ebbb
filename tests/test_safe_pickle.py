"""The restricted unpickler: real pickles of arrays and containers load; a pickle that would run code
is refused before anything runs; broken bytes are a clear error."""

from __future__ import annotations

import collections
import os
import pickle
import subprocess

import numpy as np
import pytest

from goalcraft.data.quarantine import InputError
from goalcraft.data.safe_pickle import safe_load, safe_loads

OBJECTS = [
    np.arange(512, dtype=np.float32),
    np.arange(4, dtype=">f8").reshape(2, 2),
    np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    np.array(3.0),
    np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array(["x", 1, None], dtype=object),
    np.array([True, False]),
    np.float32(3.5),
    np.int64(7),
    {"harvest_1_log": {"instruction": "chop tree", "success_visual_embeds": [np.ones(512, np.float32)] * 2,
                       "n_success_trials": 2, "embed_dim": 512}},
    [np.zeros((1, 512), np.float16), (1, 2.5, "x", b"y", None, True, complex(1, 2))],
    {1, 2}, frozenset({3}), bytearray(b"ab"), collections.OrderedDict(a=1),
]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("index", range(len(OBJECTS)))
def test_real_pickles_of_arrays_and_containers_round_trip(protocol, index):
    data = pickle.dumps(OBJECTS[index], protocol=protocol)
    loaded, expected = safe_loads(data), pickle.loads(data)
    assert repr(loaded) == repr(expected)
    if isinstance(expected, np.ndarray):
        assert loaded.dtype == expected.dtype and loaded.flags.f_contiguous == expected.flags.f_contiguous


def test_numpys_own_pickles_and_numpy1_names_load(tmp_path):
    array = np.linspace(-1, 1, 512, dtype=np.float32)
    assert np.array_equal(safe_loads(array.dumps()), array)  # ndarray.dumps: numpy's own pickle
    # numpy 1.x wrote numpy.core.multiarray where numpy 2 writes numpy._core.multiarray
    old = pickle.dumps(array, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    assert np.array_equal(safe_loads(old), array)
    path = tmp_path / "visual_embeds.pkl"
    path.write_bytes(pickle.dumps(array))
    assert np.array_equal(safe_load(path), array)


class _Command:
    """Unpickling this runs ``function(*args)``: what a hostile pickle does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("make, refused", [
    (lambda f: _Command(os.system, f"touch {f}"), "posix.system"),
    (lambda f: _Command(eval, f"open({str(f)!r}, 'w').write('x')"), "builtins.eval"),
    (lambda f: _Command(exec, f"open({str(f)!r}, 'w').write('x')"), "builtins.exec"),
    (lambda f: {"embeds": [np.zeros(3), _Command(open, str(f), "w")]}, "io.open"),
    (lambda f: _Command(subprocess.call, ["touch", str(f)]), "subprocess.call"),
])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, make, refused):
    target = tmp_path / "pwned"
    data = pickle.dumps(make(target))
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        safe_load(path)
    assert not target.exists()
    assert info.value.reason == "pickle_refused"
    assert f"refused global {refused}" in info.value.detail and "evil.pkl" in info.value.detail
    pickle.loads(data)  # the real loader would have run it: the test pickle is really hostile
    assert target.exists()


def test_latin1_bytes_of_protocol_2_load_but_no_other_codec():
    assert safe_loads(pickle.dumps(b"\x00\xff", protocol=2)) == b"\x00\xff"
    # _codecs.encode("...", "rot13") is the same opcode shape with another codec: refused
    crafted = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x05\x00\x00\x00rot13q\x02\x86q\x03Rq\x04."
    with pytest.raises(InputError) as info:
        safe_loads(crafted)
    assert info.value.reason == "pickle_malformed" and "latin-1" in info.value.detail


@pytest.mark.parametrize("data, says", [
    (b"", "empty file"),
    (b"not a pickle at all", "not a loadable pickle"),
    (pickle.dumps(np.arange(100))[:60], "truncated"),
    (b"\x80\x05\x95garbage\x00\x00", "not a loadable pickle"),
    (b"\x80\x02X\x01\x00\x00\x00aP.", "not a loadable pickle"),  # a persistent id
])
def test_truncated_or_garbage_bytes_are_a_clear_error(data, says, tmp_path):
    with pytest.raises(InputError) as info:
        safe_loads(data, "x.pkl")
    assert info.value.reason == "pickle_malformed"
    assert says in info.value.detail and info.value.detail.startswith("x.pkl: ")
    with pytest.raises(InputError) as info:
        safe_load(tmp_path / "absent.pkl")
    assert info.value.reason == "pickle_malformed" and "cannot read" in info.value.detail
