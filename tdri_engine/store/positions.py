"""Which side each image of a pair task is shown on: a random order per task, against position bias.

Annotators favour one side (usually the left) when two images are close; the best labelling
tools show the pair in a random order per task and map the answer back. A pair task keeps its
images in its own order (``Task.images``: image 0, image 1) and records the order they are
shown in as ``Task.details["shown_order"]``: ``[0, 1]`` (image 0 on the left) or ``[1, 0]``
(image 0 on the right). Every stored answer (``Annotation.choice``, ``PreferencePair``) refers
to the task's own order, so ``label_0`` of an export means "image 0 won" whatever side it was
shown on.

The orders of one import are drawn balanced (as many swapped as not, the odd one by a coin,
then shuffled) from a seeded generator: even three tasks are not all shown the same way. A task
without a recorded order (made before this existed, or by other code) gets one drawn from its
id, so it is stable across openings; the studio records it with the next save.
"""

from __future__ import annotations

import random
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..records import Task

SHOWN_ORDER = "shown_order"
STRAIGHT = [0, 1]
SWAPPED = [1, 0]


def balanced_orders(n: int, seed: int | None = None) -> list[list[int]]:
    """``n`` shown orders for the pair tasks of one import: half swapped, shuffled by ``seed``."""
    rng = random.Random(secrets.randbits(64) if seed is None else seed)
    orders = [list(SWAPPED) if i % 2 else list(STRAIGHT) for i in range(n)]
    if n % 2 and rng.random() < 0.5:
        orders[-1] = list(SWAPPED)
    rng.shuffle(orders)
    return orders


def drawn_from_id(task_id: str) -> list[int]:
    """The order of a task that has none recorded: a coin seeded by the task's id."""
    return list(SWAPPED) if random.Random(f"tdri-shown-order:{task_id}").random() < 0.5 else list(STRAIGHT)


def shown_order(task: Task) -> list[int]:
    """Indices into ``task.images`` from left to right as the task is shown."""
    n = len(task.images)
    if n != 2:
        return list(range(n))
    stored = task.details.get(SHOWN_ORDER) if isinstance(task.details, dict) else None
    if stored in (STRAIGHT, SWAPPED):
        return list(stored)
    return drawn_from_id(task.id)


def with_shown_order(task: Task) -> Task:
    """``task`` with its shown order recorded in its details (unchanged when it has one)."""
    if len(task.images) != 2:
        return task
    order = shown_order(task)
    if isinstance(task.details, dict) and task.details.get(SHOWN_ORDER) == order:
        return task
    details = dict(task.details) if isinstance(task.details, dict) else {}
    return task.replace(details={**details, SHOWN_ORDER: order})


def map_choice(choice: str | None, order: list[int]) -> str | None:
    """A choice as shown <-> in the task's own order (the same swap both ways).

    "left"/"right" swap when the pair is shown swapped; "tie", "both_bad" and None stay.
    """
    if order == SWAPPED and choice in ("left", "right"):
        return "right" if choice == "left" else "left"
    return choice
