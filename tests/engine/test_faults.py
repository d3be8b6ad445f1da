"""Pull the plug during the work itself: a refinement round, a DPO update and an export are
SIGKILLed at random moments, again and again, in one project.

A long-lived child loads the demo models once and forks one worker per run; the worker opens
the project and loops its operation, writing an acknowledgement with ``os.write`` (in the
kernel, so it outlives the kill) after each write the API reported as committed. The test
kills the worker after a random delay, then opens the project itself: it must open without
repair and hold every acknowledged write, with the content acknowledged (turns and their
images, preference pairs, adapter versions whose weights load, export files that parse in
full). Kills land while opening, while generating, while saving images, mid-training, while
writing adapter files and mid-export.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tdri_engine.records import AdapterVersion, Annotation, DialogueTurn, PreferencePair, Task
from tdri_engine.store import create_project, open_project

# kills per operation: an update costs several rounds, so fewer of them (50 in all)
KILLS = {"round": 16, "update": 8, "export": 26}

CHILD = textwrap.dedent(
    """
    import dataclasses, json, os, sys, time, traceback
    from pathlib import Path

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from PIL import Image

    from tdri_engine.api import Skip
    from tdri_engine.models import demo_profile
    from tdri_engine.optimizer.dpo import DPOConfig
    from tdri_engine.optimizer.export import export_pairs
    from tdri_engine.optimizer.trainer import run_update
    from tdri_engine.records import ImageRecord, PreferencePair, Task
    from tdri_engine.session import Engine
    from tdri_engine.settings import EngineSettings
    from tdri_engine.store import annotations_jsonl, create_project, open_project

    models = Path(sys.argv[1])
    base = demo_profile()
    profile = dataclasses.replace(
        base, roles={r: dataclasses.replace(s, source=str(models / r)) for r, s in base.roles.items()}
    )
    SETTINGS = EngineSettings(steps=2, width=64, height=64, use_attend_excite=False)
    QUICK = DPOConfig(steps=1, batch_size=2, lr=1e-3, grad_checkpointing=False, eval_timesteps=1)
    engine = Engine(profile, SETTINGS)
    engine.prepare()
    pipe = engine.registry.get("generator")
    import pyarrow.parquet  # noqa: F401  (imported once here, not in every worker)


    def add_pairs(store, rng):
        pairs = []
        for _ in range(2):
            ids = []
            for _ in range(2):
                pixels = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
                ids.append(store.add_image(Image.fromarray(pixels), ImageRecord(prompt="a silk dress")).id)
            pairs.append(PreferencePair(prompt="a silk dress", image_left=ids[0], image_right=ids[1]))
        store.put_many(pairs)
        return pairs


    def timed(call):
        started = time.monotonic()
        call()
        return time.monotonic() - started


    # warm up every operation once in a scratch project (first calls pay for lazy set-up), and
    # tell the test how long each takes on this machine: it times its kills from that
    scratch = create_project(Path(sys.argv[2]), "Warm-up")
    session = engine.open_session(scratch, settings=SETTINGS)
    timed(lambda: session.start("a coat", seed=0))
    durations = {"round": max(timed(lambda: session.refine(Skip())) for _ in range(2))}
    rng = np.random.default_rng(0)
    add_pairs(scratch, rng)
    run_update(scratch, pipe, SETTINGS, config=QUICK)
    add_pairs(scratch, rng)
    durations["update"] = timed(lambda: run_update(scratch, pipe, SETTINGS, config=QUICK))
    export_pairs(scratch, scratch.exports_dir / "p.parquet", "parquet")
    durations["export"] = timed(lambda: export_pairs(scratch, scratch.exports_dir / "p.parquet", "parquet"))
    scratch.close()
    print("loaded " + json.dumps(durations), flush=True)


    def worker(op, project, ack_path, run):
        fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        def ack(**fields):  # after the API call returned: the write is committed
            fields["t"] = round(time.monotonic() - opened, 3)
            os.write(fd, (json.dumps(fields) + "\\n").encode())

        opened = time.monotonic()

        store = open_project(project)
        ack(ready=True)
        rng = np.random.default_rng(run)
        if op == "round":
            session = engine.open_session(store, settings=SETTINGS)
            result = session.start(f"a red dress, take {run}", seed=run)
            while True:
                ack(turn=result.turn.id, image=result.image.id, round=result.round, prompt=result.prompt)
                result = session.refine(Skip())
        elif op == "update":
            while True:
                pairs = add_pairs(store, rng)
                ack(pairs=[p.id for p in pairs], images=[p.image_left for p in pairs] + [p.image_right for p in pairs])
                version = run_update(store, pipe, SETTINGS, config=QUICK)
                ack(version=version.id, status=version.status)
        else:
            i = 0
            while True:
                i += 1
                out = annotations_jsonl(store, store.exports_dir / f"annotations-{run}-{i}.jsonl")
                ack(jsonl=str(out), lines=len(store.all(Task)))
                out = store.exports_dir / f"pairs-{run}-{i}.parquet"
                n = export_pairs(store, out, "parquet")
                ack(parquet=str(out), rows=n)


    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "go":
            pid = os.fork()
            if pid == 0:
                try:
                    worker(cmd[1], cmd[2], cmd[3], int(cmd[4]))
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(3)
            print(f"pid {pid}", flush=True)
        elif cmd[0] == "reap":
            _, status = os.waitpid(int(cmd[1]), 0)
            print(f"reaped {status}", flush=True)
    """
)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout=timeout):
            raise AssertionError(f"the child said nothing for {timeout} s")
        line = proc.stdout.readline().decode()
    finally:
        sel.close()
    if not line:
        raise AssertionError(f"the child ended (exit {proc.wait()})")
    return line.strip()


def _acks(path: Path) -> list[dict]:
    """Complete acknowledgement lines (a line cut by the kill was never acknowledged)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def _wait_acks(path: Path, lines: int, timeout: float) -> bool:
    """Wait until the worker has written ``lines`` complete lines ("ready" is the first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return True
        time.sleep(0.01)
    return False


def _check(project: Path, acked: list[dict]) -> dict[str, int]:
    """Open the project as a user would and find every acknowledged write in it."""
    import pyarrow.parquet as pq
    from safetensors import safe_open

    from tdri_engine.optimizer import adapters as ad

    seen = {"turns": 0, "versions": 0, "exports": 0}
    with open_project(project) as store:
        assert store.recovery is None, store.recovery.summary()  # a kill is never damage
        for a in acked:
            if "turn" in a:
                turn = store.get(DialogueTurn, a["turn"])
                assert turn is not None and (turn.round, turn.prompt) == (a["round"], a["prompt"]), a
                assert store.load_image(a["image"]).size == (64, 64)
                seen["turns"] += 1
            elif "pairs" in a:
                assert all(store.get(PreferencePair, p) is not None for p in a["pairs"]), a
                assert all(store.load_image(i).size == (64, 64) for i in a["images"]), a
            elif "version" in a:
                version = store.get(AdapterVersion, a["version"])
                assert version is not None and version.status == a["status"], a
                folder = ad.version_dir(store, version)
                with safe_open(str(folder / ad.WEIGHTS_NAME), framework="np") as weights:
                    assert list(weights.keys())
                seen["versions"] += 1
            elif "jsonl" in a:
                lines = Path(a["jsonl"]).read_text(encoding="utf-8").splitlines()
                assert len(lines) == a["lines"] and all(json.loads(line)["task"]["id"] for line in lines), a
                seen["exports"] += 1
            elif "parquet" in a:
                assert pq.read_table(a["parquet"]).num_rows == a["rows"], a
                seen["exports"] += 1
        active = ad.active_adapter(store)  # whatever is active is whole
        if active is not None:
            assert (ad.version_dir(store, active) / ad.WEIGHTS_NAME).is_file()
        ad.next_version_id(store, "project")  # the next update has a free number
    return seen


@pytest.mark.slow
def test_every_acknowledged_write_survives_sigkill_during_rounds_updates_and_exports(
    demo_models: Path, tmp_path: Path
):
    seed = int(os.environ.get("TDRI_FAULT_SEED", "20250115"))
    rng = random.Random(seed)
    with create_project(tmp_path, "Faults") as store:  # annotations for the JSONL export to carry
        store.put_many(
            [Task(id=f"t{i}", name=f"task {i}") for i in range(3)]
            + [Annotation(task_id=f"t{i}", descriptions={"x": f"note {i}"}) for i in range(3)]
        )
    project = tmp_path / "faults"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1", TDRI_HOME=str(tmp_path / "home"))
    err = open(tmp_path / "child.err", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(demo_models), str(tmp_path / "scratch")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        env=env,
    )
    acked: list[dict] = []
    order = [op for op, n in KILLS.items() for _ in range(n)]
    rng.shuffle(order)
    kills = dict.fromkeys(KILLS, 0)
    before_ready = 0
    promised = dict.fromkeys(KILLS, 0)  # acknowledgements waited for: turns, versions, exports
    try:
        line = _read_line(proc, 600)
        assert line.startswith("loaded "), (tmp_path / "child.err").read_text()
        took = json.loads(line[len("loaded ") :])  # seconds per operation on this machine, warm
        started = time.monotonic()
        first_ack = {op: [2.0 * took[op]] for op in KILLS}  # seconds from opening to the first ack
        between = {op: [took[op]] for op in KILLS}  # seconds between two acks
        for run, op in enumerate(order):
            acks = tmp_path / f"acks-{run}.jsonl"
            proc.stdin.write(f"go {op} {project} {acks} {run}\n".encode())
            proc.stdin.flush()
            pid = int(_read_line(proc, 60).split()[1])
            mode = rng.random()
            if mode < 0.1:
                time.sleep(rng.uniform(0.0, 0.05))  # while opening the project
                before_ready += 1
            elif mode < 0.5:  # anywhere in the first operation (learned from earlier runs)
                assert _wait_acks(acks, 1, 120), (tmp_path / "child.err").read_text()[-3000:]
                time.sleep(rng.uniform(0.0, 1.2 * statistics.median(first_ack[op])))
            else:  # after one or two committed operations, anywhere in the next one
                # an update acknowledges its pairs, then its version: wait for the version
                n = 2 if op == "update" else rng.choice((1, 2))
                assert _wait_acks(acks, 1 + n, 300), (tmp_path / "child.err").read_text()[-3000:]
                promised[op] += 1 if op == "update" else n
                time.sleep(rng.uniform(0.0, 1.2 * statistics.median(between[op])))
            os.kill(pid, signal.SIGKILL)
            proc.stdin.write(f"reap {pid}\n".encode())
            proc.stdin.flush()
            status = int(_read_line(proc, 60).split()[1])
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                f"run {run} ({op}) ended by itself: {(tmp_path / 'child.err').read_text()[-3000:]}"
            )
            kills[op] += 1
            done = [a for a in _acks(acks) if "ready" not in a]
            if done:
                first_ack[op].append(done[0]["t"])
                between[op] += [b["t"] - a["t"] for a, b in zip(done, done[1:], strict=False)]
            acked += done
            _check(project, acked)
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()
        err.close()
    seen = _check(project, acked)
    print(
        f"seed {seed}: {sum(kills.values())} kills {kills} ({before_ready} while opening) in "
        f"{time.monotonic() - started:.0f} s after warm-up ({took}); acknowledged and found: {seen}"
    )
    assert kills == KILLS and sum(kills.values()) >= 50
    # the kills landed after real work as well as in the middle of it
    assert seen["turns"] >= promised["round"] >= 8 and seen["exports"] >= promised["export"] >= 10
    assert seen["versions"] >= promised["update"] >= 3
