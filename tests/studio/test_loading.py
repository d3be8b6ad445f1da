"""Loading heavy libraries in the engine thread: same results, without long GIL holds.

The speed itself is measured by tests/bench/bench_studio.py; these scenarios check that the
libraries and modules loaded this way behave exactly as when loaded plainly, that the
collector and the loaders are put back afterwards, and that the freeze spares later garbage.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio import loading

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dlopen path is Linux-only")


@pytest.fixture
def opened(monkeypatch) -> list[tuple[str, int]]:
    """Every library the block opened itself (name, flags), recorded on the way through."""
    seen: list[tuple[str, int]] = []
    real = loading._open_released

    def spy(name, mode):
        seen.append((str(name), mode))
        return real(name, mode)

    monkeypatch.setattr(loading, "_open_released", spy)
    return seen


def _unimported_extension() -> str:
    """A standard-library extension module this process has not loaded yet."""
    for name in ("_testbuffer", "_testimportmultiple", "xxlimited", "_testmultiphase", "audioop"):
        spec = importlib.util.find_spec(name)
        if (
            name not in sys.modules
            and spec is not None
            and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
        ):
            return name
    pytest.skip("no unloaded standard extension module to import")


@linux_only
def test_a_c_library_opened_in_the_block_works_and_was_opened_with_the_gil_released(opened):
    path = ctypes.util.find_library("m") or "libm.so.6"
    with loading.released_loading(freeze=False):
        libm = ctypes.CDLL(path)
    libm.cos.restype, libm.cos.argtypes = ctypes.c_double, [ctypes.c_double]
    assert libm.cos(0.0) == 1.0
    assert (path, ctypes.DEFAULT_MODE | loading._RTLD_NOW) in opened
    # a foreign function of a CDLL (not a PyDLL) drops the GIL for the call: that is the point
    assert not type(loading._dl.open)._flags_ & ctypes._FUNCFLAG_PYTHONAPI


@linux_only
def test_an_extension_module_imported_in_the_block_is_the_real_module(opened):
    name = _unimported_extension()
    with loading.released_loading(freeze=False):
        module = importlib.import_module(name)
    assert module.__spec__.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert (module.__spec__.origin, sys.getdlopenflags()) in opened
    assert sys.modules[name] is module


@linux_only
def test_a_missing_library_fails_with_the_usual_message():
    missing = "/nonexistent/libtdri-missing.so"
    with pytest.raises(OSError) as plain:
        ctypes.CDLL(missing)
    with loading.released_loading(freeze=False), pytest.raises(OSError) as inside:
        ctypes.CDLL(missing)
    assert str(inside.value) == str(plain.value)


def test_loaders_and_collector_are_put_back_even_when_an_import_fails():
    threshold = gc.get_threshold()
    create_module = importlib.machinery.ExtensionFileLoader.create_module
    dlopen = ctypes._dlopen
    with pytest.raises(ImportError), loading.released_loading(freeze=False):
        assert gc.get_threshold()[2] == loading._NO_FULL_COLLECTION  # no full collection inside
        importlib.import_module("tdri_no_such_module")
    assert gc.get_threshold() == threshold
    assert importlib.machinery.ExtensionFileLoader.create_module is create_module
    assert ctypes._dlopen is dlopen


def test_warm_up_imports_report_what_could_not_be_imported(monkeypatch):
    monkeypatch.setattr(loading, "_frozen_once", True)  # this test process stays unfrozen
    steps: list[tuple[int, str]] = []
    failed = loading.import_all(
        [("json", ("loads",)), ("tdri_no_such_module", ()), ("json", ("no_such_attribute",))],
        before_each=lambda i, name: steps.append((i, name)),
    )
    assert failed == ["tdri_no_such_module", "json"]
    assert steps == [(0, "json"), (1, "tdri_no_such_module"), (2, "json")]


def test_only_imports_are_frozen_and_garbage_before_or_after_is_still_collected():
    # in a fresh interpreter: a freeze is for the whole process
    script = textwrap.dedent(
        """
        import gc, json, weakref
        from studio import loading

        class Node:
            pass

        # a dropped model in a reference cycle, not yet collected when the warm-up starts
        dropped = Node()
        dropped.self = dropped
        dropped_ref = weakref.ref(dropped)
        gc.collect()  # it lived long enough to reach the oldest generation
        del dropped

        threshold = gc.get_threshold()
        assert loading.import_all([("email.mime.text", ("MIMEText",))]) == []
        assert dropped_ref() is None, "garbage from before the warm-up was frozen"
        frozen = gc.get_freeze_count()
        assert frozen > 0, frozen

        # nothing new to import: nothing more is frozen (a model loaded by now must not be)
        a, b = Node(), Node()
        a.other, b.other = b, a
        assert loading.import_all([("email.mime.text", ())]) == []
        assert gc.get_freeze_count() == frozen

        del a, b  # a cycle made after the freeze is found by the next full collection
        print(json.dumps({"collected": gc.collect(), "restored": gc.get_threshold() == threshold}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["collected"] >= 2 and result["restored"]
