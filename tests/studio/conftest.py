"""Studio test fixtures: offscreen Qt, a qasync loop, a private TDRI home, leak checks.

Every test runs with ``TDRI_HOME`` and ``TDRI_PROJECTS`` in a temporary folder, so nothing
touches the user's files or the repository's sample project.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

pytest.importorskip("PySide6")
qasync = pytest.importorskip("qasync")

from PySide6.QtCore import QCoreApplication, QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fake_engine, without a tests package
from fake_engine import FakeEngine  # noqa: E402


@pytest.fixture(scope="session")
def aio_loop(qapp: QApplication) -> Iterator[Any]:
    """One qasync loop over the test QApplication (pytest-qt spins Qt; qasync rides on it)."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.events._set_running_loop(None)  # set per test below, not for the whole process
    yield loop
    loop.stop()
    loop.close()  # joins the executor's threads: none may outlive the QApplication


@pytest.fixture(autouse=True)
def _aio(aio_loop: Any) -> Iterator[Any]:
    asyncio.set_event_loop(aio_loop)
    asyncio.events._set_running_loop(aio_loop)
    yield aio_loop
    asyncio.events._set_running_loop(None)


@pytest.fixture(autouse=True)
def tdri_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    projects = tmp_path / "projects"
    home.mkdir()
    projects.mkdir()
    monkeypatch.setenv("TDRI_HOME", str(home))
    monkeypatch.setenv("TDRI_PROJECTS", str(projects))
    return home


@pytest.fixture(autouse=True)
def no_leaked_windows(qapp: QApplication) -> Iterator[None]:
    """Every top-level widget a test makes must be gone when it ends (no hidden leaks)."""
    before = set(map(id, qapp.topLevelWidgets()))
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qapp.processEvents()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    leaked = [w for w in qapp.topLevelWidgets() if id(w) not in before]
    names = [f"{type(w).__name__}({w.objectName()!r})" for w in leaked]
    for w in leaked:
        w.close()
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not leaked, f"top-level widgets left behind: {names}"


@pytest.fixture
def run(qtbot: Any) -> Callable[..., Any]:
    """Run a coroutine (or await a future) on the qasync loop while Qt keeps spinning."""

    def _run(aw: Any, timeout: float = 20.0) -> Any:
        fut = asyncio.ensure_future(aw)
        qtbot.waitUntil(fut.done, timeout=int(timeout * 1000))
        return fut.result()

    return _run


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TDRI home whose demo models are built once per test session (about 25 s here)."""
    home = tmp_path_factory.mktemp("demo-home")
    old = os.environ.get("TDRI_HOME")
    os.environ["TDRI_HOME"] = str(home)
    try:
        from tdri_engine.demo import ensure_demo_models

        ensure_demo_models()
    finally:
        if old is None:
            os.environ.pop("TDRI_HOME", None)
        else:
            os.environ["TDRI_HOME"] = old
    return home


@pytest.fixture
def projects_dir(tdri_home: Path) -> Path:
    return Path(os.environ["TDRI_PROJECTS"])


@pytest.fixture
def new_project(projects_dir: Path) -> Callable[..., Path]:
    """Create a project folder (closed again) and return its path."""
    from tdri_engine.store import create_project

    def make(name: str = "Test project", tag_set: str = "fashion") -> Path:
        store = create_project(projects_dir, name)
        store.set_meta("tag_set", tag_set)
        path = store.path
        store.close()
        return path

    return make


@pytest.fixture
def studio(qtbot: Any, run: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Open a MainWindow on a project with a given engine; closes and deletes them all after."""
    from studio.prefs import StudioPrefs
    from studio.ui.main_window import MainWindow

    windows: list[Any] = []

    def open_window(
        project: Path | None,
        engine: Any | None = None,
        *,
        wait_engine: bool = True,
        factory: Callable[..., Any] | None = None,
        timeout_s: float = 20.0,
    ) -> Any:
        """``engine``: an engine object (default a FakeEngine); ``factory``: the real thing."""
        if factory is None:
            engine = engine if engine is not None else FakeEngine()
            factory = lambda profile, settings: engine  # noqa: E731
        window = MainWindow(StudioPrefs.load(), engine_factory=factory)
        window.fake_engine = engine
        windows.append(window)
        window.show()
        qtbot.waitExposed(window)
        if project is not None:
            if wait_engine:
                with qtbot.waitSignal(window.engine_prepared, timeout=int(timeout_s * 1000)):
                    store = run(window.open_project(project), timeout=timeout_s)
            else:
                store = run(window.open_project(project), timeout=timeout_s)
            assert store is not None, window.message_bar.texts()
        return window

    yield open_window
    for w in windows:
        if w.isVisible() or not getattr(w, "_closing", False):
            w.close()
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
