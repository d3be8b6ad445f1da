"""Heavy imports in the engine thread without freezing the GUI thread.

Python code hands the GIL to the other thread every few milliseconds, but a single C call
keeps it until it returns. Measured while the studio imports torch, transformers and
diffusers on a shared 2-core machine (``tests/bench/bench_studio.py`` reports the stalls):

- ``_imp.create_dynamic`` for ``torch._C`` (the dynamic loader mapping and relocating
  libtorch_cpu and friends, running their static constructors): 400-600 ms in one call;
- ``_ctypes.dlopen`` of the CUDA libraries torch preloads: 150-320 ms;
- full (generation 2) collections of the cyclic garbage collector, triggered every time the
  heap grows by a quarter while thousands of modules load: 40-470 ms each, about ten of them,
  longer as the heap grows.

:func:`released_loading` removes all three: the shared libraries are opened first by
``dlopen`` called through ctypes, which releases the GIL (CPython's own second ``dlopen`` of the
same file with the same flags then only counts a reference), and full collections are held
off while the modules load (the young generations still run, so short-lived garbage is still
freed: disabling the collector outright kept about 200,000 dead objects alive). At the end the
survivors, the loaded modules, move to the collector's permanent generation (``gc.freeze``),
so that no later full collection walks them again: one would take 250-320 ms.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_RTLD_NOW = getattr(os, "RTLD_NOW", 2)


class _Dl:
    """``dlopen``/``dlclose`` of the C library, called as foreign functions (GIL released)."""

    def __init__(self) -> None:
        import ctypes  # here, not at the top: the window shows before anything is loaded

        lib = ctypes.CDLL(None)
        self.open = lib.dlopen
        self.open.restype = ctypes.c_void_p
        self.open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.close = lib.dlclose
        self.close.restype = ctypes.c_int
        self.close.argtypes = [ctypes.c_void_p]
        self.error = lib.dlerror
        self.error.restype = ctypes.c_char_p
        self.error.argtypes = []


_dl: _Dl | None = None
_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] = {}
_frozen_once = False
# a generation-2 threshold no import reaches: full collections wait for the block to end
_NO_FULL_COLLECTION = 1 << 30


def _dl_functions() -> _Dl | None:
    global _dl
    if _dl is None and sys.platform.startswith("linux"):
        try:
            _dl = _Dl()
        except (OSError, AttributeError):  # no dlopen to call: load the ordinary way
            log.debug("dlopen not callable through ctypes", exc_info=True)
    return _dl


def _open_released(name: Any, mode: int) -> int | None:
    """dlopen ``name`` with the GIL released; the handle, or None (then CPython reports why)."""
    dl = _dl
    if dl is None or not isinstance(name, (str, bytes, os.PathLike)):
        return None
    handle = dl.open(os.fsencode(name), mode)
    if not handle:
        dl.error()  # clear it: CPython's own call reports the failure in its words
        return None
    return handle


def _close(handle: int | None) -> None:
    # CPython's call holds its own reference now; drop ours so the counts stay as they were
    if handle and _dl is not None:
        _dl.close(handle)


def _install() -> None:
    import ctypes as ctypes_module

    loader = importlib.machinery.ExtensionFileLoader
    create_module = loader.create_module
    ctypes_dlopen = ctypes_module._dlopen

    def create_module_released(self: Any, spec: Any) -> Any:
        # the same flags CPython's importer passes to dlopen
        handle = _open_released(spec.origin, sys.getdlopenflags())
        try:
            return create_module(self, spec)
        finally:
            _close(handle)

    def dlopen_released(name: Any, mode: int = _RTLD_NOW | getattr(os, "RTLD_LOCAL", 0)) -> Any:
        handle = _open_released(name, mode | _RTLD_NOW)  # _ctypes.dlopen adds RTLD_NOW too
        try:
            return ctypes_dlopen(name, mode)
        finally:
            _close(handle)

    _saved.update(create_module=create_module, ctypes_dlopen=ctypes_dlopen)
    loader.create_module = create_module_released  # type: ignore[method-assign]
    ctypes_module._dlopen = dlopen_released  # type: ignore[attr-defined]


def _uninstall() -> None:
    import ctypes as ctypes_module

    importlib.machinery.ExtensionFileLoader.create_module = _saved.pop("create_module")  # type: ignore[method-assign]
    ctypes_module._dlopen = _saved.pop("ctypes_dlopen")  # type: ignore[attr-defined]


@contextmanager
def released_loading(freeze: bool = True) -> Iterator[None]:
    """Load modules inside this block without long GIL holds (see the module's text).

    Shared libraries opened while it is active are opened with the GIL released, and no full
    garbage collection starts. With ``freeze`` (the first time only) the objects alive at the
    end move to the collector's permanent generation: meant for imports, whose modules,
    classes and functions live as long as the process. Do not wrap model loading in it with
    ``freeze``: a model in a reference cycle would then never be freed.
    """
    global _depth, _frozen_once
    with _lock:
        if _depth == 0:
            if _dl_functions() is not None:
                _install()
            _saved["threshold"] = gc.get_threshold()
            young, middle = _saved["threshold"][:2]
            gc.set_threshold(young, middle, _NO_FULL_COLLECTION)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.collect(1)  # the young generations only: milliseconds
                if freeze and not _frozen_once:
                    gc.freeze()  # O(1): the lists are spliced, nothing is walked
                    _frozen_once = True
                gc.set_threshold(*_saved.pop("threshold"))
                if "create_module" in _saved:
                    _uninstall()


def import_all(
    names: Sequence[tuple[str, tuple[str, ...]]],
    before_each: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Import ``(module, attributes)`` pairs inside :func:`released_loading`.

    The attributes are read too: transformers and diffusers import their classes lazily, on
    first access. The imported objects are frozen only if this call imported something (a
    second project's warm-up must not freeze the first project's models). Returns the names
    that could not be imported: a missing optional package is the round's business to report.
    """
    fresh = any(name not in sys.modules for name, _ in names)
    if fresh and not _frozen_once:
        # Only imports may be frozen: garbage from before (a first run builds the demo models
        # here) would be kept for good. Before torch is imported the heap is small and this
        # takes milliseconds; after a demo build it is one long pause, once per machine.
        gc.collect()
    failed: list[str] = []
    with released_loading(freeze=fresh):
        for i, (name, attrs) in enumerate(names):
            if before_each is not None:
                before_each(i, name)
            try:
                module = importlib.import_module(name)
                for attr in attrs:
                    getattr(module, attr)
            except (ImportError, AttributeError, RuntimeError) as exc:
                log.warning("warm-up import of %s failed: %s", name, exc)
                failed.append(name)
    return failed
