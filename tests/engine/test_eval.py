"""`tdri eval`: a smoke run on the demo models, resume after a kill, the report's pieces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tdri_engine.errors import BadInput
from tdri_engine.evaluation.report import write_report
from tdri_engine.evaluation.runner import EvalConfig, EvalRun, read_sessions

FAST = {"steps": 2, "use_pose": False}


def _config(out: Path, **changes) -> EvalConfig:
    base = dict(targets=2, rounds=2, conditions=["single", "tdri"], out=str(out), **FAST)
    return EvalConfig(**(base | changes))


@pytest.fixture(scope="module")
def untrained_judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A judge folder in the real format (random weights): exercises the world's judge path."""
    import torch

    from tdri_engine.atelier import judge

    torch.manual_seed(0)
    return judge.save(judge.build_model(), tmp_path_factory.mktemp("judge") / "judge")


@pytest.fixture(scope="module")
def smoke(demo_engine, untrained_judge, tmp_path_factory: pytest.TempPathFactory):
    """2 targets x 2 rounds x 2 conditions on the demo profile (A&E off: it fires every round on
    random models and would double the cost)."""
    out = tmp_path_factory.mktemp("eval") / "run"
    config = _config(out, judge=str(untrained_judge), settings={"use_attend_excite": False})
    run = EvalRun(config, engine=demo_engine)
    result = run.run()
    return out, result


def test_smoke_run_writes_every_session_metric_report_and_plot(smoke):
    out, result = smoke
    assert result == {"ran": 4, "skipped": 0, "report": out / "report.md"}
    sessions = read_sessions(out)
    assert sorted((s["condition"], s["target"]) for s in sessions) == [
        ("single", "atelier-0-0"),
        ("single", "atelier-0-1"),
        ("tdri", "atelier-0-0"),
        ("tdri", "atelier-0-1"),
    ]
    for s in sessions:
        assert [r["round"] for r in s["rounds"]] == [0, 1]
        assert s["start_prompt"].count(" ") <= 2  # "a dress": the garment alone
        for r in s["rounds"]:
            for key in ("t2i_clip", "i2i_clip", "t2i_blip", "i2i_blip"):
                assert 0.0 <= r[key] <= 1.0, (key, r[key])
            assert 0 <= r["judge_aspects"] <= 7 and set(r["judge"]) == {
                "Content", "Style", "Background", "Size", "Color", "Perspective", "Others",
            }  # fmt: skip
            assert r["satisfied"] == int(r["judge_aspects"] >= 6)
        assert "judge" in s["satisfaction_rule"]
    tdri = [s for s in sessions if s["condition"] == "tdri"]
    assert all(s["rounds"][1]["choice"] in ("left", "right", "tie") for s in tdri)
    # the same targets and seeds in every condition: round 0 is the same image, so the same scores
    by = {(s["condition"], s["target"]): s for s in sessions}
    for target in ("atelier-0-0", "atelier-0-1"):
        a, b = by[("single", target)], by[("tdri", target)]
        assert a["seed"] == b["seed"] and a["target_prompt"] == b["target_prompt"]
        assert a["rounds"][0]["i2i_clip"] == pytest.approx(b["rounds"][0]["i2i_clip"], abs=1e-5)
    md = (out / "report.md").read_text(encoding="utf-8")
    for part in ("Table 1 shape", "Table 3 shape", "## Claims", "tdri eval --profile demo", "0-1"):
        assert part in md
    from PIL import Image

    for metric in ("i2i_clip", "t2i_clip", "satisfied", "judge_aspects"):
        with Image.open(out / f"plot_{metric}.png") as im:
            assert im.format == "PNG" and im.size == (720, 420)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["sessions"] == 4 and set(report["conditions"]) == {"single", "tdri"}
    # the share of refine rounds with a question, counted from the sessions
    tdri_asked = [bool(r.get("asked")) for s in tdri for r in s["rounds"][1:]]
    assert report["conditions"]["tdri"]["asked_rate"][0] == pytest.approx(
        100 * sum(tdri_asked) / len(tdri_asked)
    )
    assert report["conditions"]["single"]["asked_rate"][0] == 0.0


def test_the_report_carries_the_runners_notes_under_the_claims(smoke, tmp_path: Path):
    import shutil

    out, _ = smoke
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    assert "## Why" not in write_report(copy).read_text(encoding="utf-8")
    (copy / "notes.md").write_text("Edits at strength 0.6 keep round 0's colour.\n", encoding="utf-8")
    md = write_report(copy).read_text(encoding="utf-8")
    assert (
        md.index("## Claims") < md.index("## Why") < md.index("keep round 0's colour") < md.index("Table 1")
    )


def test_a_killed_run_resumes_with_only_the_unfinished_sessions(demo_engine, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    config = _config(out, conditions=["single", "augment"], augmenter="rules")
    run = EvalRun(config, engine=demo_engine)
    real = EvalRun.run_session
    calls = []

    def dies_on_the_third(self, cond, target, index):
        calls.append((cond.name, target.id))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is killed mid-session
        return real(self, cond, target, index)

    monkeypatch.setattr(EvalRun, "run_session", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    lines = (out / "sessions-p0.jsonl").read_bytes()
    assert len(read_sessions(out)) == 2
    # a kill in the middle of a write leaves a cut line: skipped on reading, never glued to the next
    (out / "sessions-p0.jsonl").write_bytes(lines + b'{"condition": "augment", "tar')

    with pytest.raises(BadInput, match="already holds"):
        EvalRun(config, engine=demo_engine).run()
    with pytest.raises(BadInput, match="rounds"):
        EvalRun(_config(out, conditions=["single", "augment"], rounds=3), engine=demo_engine).run(resume=True)

    calls.clear()
    result = EvalRun(config, engine=demo_engine).run(resume=True)
    assert result["ran"] == 2 and result["skipped"] == 2
    assert calls == [("augment", "atelier-0-0"), ("augment", "atelier-0-1")]
    assert (out / "sessions-p0.jsonl").read_bytes().startswith(lines)  # finished lines untouched
    sessions = read_sessions(out)
    assert sorted((s["condition"], s["target"]) for s in sessions) == [
        ("augment", "atelier-0-0"),
        ("augment", "atelier-0-1"),
        ("single", "atelier-0-0"),
        ("single", "atelier-0-1"),
    ]
    # augmentation adds words to the start prompt, each round a new draw
    aug = [s for s in sessions if s["condition"] == "augment"][0]
    prompts = [r["prompt"] for r in aug["rounds"]]
    assert all(
        p.startswith(aug["start_prompt"].split()[0]) and len(p) > len(aug["start_prompt"]) for p in prompts
    )
    assert prompts[0] != prompts[1]
    assert write_report(out).is_file()


def test_cli_refuses_bad_arguments_before_any_model_loads(tmp_path: Path, capsys, monkeypatch):
    from tdri_engine import cli
    from tdri_engine.session import Engine

    monkeypatch.setattr(Engine, "__init__", lambda *a, **k: pytest.fail("a model was about to load"))
    for argv, said in (
        (["--targets", "0"], "--targets"),
        (["--rounds", "0"], "--rounds"),
        (["--conditions", "tdri,nonsense"], "Unknown condition"),
        (["--threshold", "2"], "--threshold"),
        (["--set", "nonsense=1"], "KEY=VALUE"),
        (["--set", "steps=0"], "steps must be"),
    ):
        assert cli.main(["eval", "--out", str(tmp_path / "x"), *argv]) == 1
        assert said in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_question_uptake_counts_each_asked_aspect_against_the_judge_before_and_after():
    from tdri_engine.evaluation.report import question_uptake

    def rnd(asked, color, size):
        return {"asked": asked, "judge": {"Color": color, "Size": size}}

    rows = [
        {"rounds": [rnd(None, False, False), rnd("Color", True, False), rnd("Size", True, False)]},
        {"rounds": [rnd(None, True, False), rnd("Color", True, True), rnd(None, False, True)]},
    ]
    q = question_uptake(rows)
    # Color asked twice: once the image before lacked it and the one after has it, once it was there already
    assert q["Color"] == {"asked": 2, "right_before": 0.5, "newly_right_after": 0.5}
    # Size asked once, wrong before and after: the answer did not show
    assert q["Size"] == {"asked": 1, "right_before": 0.0, "newly_right_after": 0.0}
    assert list(q) == ["Color", "Size"]  # most asked first


def test_paired_change_is_the_mean_target_by_target_difference_and_shows_in_the_claims():
    from tdri_engine.evaluation.report import aggregate, claims, paired_change

    def session(cond, target, scores):
        return {"condition": cond, "target": target, "wall_s": 1.0,
                "rounds": [{"i2i_clip": v, "seconds": 0.1} for v in scores]}  # fmt: skip

    # a large spread between targets, the same small gain on every one: the two conditions'
    # own intervals overlap, the paired difference does not include 0
    base = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.4, 0.6]
    sessions = [session("single", f"t{i}", [b] * 4) for i, b in enumerate(base)]
    sessions += [session("tdri", f"t{i}", [b, b, b, b + 0.05]) for i, b in enumerate(base)]
    mean, lo, hi = paired_change(sessions, "tdri", "single", "i2i_clip", 4)
    assert mean == pytest.approx(0.05) and lo == pytest.approx(0.05) and hi == pytest.approx(0.05)
    rise = paired_change(sessions, "tdri", "tdri", "i2i_clip", 4, 1)
    assert rise is not None and rise[0] == pytest.approx(0.05)
    assert paired_change(sessions, "tdri", "augment", "i2i_clip", 4) is None  # no shared targets
    check = next(
        c for c in claims(aggregate(sessions), sessions=sessions) if c["claim"].startswith("tdri > single")
    )
    assert (
        not check["holds"] and "paired over the same targets +0.050 [+0.050, +0.050], above 0" in check["why"]
    )


def test_the_committed_atelier_report_and_its_copy_in_docs_eval_agree():
    """docs/eval/atelier.md is docs/eval/atelier/report.md with its plot links made relative to
    docs/eval/: a report redrawn without its copy (or the other way round) fails here."""
    root = Path(__file__).resolve().parents[2] / "docs" / "eval"
    report = (root / "atelier" / "report.md").read_text(encoding="utf-8")
    copy = (root / "atelier.md").read_text(encoding="utf-8")
    assert copy.split("\n", 1)[1] == report.replace("](plot_", "](atelier/plot_")
    for name in re.findall(r"\]\((atelier/plot_\w+\.png)\)", copy):
        assert (root / name).is_file(), name
