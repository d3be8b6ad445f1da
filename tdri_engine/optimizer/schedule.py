"""When the next Diffusion-DPO update is due: after every N new decisive choices (paper: 40).

A choice counts when it can train: left or right better. Ties are kept and exported (label 0.5)
but carry no preference for the DPO loss, and "both bad" is no pair at all, so neither brings
the update nearer. A pair is *new* until an update of the project's adapter scope has used it.
"""

from __future__ import annotations

from typing import Any

from ..records import Choice, PreferencePair
from .adapters import adapter_scope, list_versions, user_pair_key, user_used_pairs

DECISIVE = (Choice.LEFT.value, Choice.RIGHT.value)


def decisive_pairs(store: Any) -> list[PreferencePair]:
    return [p for p in store.all(PreferencePair) if p.choice in DECISIVE]


def pending_pairs(store: Any, scope: str | None = None) -> list[PreferencePair]:
    """Decisive pairs no update of this scope has trained on yet (the schedule's count)."""
    sc = scope or adapter_scope(store)
    if sc == "user":
        used = user_used_pairs(accepted_only=False)
        return [p for p in decisive_pairs(store) if user_pair_key(store, p) not in used]
    return [p for p in decisive_pairs(store) if all(k.startswith("user:") for k in p.used_in)]


def trainable_pairs(store: Any, scope: str | None = None) -> list[PreferencePair]:
    """Decisive pairs not yet in an *accepted* version of this scope.

    Pairs of a suspect or rolled-back version count again: the next update retrains on them.
    """
    sc = scope or adapter_scope(store)
    if sc == "user":
        used = user_used_pairs(accepted_only=True)
        return [p for p in decisive_pairs(store) if user_pair_key(store, p) not in used]
    accepted = {v.id for v in list_versions(store, "project") if v.status == "ok"}
    return [p for p in decisive_pairs(store) if not accepted.intersection(p.used_in)]


def choices_until_update(store: Any, every: int) -> int:
    """How many more decisive choices until the next update (0: due now)."""
    if every < 1:
        raise ValueError("every must be >= 1")
    return max(0, every - len(pending_pairs(store)))


def should_update(store: Any, every: int) -> bool:
    return choices_until_update(store, every) == 0
