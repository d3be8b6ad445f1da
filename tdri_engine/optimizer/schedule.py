"""When the next Diffusion-DPO update is due (after every N new decisive choices; paper: 40),
and what each choice trains.

A choice counts when it can train: left or right better. A pair is *new* until an update of
the project's adapter scope has used it. The two other choices are decided as follows, and an
update says how many of each it left out (its ``AdapterReady`` message and ``meta.json``):

* **Tie**: trains nothing. The DPO loss needs a winner; a tie's Bradley-Terry likelihood with
  label 0.5 is smallest when the two implicit rewards are equal, which is where a fresh adapter
  already is, so it would only pull towards the reference, which beta's KL term does anyway.
  Ties are kept and exported with label 0.5 (the public training script drops them too).
* **Both bad**: dropped, not turned into a negative against a fresh sample of the adapter. That
  sample would be a winner nobody judged, made by the same model that made the two rejected
  images, so it is as likely to be bad; training on it would teach "whatever the model makes
  now beats what the user rejected". Both-bad choices are kept as records but are no pairs
  and are left out of the export (which has no label for them).

**The prompt a pair trains with** (``pair_prompt``) is the prompt its two images were made from
(their image records), not the one current when the choice was recorded. When the two images
were made from different prompts (a choice across rounds), the winner's prompt conditions both:
DPO compares two images under ONE condition (the reward r(c, x) = beta log pi(x|c)/pi_ref(x|c)
holds up to a term log Z(c) that cancels only when winner and loser share c), and the winner's
prompt is the one under which the user's choice certainly holds: an image made for it was
preferred. A tie across prompts keeps the prompt recorded with the choice.
"""

from __future__ import annotations

from typing import Any

from ..records import Choice, PreferencePair
from .adapters import adapter_scope, list_versions, user_pair_key, user_used_pairs

DECISIVE = (Choice.LEFT.value, Choice.RIGHT.value)


def image_prompts(store: Any, pair: PreferencePair) -> tuple[str | None, str | None]:
    """The prompts the left and right images were made from (None where unknown)."""
    from ..records import ImageRecord

    recorded = (pair.train_meta or {}).get("prompts") or {}
    out = []
    for image_id in (pair.image_left, pair.image_right):
        record = store.get(ImageRecord, image_id) if image_id else None
        prompt = (record.prompt if record is not None else None) or recorded.get(image_id)
        out.append(prompt.strip() if isinstance(prompt, str) and prompt.strip() else None)
    return out[0], out[1]


def pair_prompt(store: Any, pair: PreferencePair) -> tuple[str, bool]:
    """``(prompt, differed)``: the prompt the pair trains and is exported with, and whether its
    two images were made from different prompts (see the module docstring for the rule)."""
    left, right = image_prompts(store, pair)
    fallback = (pair.prompt or "").strip()
    if left is None or right is None or left == right:
        return (left or right or fallback), False
    if pair.choice == Choice.LEFT.value:
        return left, True
    if pair.choice == Choice.RIGHT.value:
        return right, True
    return fallback or left, True


def left_out_choices(store: Any) -> tuple[int, int]:
    """(ties, both bad) recorded in the project: choices no update trains on."""
    pairs = store.all(PreferencePair)
    return (
        sum(p.choice == Choice.TIE.value for p in pairs),
        sum(p.choice == Choice.BOTH_BAD.value for p in pairs),
    )


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
