"""The order a pair task is shown in: balanced per import, recorded, stable for old tasks."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tdri_engine.records import Task
from tdri_engine.store import create_project, open_project
from tdri_engine.store.positions import (
    SHOWN_ORDER,
    balanced_orders,
    map_choice,
    shown_order,
    with_shown_order,
)


def test_every_seed_gives_a_balanced_order_that_still_varies_between_seeds():
    seen = set()
    for seed in range(10):
        for n in (2, 3, 4, 7):
            orders = balanced_orders(n, seed)
            swapped = sum(o == [1, 0] for o in orders)
            assert n // 2 <= swapped <= n - n // 2, (seed, n, orders)  # never all on one side
            assert all(o in ([0, 1], [1, 0]) for o in orders)
        seen.add(tuple(map(tuple, balanced_orders(6, seed))))
    assert len(seen) >= 5  # shuffled: not one fixed pattern


def test_a_choice_is_mapped_both_ways_and_ties_stay():
    for choice in ("left", "right", "tie", "both_bad", None):
        assert map_choice(map_choice(choice, [1, 0]), [1, 0]) == choice
        assert map_choice(choice, [0, 1]) == choice
    assert map_choice("left", [1, 0]) == "right"
    assert map_choice("tie", [1, 0]) == "tie"


def test_import_records_the_order_and_a_task_without_one_still_opens_with_a_stable_order(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    store = create_project(tmp_path / "projects", "Positions")
    result = store.import_images(folder, pair=True, order_seed=3)
    pairs = [t for t in result.tasks if len(t.images) == 2]
    assert [len(t.images) for t in result.tasks] == [2, 2, 1]
    assert sorted(t.details[SHOWN_ORDER] for t in pairs) == [[0, 1], [1, 0]]
    assert SHOWN_ORDER not in result.tasks[2].details  # a single image has no sides

    # a task made before orders were recorded (or by other code): drawn from its id
    old = Task(name="old", images=[result.images[0].id, result.images[1].id])
    store.put(old)
    path = store.path
    store.close()
    orders = set()
    for _ in range(2):
        again = open_project(path)
        loaded = again.get(Task, old.id)
        assert SHOWN_ORDER not in loaded.details
        orders.add(tuple(shown_order(loaded)))
        again.close()
    assert len(orders) == 1  # the same every time it opens
    recorded = with_shown_order(loaded)
    assert recorded.details[SHOWN_ORDER] == list(orders.pop())
    # over many ids both orders occur
    assert {tuple(shown_order(Task(images=["a", "b"]))) for _ in range(64)} == {(0, 1), (1, 0)}
