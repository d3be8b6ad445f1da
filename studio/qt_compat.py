"""Work around a reference-counting bug of PySide6 6.12.0 on CPython 3.10/3.11.

In PySide6 6.12.0, ``SignalInstance.emit()`` returns ``True`` without taking a reference,
and an invalid ``QVariant`` converts to ``None`` the same way (``QObject.property("x")``,
``QListWidgetItem.data(role)`` without data, ``QComboBox.currentData()`` of an item without
data). Each call takes one reference away from the ``True`` / ``None`` singletons; after a few
thousand calls the interpreter frees them and aborts ("Fatal Python error: bool_dealloc" /
"none_dealloc"). CPython 3.12 made these singletons immortal, which hides the bug there.

:func:`protect_singletons` probes for the bug and, where present, gives ``None``, ``True`` and
``False`` a reference count no program can use up: exactly what 3.12 does for them. It
changes nothing on a fixed PySide6 or on 3.12+. The real fix is a PySide6 without the bug
(pin ``PySide6-Essentials != 6.12.0``).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_PAD = 1 << 40  # far more references than any process can drop
_done = False


def _probe() -> tuple[int, int]:
    """(references to True lost by 16 emits, references to None lost by 16 property reads)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    p = _Probe()
    before = sys.getrefcount(True)
    for _ in range(16):
        p.ping.emit()
    lost_true = before - sys.getrefcount(True)
    before = sys.getrefcount(None)
    for _ in range(16):
        p.property("tdri_probe_missing")
    lost_none = before - sys.getrefcount(None)
    # repay what the probe itself took
    _pad(True, max(0, lost_true))
    _pad(False, 0)
    _pad(None, max(0, lost_none))
    return lost_true, lost_none


def _pad(obj: object, n: int) -> None:
    if n:
        # ob_refcnt is the first field of every CPython object
        ctypes.c_ssize_t.from_address(id(obj)).value += n


def protect_singletons() -> bool:
    """Apply the workaround when this PySide6 needs it; True when it was applied."""
    global _done
    if _done:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    lost_true, lost_none = _probe()
    if lost_true <= 0 and lost_none <= 0:
        return False
    import PySide6

    log.info(
        "PySide6 %s drops references to True/None (%d/%d per 16 calls); padding their counts",
        PySide6.__version__,
        lost_true,
        lost_none,
    )
    for obj in (None, True, False):
        _pad(obj, _PAD)
    _done = True
    return True
