"""The `tdri` command line: models demo/check, generate, and refine from a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdri_engine.cli import main
from tdri_engine.records import Dialogue, DialogueTurn, ImageRecord
from tdri_engine.store import open_project, read_provenance


def _tdri() -> list[str]:
    """The installed `tdri` script beside this Python, else the same entry point as a module."""
    script = Path(sys.executable).with_name("tdri")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tdri_engine.cli"]


def test_refine_reads_answers_from_a_pipe_and_leaves_three_rounds(demo_home: Path, tmp_path: Path):
    # printf 'red\n\nsilk\n' | tdri refine --project scratch/p --prompt "a dress" --rounds 3 --profile demo
    env = dict(os.environ, TDRI_HOME=str(demo_home), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [
            *_tdri(),
            "refine",
            "--project",
            "scratch/p",
            "--prompt",
            "a dress",
            "--rounds",
            "3",
            "--profile",
            "demo",
            "--tau",
            "0",  # ask every round (the demo's calibrated tau asks in about half)
        ],
        input="red\n\nsilk\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "demo profile" in done.stderr and "random weights" in done.stderr
    assert done.stdout.count("question [") == 3  # one after each round
    assert f"3 rounds in {tmp_path / 'scratch' / 'p'}" in done.stdout

    with open_project(tmp_path / "scratch" / "p", read_only=True) as store:
        (dialogue,) = store.all(Dialogue)
        turns = sorted(store.all(DialogueTurn), key=lambda t: t.round)
        assert [t.round for t in turns] == [0, 1, 2]
        assert all(t.dialogue_id == dialogue.id for t in turns)
        # the first line answered round 0's question, the empty line skipped round 1's
        assert (turns[1].kind, turns[1].user_input) == ("answer", "red")
        assert turns[2].kind == "skip"
        assert "red" in turns[1].prompt
        images = store.all(ImageRecord)
        assert len(images) == 3 and all(store.image_path(i).is_file() for i in images)


def test_models_check_says_found_or_how_to_fix(demo_home: Path, capsys: pytest.CaptureFixture):
    assert main(["models", "check", "--profile", "demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("found") >= 7 and "All required models were found" in out


def test_models_check_fails_with_the_fix_when_nothing_is_there(
    tdri_home: Path, capsys: pytest.CaptureFixture
):
    assert main(["models", "check", "--profile", "demo"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("MISSING") == 7
    assert "tdri models demo" in captured.out
    assert str(tdri_home / "models" / "demo" / "generator") in captured.out
    assert "Missing required roles" in captured.err


def test_generate_writes_a_png_with_its_provenance(
    demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    out = tmp_path / "out" / "dress.png"
    args = ["generate", "--prompt", "a red dress", "--seed", "3", "--steps", "2", "--size", "64x64", "--out"]
    assert main([*args, str(out)]) == 0
    meta = read_provenance(out)
    assert (meta["prompt"], meta["seed"], meta["steps"]) == ("a red dress", 3, 2)
    assert "seed 3" in capsys.readouterr().out
    again = tmp_path / "again.png"
    assert main([*args, str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same image, same file


@pytest.mark.parametrize(
    "argv, words",
    [
        (["generate", "--prompt", "  ", "--out", "x.png"], "The prompt is empty"),
        (["generate", "--prompt", "a dress", "--out", "x.jpg"], "not a .png file name"),
        (["refine", "--project", "p", "--prompt", "a dress", "--rounds", "0"], "--rounds must be at least 1"),
        (["generate", "--prompt", "a dress", "--out", "x.png", "--profile", "sd99"], "Unknown model profile"),
    ],
)
def test_bad_arguments_exit_1_with_what_to_do(argv: list[str], words: str, capsys: pytest.CaptureFixture):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert words in err and "what to do:" in err


def test_a_real_profile_without_weights_exits_1_naming_the_role(
    tdri_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert (
        main(["generate", "--prompt", "a dress", "--out", str(tmp_path / "x.png"), "--profile", "sd15"]) == 1
    )
    err = capsys.readouterr().err
    assert "'generator'" in err and "huggingface-cli download" in err and "Also missing" in err


# ------------------------------------------------------------------ the user's own mistakes


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a project, byte for byte (the lock file's pid aside)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def kept_project(projects_root: Path) -> Path:
    """A project with a task, an annotation, a preference pair and an active adapter, closed."""
    from PIL import Image

    from tdri_engine.records import Annotation, PreferencePair, Task
    from tdri_engine.store import create_project

    with create_project(projects_root, "Kept") as store:
        a = store.add_image(Image.new("RGB", (16, 16), "red"), ImageRecord(prompt="a red dress"))
        b = store.add_image(Image.new("RGB", (16, 16), "blue"), ImageRecord(prompt="a blue dress"))
        store.put_many(
            [
                Task(id="t1", name="dresses", images=[a.id, b.id]),
                Annotation(task_id="t1", descriptions={a.id: "red"}, choice="left"),
                PreferencePair(id="p1", prompt="a dress", image_left=a.id, image_right=b.id, choice="left"),
            ]
        )
        store.set_meta("active_adapter", "v0001")
        store.set_meta("last_task_id", "t1")
    return projects_root / "kept"


def _assert_intact(folder: Path, before: dict[str, bytes]) -> None:
    from tdri_engine.records import Annotation, PreferencePair, Task

    assert _files(folder) == before
    with open_project(folder) as store:
        assert store.recovery is None
        assert store.get_meta("active_adapter") == "v0001" and store.get_meta("last_task_id") == "t1"
        assert [t.id for t in store.all(Task)] == ["t1"]
        assert store.get(Annotation, "t1").descriptions and store.get(PreferencePair, "p1")
        assert all(store.load_image(r).size == (16, 16) for r in store.all(ImageRecord))


@pytest.mark.parametrize(
    "target",
    [
        "project.json",
        "db.json",
        "db.journal",
        "project.json.bak",
        ".lock",
        "images/x.png",
        "loras/pairs.parquet",
        "exports/../project.json",
        ".",
        "images",
        "exports",
    ],
)
@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_pairs_never_writes_over_the_projects_own_files(
    kept_project: Path, target: str, fmt: str, capsys: pytest.CaptureFixture
):
    before = _files(kept_project)
    out = kept_project / target
    assert main(["export", "pairs", "--project", str(kept_project), "--format", fmt, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert ("inside the project" in err or "is a folder" in err) and "what to do:" in err
    _assert_intact(kept_project, before)


def test_export_pairs_through_a_link_in_exports_is_refused(kept_project: Path, capsys: pytest.CaptureFixture):
    (kept_project / "exports" / "pairs.parquet").symlink_to(kept_project / "project.json")
    before = _files(kept_project)
    argv = [
        "export",
        "pairs",
        "--project",
        str(kept_project),
        "--out",
        str(kept_project / "exports" / "pairs.parquet"),
    ]
    assert main(argv) == 1
    assert "inside the project" in capsys.readouterr().err
    _assert_intact(kept_project, before)


def test_export_pairs_into_exports_or_outside_still_works(kept_project: Path, tmp_path: Path):
    for out in (kept_project / "exports" / "p.jsonl", tmp_path / "elsewhere" / "p.parquet"):
        assert (
            main(
                [
                    "export",
                    "pairs",
                    "--project",
                    str(kept_project),
                    "--format",
                    out.suffix[1:],
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert out.is_file()
    assert main(["project", "export-annotations", str(kept_project), "--out", str(tmp_path / "a.jsonl")]) == 0


def test_jsonl_export_does_not_replace_a_users_folder_beside_it(kept_project: Path, tmp_path: Path, capsys):
    mine = tmp_path / "out" / "pairs_images"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("my own work")
    argv = [
        "export",
        "pairs",
        "--project",
        str(kept_project),
        "--format",
        "jsonl",
        "--out",
        str(tmp_path / "out" / "pairs.jsonl"),
    ]
    assert main(argv) == 1
    assert "holds files this export did not write" in capsys.readouterr().err
    assert (mine / "thesis.txt").read_text() == "my own work"


@pytest.mark.parametrize("target", ["db.json", "project.json", "images/a.jsonl", "db.journal"])
def test_export_annotations_refuses_the_projects_own_files(kept_project: Path, target: str, capsys):
    before = _files(kept_project)
    assert (
        main(["project", "export-annotations", str(kept_project), "--out", str(kept_project / target)]) == 1
    )
    assert "inside the project" in capsys.readouterr().err
    _assert_intact(kept_project, before)


def test_sample_force_never_deletes_a_users_own_folder_named_sample(projects_root: Path, capsys):
    mine = projects_root / "sample"
    mine.mkdir()
    (mine / "thesis.txt").write_text("my own work")
    assert main(["project", "sample", "--root", str(projects_root), "--force"]) == 1
    err = capsys.readouterr().err
    assert "not a sample project this app built" in err and "Nothing was deleted" in err
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"] and (
        mine / "thesis.txt"
    ).read_text() == "my own work"


def test_sample_force_never_deletes_another_project_named_sample(projects_root: Path, capsys):
    from tdri_engine.records import Task
    from tdri_engine.store import create_project

    with create_project(projects_root, "Sample") as store:  # the user's own project, same slug
        store.put(Task(id="mine"))
    assert main(["project", "sample", "--root", str(projects_root), "--force"]) == 1
    assert "not a sample project this app built" in capsys.readouterr().err
    with open_project(projects_root / "sample") as store:
        assert [t.id for t in store.all(Task)] == ["mine"]


def test_sample_force_waits_for_the_studio_that_has_it_open(projects_root: Path, capsys):
    from tdri_engine.records import Annotation

    assert main(["project", "sample", "--root", str(projects_root)]) == 0
    with open_project(projects_root / "sample") as store:  # as the studio holds it
        store.put(Annotation(task_id="sample-03", descriptions={"s03a": "mine"}))
        assert main(["project", "sample", "--root", str(projects_root), "--force"]) == 1
        assert "open in another window" in capsys.readouterr().err
        assert store.get(Annotation, "sample-03").descriptions == {"s03a": "mine"}
    with open_project(projects_root / "sample") as store:
        assert store.get(Annotation, "sample-03").descriptions == {"s03a": "mine"}
    assert main(["project", "sample", "--root", str(projects_root), "--force"]) == 0  # closed: rebuilt
    with open_project(projects_root / "sample") as store:
        assert store.get(Annotation, "sample-03").annotator == "sample"  # the sample's own again


def test_sample_force_rebuilds_a_sample_built_before_the_marker(projects_root: Path):
    import json

    assert main(["project", "sample", "--root", str(projects_root)]) == 0
    pj = projects_root / "sample" / "project.json"
    doc = json.loads(pj.read_text(encoding="utf-8"))
    del doc["meta"]["sample_build"]  # as the builds before the marker wrote it
    pj.write_text(json.dumps(doc), encoding="utf-8")
    (projects_root / "sample" / "project.json.bak").unlink(missing_ok=True)
    assert main(["project", "sample", "--root", str(projects_root), "--force"]) == 0
    assert "sample_build" in pj.read_text(encoding="utf-8")


def test_refine_stops_on_an_answer_that_is_not_utf8_and_keeps_the_rounds(demo_home: Path, tmp_path: Path):
    # printf 'red\n\xff\xfe silk\n' | tdri refine ... : the second answer is not UTF-8
    import re

    env = dict(
        os.environ, TDRI_HOME=str(demo_home), HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8:surrogateescape"
    )
    argv = [*_tdri(), "refine", "--project", "p", "--prompt", "a dress", "--rounds", "4", "--profile", "demo"]
    argv += ["--seed", "1", "--steps", "2", "--size", "64x64", "--tau", "0"]  # ask every round
    done = subprocess.run(
        argv, input=b"red\n\xff\xfe silk\nblue\n", capture_output=True, cwd=tmp_path, env=env, timeout=300
    )
    out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1, err
    assert "Answer line 2 is not valid UTF-8 text (byte 0xff at byte 1)" in err and "Traceback" not in err
    saved = re.search(r"The (\d+) rounds before it are saved in", err)
    assert saved, err
    assert out.count("question [") >= 2  # the bad line answered a second question
    with open_project(tmp_path / "p", read_only=True) as store:
        turns = sorted(store.all(DialogueTurn), key=lambda t: t.round)
        assert [t.round for t in turns] == list(range(int(saved.group(1))))
        assert [t.user_input for t in turns if t.kind == "answer"] == ["red"]
        assert all(store.image_path(i).is_file() for i in store.all(ImageRecord))


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["refine", "--project", "p", "--prompt", "a \x1b[2J dress", "--rounds", "2"],
            "control character (\\x1b at character 3)",
        ),
        (
            ["refine", "--project", "p", "--prompt", "a \udcff dress", "--rounds", "2"],
            "not valid UTF-8 text (\\xff at character 3)",
        ),
        (["generate", "--prompt", "x" * 5000, "--out", "x.png"], "5,000 characters long"),
        (
            ["generate", "--prompt", "a dress", "--negative", "\x07", "--out", "x.png"],
            "The negative prompt contains a control character",
        ),
        (
            ["refine", "--project", "p" * 300, "--prompt", "a dress", "--rounds", "2"],
            "allow 255 bytes per name",
        ),
    ],
)
def test_bad_text_is_refused_before_any_model_loads(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no demo models here: reaching a model would fail differently
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert words in err and "what to do:" in err and "\x1b" not in err and "\x07" not in err
    assert not (tmp_path / "p").exists()


def test_models_check_shows_a_shared_profiles_name_and_description_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """A profile from someone else cannot clear the screen or retitle the terminal."""
    monkeypatch.setenv("TDRI_HOME", str(tmp_path / "home"))
    path = tmp_path / "profile.json"
    path.write_text(
        '{"name": "evil\\u001b[2J", "extends": "sd15", "description": "d\\u001b]0;title\\u0007"}',
        encoding="utf-8",
    )
    assert main(["models", "check", "--profile", str(path)]) == 1  # sd15's weights are not here
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "Profile 'evil\\x1b[2J'" in out and "d\\x1b]0;title\\x07" in out
