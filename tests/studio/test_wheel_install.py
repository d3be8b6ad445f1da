"""The built wheel, installed (not editable) into a fresh virtual environment, runs the studio.

Kept offline and fast: the wheel is built without build isolation and installed with
``--no-deps``; the fresh environment then sees the test environment's libraries (torch,
PySide6, ...) through one ``.pth`` line naming that site-packages folder. A plain path line adds
the folder to ``sys.path`` without running the ``.pth`` files inside it, so the checkout's
editable install is not loaded: ``studio``, ``tdri_engine`` and ``tdri_resources`` come from the
wheel, and the test checks that they do. (``--system-site-packages`` would give the base
interpreter's folder, not this environment's, so it cannot stand in here.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("studio", "tdri_engine", "resources", "pyproject.toml", "README.md")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_the_studio_takes_screenshots(tmp_path, demo_home):
    src = tmp_path / "src"
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info next to the sources
        s = ROOT / name
        if s.is_dir():
            shutil.copytree(s, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(s, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(dist), str(src)])  # fmt: skip
    (wheel,) = dist.glob("tdri_studio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "tdri_resources/style.qss",
        "tdri_resources/help/guidelines.html",
        "tdri_engine/py.typed",
        "tdri_engine/atelier/weights/judge/model.safetensors",  # the committed Atelier judge
        "studio/workers/__init__.py",
    ):
        assert needed in names
    assert any(n.startswith("tdri_resources/templates/") for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ]
    )
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_environment.pth").write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TDRI_", "QT_"))}
    env.update(
        TDRI_HOME=str(demo_home),  # the demo models this test session already built
        TDRI_PROJECTS=str(tmp_path / "projects"),
        QT_QPA_PLATFORM="offscreen",
        HF_HUB_OFFLINE="1",
        PYTHONNOUSERSITE="1",
    )
    where = _run(
        [str(python), "-c", "import studio, tdri_engine.paths as p; print(studio.__file__); print(p.resources_dir())"],
        cwd=tmp_path, env=env,
    ).stdout.split()  # fmt: skip
    assert all(Path(w).is_relative_to(site) for w in where), where
    assert Path(where[1]).name == "tdri_resources"

    shots = tmp_path / "shots"
    _run([str(venv / "bin" / "tdri-studio"), "--screenshots", str(shots), "--project", str(ROOT / "projects" / "sample")],
         cwd=tmp_path, env=env)  # fmt: skip
    for name in ("annotation.png", "refinement.png", "settings.png"):
        assert (shots / name).stat().st_size > 10_000, name
