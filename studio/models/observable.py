"""Observable properties: a value held by a Qt-side model, with a ``<name>_changed`` signal.

Widgets bind to the signal instead of polling; the signal fires only when the value changes.
The owning class declares the signal itself (Qt needs signals as class attributes)::

    class Model(QObject):
        saved_state_changed = Signal(object)
        saved_state = observable("saved_state", "saved" | "dirty" | "saving" | "failed")
"""

from __future__ import annotations

from typing import Any

_SIMPLE = (str, int, float, bool, tuple, frozenset, type(None))


def _same(old: Any, new: Any) -> bool:
    if old is new:
        return True
    # Value comparison only for plain values: comparing images or records field by field
    # on every assignment would cost more than the redraw it saves.
    if isinstance(old, _SIMPLE) and isinstance(new, _SIMPLE):
        return type(old) is type(new) and old == new
    return False


def observable(name: str, doc: str = "") -> property:
    """A property stored in ``self._<name>`` that emits ``self.<name>_changed(value)`` on change."""
    attr = "_" + name
    signal_name = name + "_changed"

    def getter(self: Any) -> Any:
        return getattr(self, attr)

    def setter(self: Any, value: Any) -> None:
        if _same(getattr(self, attr, _Missing), value):
            return
        setattr(self, attr, value)
        getattr(self, signal_name).emit(value)

    return property(getter, setter, doc=doc)


class _Missing:
    pass
