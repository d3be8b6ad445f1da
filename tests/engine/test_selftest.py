"""``tdri self-test``: the installed app's end-to-end check (the packaged build runs the same)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tdri_engine import cli
from tdri_engine.demo import demo_models_ready
from tdri_engine.packaging.bundled import seed_demo_models


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_self_test_passes_on_the_demo_models_and_reports_every_part(demo_home, capsys):
    assert cli.main(["self-test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["failed_part"] is None
    names = [p["name"] for p in report["parts"]]
    assert names == [
        "versions",
        "demo models",
        "project",
        "refinement round",
        "annotation save",
        "DPO update",
    ]
    assert all(p["ok"] for p in report["parts"])
    assert report["versions"]["torch"] and report["versions"]["tdri-studio"]
    assert report["device"] == "cpu" or report["device"].startswith("cuda")
    assert "1 step on 2 pairs" in report["parts"][-1]["detail"]
    # the temporary project is gone, nothing was written next to the user's projects
    assert not any(Path(os.environ["TDRI_PROJECTS"]).glob("*"))


def test_a_failure_names_the_part_and_says_what_to_do(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the user's data folder should be")
    monkeypatch.setenv("TDRI_HOME", str(blocker / "home"))
    assert cli.main(["self-test"]) == 1
    out = capsys.readouterr().out
    assert "self-test FAILED in part 'demo models'" in out
    assert "what to do:" in out
    assert "[ok  ] versions" in out and "refinement round" not in out


def test_bundled_demo_models_are_copied_once_and_the_bundle_is_not_written(
    demo_models, tdri_home, monkeypatch
):
    monkeypatch.setenv("TDRI_BUNDLED_DEMO", str(demo_models))
    before = _listing(demo_models)
    dest = tdri_home / "models" / "demo"
    assert seed_demo_models() == demo_models
    assert demo_models_ready(dest) and not dest.is_symlink()
    marker = json.loads((dest / "demo-profile.json").read_text())
    assert all(Path(r["path"]).parent == dest for r in marker["roles"].values())
    assert seed_demo_models() is None  # already there: nothing copied again
    assert _listing(demo_models) == before


def test_first_start_builds_the_sample_once_and_never_over_the_users_files(tdri_home, tmp_path, monkeypatch):
    from tdri_engine.packaging.bundled import first_start

    monkeypatch.delenv("TDRI_BUNDLED_DEMO", raising=False)
    projects = tmp_path / "TDRI Projects"
    notes = first_start(projects)
    assert (projects / "sample" / "project.json").is_file(), notes
    # later starts never rebuild it: a sample the user deleted stays deleted
    import shutil

    shutil.rmtree(projects / "sample")
    assert first_start(projects) == [] and not (projects / "sample").exists()
    # a first start on another account whose projects folder already has a 'sample' leaves it
    (tdri_home / "first-start.json").unlink()
    (projects / "sample").mkdir()
    (projects / "sample" / "mine.txt").write_text("keep")
    first_start(projects)
    assert [p.name for p in (projects / "sample").iterdir()] == ["mine.txt"]
