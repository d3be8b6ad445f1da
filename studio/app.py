"""``tdri-studio``: start the studio.

    tdri-studio [--project PATH] [--projects-dir DIR] [--screenshots DIR] [--self-test]

The window shows first; torch and the models load afterwards in the engine thread. With
``--screenshots DIR`` the studio runs offscreen on a throwaway copy of the project, saves
screenshots of the annotation view, the refinement view and the settings dialog, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any

from tdri_engine import paths

log = logging.getLogger("studio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tdri-studio", description="TDRI Studio: dialogue-driven image generation and annotation."
    )
    p.add_argument("--project", metavar="PATH", help="open this project folder")
    p.add_argument("--projects-dir", metavar="DIR", help="folder that holds the projects (remembered)")
    p.add_argument(
        "--screenshots",
        metavar="DIR",
        help="save screenshots of both views and the settings dialog into DIR (offscreen), then exit",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="check this install (demo models, a round, a choice, a DPO step, the main window offscreen), "
        "print a summary and exit 0 when it passes",
    )
    p.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)  # startup benchmark
    return p.parse_args(argv)


def load_style(app: Any) -> None:
    """Apply resources/style.qss (a missing file leaves Qt's default look)."""
    qss = paths.resource_path("style.qss")
    try:
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    except OSError as exc:
        log.warning("style sheet not loaded: %s", exc)


# PySide6 releases the studio cannot run on, with the reason and the release to install.
BROKEN_PYSIDE = {
    "6.12.0": (
        "it drops a reference to True/None on every signal emit under Python < 3.12, and the "
        "interpreter aborts after a few thousand calls"
    ),
}
PYSIDE_FIX = 'pip install "PySide6-Essentials>=6.8,!=6.12.0,<7"  (6.11.3 is tested)'


def pyside_problem(version: str) -> str | None:
    """Why this PySide6 release cannot run the studio and what to install instead, or None."""
    why = BROKEN_PYSIDE.get(version)
    if why is None:
        return None
    return f"PySide6 {version} cannot run TDRI Studio: {why}.\nInstall another release: {PYSIDE_FIX}"


def make_app(argv0: str = "tdri-studio") -> Any:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([argv0])
    app.setApplicationName("TDRI Studio")
    app.setOrganizationName("TDRI")
    app.setStyle("Fusion")  # the same look on every platform and offscreen
    icon = paths.resource_path("icons", "app.svg")
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    load_style(app)
    return app


def self_test() -> int:
    """``--self-test``: the engine's self-test (``tdri_engine.selftest``: demo models, a round, a
    choice, a DPO step), then the main window opened offscreen; exit 0 when every part passed."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from tdri_engine import selftest

    def main_window(ctx: dict[str, Any]) -> str:
        import PySide6
        from PySide6.QtCore import QCoreApplication, QEvent

        problem = pyside_problem(PySide6.__version__)
        if problem is not None:
            raise RuntimeError(problem)
        from studio.prefs import StudioPrefs
        from studio.ui.main_window import MainWindow

        app = make_app()
        window = MainWindow(StudioPrefs.load())
        window.show()
        app.processEvents()
        shown, size = window.isVisible(), f"{window.width()}x{window.height()}"
        window.close()
        window.deleteLater()  # nothing left behind for whatever runs next in this process
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        if not shown:
            raise RuntimeError("the main window did not show")
        ctx["report"].versions["PySide6"] = PySide6.__version__
        return f"shown on Qt's '{app.platformName()}' platform, {size}"

    return selftest.main([("main window", main_window)])


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    if args.screenshots or args.exit_when_shown:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from studio.error_path import setup_logging

    setup_logging()
    import PySide6

    problem = pyside_problem(PySide6.__version__)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    import qasync

    from studio.prefs import StudioPrefs
    from studio.ui.main_window import MainWindow

    app = make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from studio.error_path import loop_exception_handler

    loop.set_exception_handler(loop_exception_handler)

    prefs = StudioPrefs.load()
    if args.projects_dir:
        prefs.projects_dir = str(Path(args.projects_dir).resolve())
    window = MainWindow(prefs)
    exit_code = 0

    if args.exit_when_shown:

        def report() -> None:
            print(
                json.dumps(
                    {
                        "shown_at": time.time(),
                        "main_started_at": started,
                        "torch_imported_at_show": "torch" in sys.modules,
                    }
                ),
                flush=True,
            )
            window.close()

        window.shown.connect(report)
        window.show()
        with loop:
            loop.run_forever()
        return 0

    window.show()
    if args.screenshots:
        from studio.screenshots import take_screenshots

        async def shots() -> None:
            nonlocal exit_code
            try:
                saved = await take_screenshots(window, Path(args.screenshots), project=args.project)
                for p in saved:
                    print(p)
            except Exception:
                log.exception("screenshots failed")
                exit_code = 1
            finally:
                window.close()

        window.spawn(shots())
    else:
        window.spawn(window.open_initial(args.project))

    with loop:
        loop.run_forever()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
