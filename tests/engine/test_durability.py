"""Pull the plug: a process saving annotations is SIGKILLed at random moments, again and again.

After every kill the project must open without any repair, and hold every save whose
``put()`` had returned (the child prints "ok" only then), with the right content; the one
save in flight at the kill is either wholly there or wholly absent. The same project is
reused across kills, with compaction every few saves, so kills also land mid-compaction,
mid-rotation of the journal and during opening.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tdri_engine.records import Annotation, Task
from tdri_engine.store import create_project, open_project

KILLS = 50
COMPACT_EVERY = 5

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from tdri_engine.records import Annotation, Task
    from tdri_engine.store import open_project

    path, run, compact_every = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    store = open_project(path, compact_every=compact_every)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        key = f"r{run}-{i}"
        if i % 10 == 0:
            op = {"op": "del", "key": f"r{run}-{i - 9}"}
        elif i % 4 == 3:
            op = {"op": "put", "key": "counter", "text": f"run {run} save {i}"}
        elif i % 4 == 0:
            op = {"op": "pair", "key": key, "text": f"task and annotation {run}/{i}"}
        else:
            op = {"op": "put", "key": key, "text": f"run {run} save {i}: «déjà vu» ✓ " + "x" * (i % 50)}
        print("begin " + json.dumps(op), flush=True)
        if op["op"] == "del":
            store.delete(Annotation, op["key"])
        elif op["op"] == "pair":
            store.put_many([
                Task(id=op["key"], name=op["text"]),
                Annotation(task_id=op["key"], descriptions={"img": op["text"]}, tags={"img": [str(i)]}),
            ])
        else:
            store.put(Annotation(task_id=op["key"], descriptions={"img": op["text"]}, tags={"img": [str(i)]}))
        print("ok", flush=True)
    """
)


def apply(model: dict[str, dict], op: dict) -> dict[str, dict]:
    """The state after ``op``, on a copy of ``model`` = {"ann": {key: text}, "tasks": {key: name}}."""
    out = {"ann": dict(model["ann"]), "tasks": dict(model["tasks"])}
    if op["op"] == "del":
        out["ann"].pop(op["key"], None)
    else:
        out["ann"][op["key"]] = op["text"]
        if op["op"] == "pair":
            out["tasks"][op["key"]] = op["text"]
    return out


def state_of(path: Path, *, read_only: bool = False) -> dict[str, dict]:
    with open_project(path, read_only=read_only) as store:
        assert store.recovery is None, store.recovery.summary()  # a kill is never "damage"
        anns = store.all(Annotation)
        for ann in anns:  # content, not just presence
            assert list(ann.descriptions) == ["img"] and list(ann.tags) == ["img"]
        return {
            "ann": {a.task_id: a.descriptions["img"] for a in anns},
            "tasks": {t.id: t.name for t in store.all(Task)},
        }


def read_lines(proc: subprocess.Popen, until: str, timeout: float) -> list[str]:
    """Lines from the child's stdout until one equals ``until`` (or the child dies)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.5):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.decode())
        if line.decode().strip() == until:
            break
    sel.close()
    return lines


@pytest.mark.slow
def test_every_acknowledged_save_survives_sigkill(tmp_path: Path):
    seed = int(os.environ.get("TDRI_DURABILITY_SEED", "20250115"))
    rng = random.Random(seed)
    create_project(tmp_path, "Durable").close()
    path = tmp_path / "durable"
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    model: dict[str, dict] = {"ann": {}, "tasks": {}}
    acked_total = in_flight_kills = in_flight_applied = mid_compaction = 0
    snapshots_seen = set()

    for run in range(KILLS):
        stderr = tmp_path / "child.err"
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(path), str(run), str(COMPACT_EVERY)],
                stdout=subprocess.PIPE,
                stderr=err,
            )
        try:
            if rng.random() < 0.15:
                time.sleep(rng.uniform(0.0, 0.2))  # kill while starting up / opening / compacting
                lines: list[str] = []
            else:
                lines = read_lines(proc, "ready", timeout=60)
                time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            rest = proc.stdout.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, stderr.read_text()
        output = "".join(lines) + rest
        complete = output.split("\n")[:-1]  # a last line without newline was cut by the kill

        acked, in_flight = [], None
        for line in complete:
            if line.startswith("begin "):
                in_flight = json.loads(line[6:])
            elif line == "ok":
                acked.append(in_flight)
                in_flight = None
        expected = model
        for op in acked:
            expected = apply(expected, op)
        acked_total += len(acked)
        mid_compaction += (
            any(path.glob("db.json*.tmp"))
            or any(path.glob(".db.json*.tmp"))
            or (path / "db.journal.compacting").exists()  # background compaction under way
        )
        snapshot = json.loads((path / "db.json").read_text(encoding="utf-8"))
        snapshots_seen.add(snapshot["_tdri"]["1"]["seq"])

        actual = state_of(path, read_only=(run % 5 == 0))
        if actual == expected:
            model = expected
        else:
            assert in_flight is not None, f"run {run} (seed {seed}): acknowledged saves missing or wrong"
            with_in_flight = apply(expected, in_flight)
            assert actual == with_in_flight, (
                f"run {run} (seed {seed}): state is neither before nor after {in_flight}"
            )
            model = with_in_flight
            in_flight_applied += 1
        in_flight_kills += in_flight is not None

    # the final state, opened read-write (which also trims any torn line), is still exact,
    # and no temporary file of an interrupted write is left behind
    assert state_of(path) == model
    assert not [p.name for p in path.rglob("*.tmp")]
    print(
        f"seed {seed}: {KILLS} kills, {acked_total} acknowledged saves, {in_flight_kills} kills mid-save "
        f"({in_flight_applied} of those saves had reached the disk), {mid_compaction} kills mid-compaction, "
        f"{len(snapshots_seen)} different snapshots seen"
    )
    # the kills really landed in the moments that matter
    assert acked_total > 200 and in_flight_kills >= KILLS // 3
    assert mid_compaction >= 3 and len(snapshots_seen) > KILLS // 2
