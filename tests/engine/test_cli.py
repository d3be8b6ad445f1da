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
