"""``tdri-studio --self-test``: the engine's self-test plus the main window, as the installed app
(and the packaged build, ``python -m tdri_engine.packaging.build``) runs it."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_studio_self_test_passes_with_the_main_window_part(
    demo_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TDRI_HOME", str(demo_home))
    from studio.app import main

    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert "[ok  ] main window" in out and "shown on Qt's 'offscreen' platform" in out
    assert "self-test passed: 7 parts" in out
    assert "PySide6:" in out and "device:" in out
