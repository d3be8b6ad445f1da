"""The type checker passes on both packages and on the studio's test engine.

mypy in basic mode (``[tool.mypy]`` in pyproject.toml): the engine's faces in
``tdri_engine/api.py`` are typed completely, so this also proves that the real engine
(``studio.workers.engine_setup.real_engine_factory`` returns a ``tdri_engine.session.Engine`` as an
``EngineAPI``) and the test engine (``fake_engine.as_engine``) both implement them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_studio_the_engine_and_the_test_engine() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
