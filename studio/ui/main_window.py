"""The main window: projects, the two views, the message bar, the engine thread's status.

The window owns the Qt-side models and the engine bridge; it shows before any model is
loaded (the engine is created in the engine thread on the first job), and every failure ends
up in the non-modal message bar with what to do.

Focus goes where the work is: when the window is first shown, on every switch of view (Ctrl+1,
Ctrl+2, a click on a tab), after a project opens and after the settings dialog closes, the
window calls the current view's ``focus_work()`` (the view knows its preferred widget; a view
without one gets the focus itself). The tab bar takes no focus: a key pressed right after the
window opens reaches the view, not the tabs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio import error_path, shortcuts
from studio.models.annotation_model import AnnotationModel
from studio.models.refinement_model import RefinementModel
from studio.prefs import StudioPrefs
from studio.ui.annotation_view import AnnotationView
from studio.ui.dialogs import HelpWindow, NewProjectDialog
from studio.ui.eval_report import EvalReportDialog, read_report
from studio.ui.job_widget import JobProgress
from studio.ui.message_bar import MessageBar
from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.ui.refinement_view import RefinementView
from studio.ui.settings_dialog import SettingsDialog, project_profile
from studio.ui.view_parts import open_for_keys
from studio.workers import store_io
from studio.workers.engine_bridge import EngineBridge, EngineSpec, JobCancelled, JobFailed, WorkerContext
from studio.workers.engine_setup import EngineFactory, real_engine_factory
from studio.workers.jobs import Job, JobState
from studio.workers.tasks import Tasks
from tdri_engine import paths
from tdri_engine.errors import ProjectError, TdriError
from tdri_engine.events import Error
from tdri_engine.models import LOCAL_DEFAULT_PROFILE, starting_settings

if TYPE_CHECKING:
    from tdri_engine.models import RoleStatus
    from tdri_engine.store import ProjectStore

log = logging.getLogger(__name__)
DEMO_BANNER = (
    "Demo profile: tiny models with random weights. The whole loop runs, but the images are noise. "
    "To use real weights: Settings ▸ Models."
)


class MainWindow(QMainWindow):
    project_opened = Signal(object)  # the store
    engine_prepared = Signal(object)  # list of role statuses (or None on failure)
    shown = Signal()

    def __init__(
        self,
        prefs: StudioPrefs | None = None,
        *,
        engine_factory: EngineFactory = real_engine_factory,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setAccessibleName("TDRI Studio")
        self.prefs = prefs or StudioPrefs.load()
        self.store: ProjectStore | None = None
        self._engine_spec = EngineSpec()  # GUI-side copy; the engine thread gets its own by a job
        self.tasks = Tasks("the main window", expected=(JobFailed, JobCancelled))
        self._shown_once = False
        self._closing = False
        # The factory gets the spec from the engine thread's own copy: no window attribute is
        # read outside the GUI thread.
        self.bridge = EngineBridge(lambda spec: engine_factory(spec.profile, spec.settings), self)
        self.bridge.queue.job_done.connect(self._on_job_done)
        self.bridge.engine_ready.connect(self._on_engine_ready)
        self.bridge.event.connect(self._on_prepare_event)

        self.annotation_model = AnnotationModel(self, annotator=self.prefs.annotator)
        self.annotation_model.error.connect(self.show_error)
        self.refinement_model = RefinementModel(self.bridge, self, auto_update=self.prefs.auto_update)
        self.help_window: HelpWindow | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.report_file_dialog: QFileDialog | None = None
        self.report_dialog: EvalReportDialog | None = None
        self._build()
        self._build_menus()
        self._restore_error_hooks = error_path.install(self.show_error)
        self.setWindowTitle("TDRI Studio")
        self._restore_geometry()
        self.bridge.start()

    # ------------------------------------------------------------------ engine
    def _configure_engine(self, store: ProjectStore) -> None:
        profile = project_profile(store)
        self._engine_spec = EngineSpec(profile, store.settings)
        self.bridge.configure(self._engine_spec)
        self.demo_banner.setVisible(profile == "demo")
        self.profile_label.setText(f"Models: {profile}" + (" (demo)" if profile == "demo" else ""))

    def prepare_engine(self) -> Job:
        """Create the engine in its thread, build demo models on first run, check the roles."""

        def work(ctx: WorkerContext) -> list[RoleStatus]:
            # The first call imports torch and loads the models: a one-time "loading the
            # engine" state in the status bar; every round after it finds them loaded.
            return ctx.engine.prepare(on_event=ctx.emit, cancel=ctx.cancel)

        def done(job: Job) -> None:
            if job.state is not JobState.FINISHED:
                self.engine_prepared.emit(None)
                return
            statuses = job.result
            missing = [s for s in statuses if not s.found and s.required]
            for s in missing:
                self.show_error(
                    Error(
                        "model-missing",
                        f"Model for role “{s.role}” not found ({s.source}).",
                        s.what_to_do or "Set its folder in Settings ▸ Models.",
                    )
                )
            self.engine_prepared.emit(statuses)

        return self.bridge.submit("prepare", "Loading the engine", work, cancellable=False, on_done=done)

    def _on_prepare_event(self, job: Job, event: Any) -> None:
        # A model that fails to preload: said now, while the user has not asked for a round.
        if job.kind == "prepare" and isinstance(event, Error):
            self.show_error(event)

    def _on_engine_ready(self, engine: Any) -> None:
        demo = bool(getattr(engine, "is_demo", False))
        name = getattr(engine, "profile_name", self._engine_spec.profile)
        self.demo_banner.setVisible(demo)
        self.profile_label.setText(f"Models: {name}" + (" (demo)" if demo else ""))

    def _on_job_done(self, job: Job) -> None:
        # Every failure reaches the user once, here, unless a coroutine awaited it (then the
        # model that awaited shows it with its own words).
        if job.state is JobState.FAILED and job.kind in ("prepare", "reset") and job.error is not None:
            self.show_error(job.error)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        central = QWidget()
        central.setObjectName("central")
        v = QVBoxLayout(central)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(0)
        self.demo_banner = PlainLabel(DEMO_BANNER)
        self.demo_banner.setObjectName("demoBanner")
        self.demo_banner.setAccessibleName("Demo profile notice")
        self.demo_banner.setWordWrap(True)
        self.demo_banner.setVisible(False)
        v.addWidget(self.demo_banner)
        self.message_bar = MessageBar()
        # after the dialog has gone (its hiding deactivates the window on some platforms)
        self.message_bar.history_closed.connect(self._back_to_work_later)
        v.addWidget(self.message_bar)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("viewTabs")
        self.tabs.setAccessibleName("Views")
        self.tabs.setDocumentMode(True)
        self.tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabs.tabBar().setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.annotation_view = AnnotationView(
            self.annotation_model,
            show_error=self.show_error,
            show_info=self._show_info,
            show_help=self.show_help,
            prefs=self.prefs,
        )
        self.refinement_view = RefinementView(
            self.refinement_model, show_error=self.show_error, show_message=self.show_message
        )
        self.tabs.addTab(self.annotation_view, f"Annotate  ({shortcuts.label('app.annotate')})")
        self.tabs.addTab(self.refinement_view, f"Refine  ({shortcuts.label('app.refine')})")
        v.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.tabs.currentChanged.connect(lambda _i: self.focus_work())

        sb = self.statusBar()
        sb.setObjectName("statusBar")
        self.project_label = PlainLabel("No project")
        self.project_label.setObjectName("projectLabel")
        self.project_label.setAccessibleName("Open project")
        self.project_label.setMaximumWidth(320)
        sb.addWidget(self.project_label)
        self.profile_label = PlainLabel("")
        self.profile_label.setObjectName("profileLabel")
        self.profile_label.setAccessibleName("Model profile")
        sb.addWidget(self.profile_label)
        self.saved_label = PlainLabel("")
        self.saved_label.setObjectName("statusSaved")
        self.saved_label.setAccessibleName("Save state")
        sb.addWidget(self.saved_label)
        self.job_progress = JobProgress(self.bridge.queue, idle_text="Engine idle", name="statusJob")
        sb.addPermanentWidget(self.job_progress)
        self.annotation_model.saved_state_changed.connect(self._on_saved_state)
        self.annotation_model.saved_at_changed.connect(
            lambda _t: self._on_saved_state(self.annotation_model.saved_state)
        )

    def _on_saved_state(self, state: str) -> None:
        at = self.annotation_model.saved_at
        self.saved_label.setText(
            {"saved": f"Saved {at}".strip(), "pending": "Saving…", "failed": "Not saved: retrying"}.get(
                state, state
            )
        )

    def _action(
        self, text: str, fn: Callable[[], Any], name: str | None = None, *, menu: Any = None
    ) -> QAction:
        act = QAction(text, self)
        if name:
            act.setShortcuts([QKeySequence(k) for k in shortcuts.keys(name)])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.triggered.connect(lambda _=False: fn())
        if menu is not None:
            menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        mb = self.menuBar()
        project = mb.addMenu("&Project")
        self._action("&New project…", self.new_project_dialog, menu=project)
        self._action("&Open project folder…", self.open_project_dialog, menu=project)
        self.recent_menu = project.addMenu("Open &recent")
        self.recent_menu.setObjectName("recentMenu")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._fill_recent()
        project.addSeparator()
        self._action("Export annotations (JSONL)", self.export_annotations, menu=project)
        self._action("Open &evaluation report…", self.open_eval_report_dialog, menu=project)
        project.addSeparator()
        self._action("&Settings…", self.show_settings, "app.settings", menu=project)
        project.addSeparator()
        self._action("&Quit", self.close, "app.quit", menu=project)

        edit = mb.addMenu("&Edit")
        undo = self.annotation_model.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts([QKeySequence(k) for k in shortcuts.keys("app.undo")])
        redo = self.annotation_model.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence(k) for k in shortcuts.keys("app.redo")])
        edit.addAction(undo)
        edit.addAction(redo)
        self.undo_action, self.redo_action = undo, redo

        view = mb.addMenu("&View")
        self._action("&Annotate", lambda: self.show_view(self.annotation_view), "app.annotate", menu=view)
        self._action("&Refine", lambda: self.show_view(self.refinement_view), "app.refine", menu=view)

        help_menu = mb.addMenu("&Help")
        self._action("&Guidelines and shortcuts", self.show_help, "app.help", menu=help_menu)
        self._action("&Message history", self.message_bar.show_history, "app.messages", menu=help_menu)
        self._action(
            "&Dismiss the message", self.message_bar.dismiss_current, "app.dismiss_message", menu=help_menu
        )
        self._action("Open &log folder", self.open_log_folder, menu=help_menu)
        self._action("&About", self.show_about, menu=help_menu)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.prefs.recent_projects:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.spawn(self.open_project(p)))
        if not self.prefs.recent_projects:
            act = self.recent_menu.addAction("(none yet)")
            act.setEnabled(False)

    # ------------------------------------------------------------------ focus
    def show_view(self, view: QWidget) -> None:
        """Show ``view`` and put the focus where its work is (also when it was shown already)."""
        if self.tabs.currentWidget() is not view:
            self.tabs.setCurrentWidget(view)  # currentChanged moves the focus
        else:
            self.focus_work()

    def _back_to_work(self) -> None:
        """A window of ours closed (the message history): the keys go to the work again."""
        self.activateWindow()
        self.focus_work()

    def _back_to_work_later(self) -> None:
        """After a dialog of ours closed: the keys go back to the work once it is gone (not when
        the window itself is closing, nor after it was deleted: the timer dies with it)."""
        if not self._closing:
            QTimer.singleShot(0, self, self._back_to_work)

    def focus_work(self) -> None:
        """Give the focus to the current view's preferred widget (its ``focus_work``)."""
        view = self.tabs.currentWidget()
        if view is None:
            return
        fn = getattr(view, "focus_work", None)
        if callable(fn):
            fn()
        else:
            view.setFocus()

    # ------------------------------------------------------------------ messages
    def show_error(self, error: Error) -> None:
        self.message_bar.show_error(error)

    def show_message(self, level: str, text: str) -> None:
        if (
            level == "note"
            and self.demo_banner.isVisible()
            and "demo profile" in text.lower()
            and "random" in text
        ):
            return  # the banner already says it
        if level == "warning":
            self.message_bar.show_warning(text)
        elif level == "error":
            self.message_bar.show_error(Error("error", text, ""))
        else:
            self.message_bar.show_info(text)

    def _show_info(self, title: str, detail: str = "") -> None:
        self.message_bar.show_info(title, detail)

    def show_help(self) -> None:
        if self.help_window is None:
            self.help_window = HelpWindow(self)
        self.help_window.show()
        self.help_window.raise_()

    def open_log_folder(self) -> Path:
        """Show the folder of the log files in the system's file manager (and say where it is)."""
        folder = error_path.log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.message_bar.show_info("The log files are in this folder:", str(folder), timeout_ms=20000)
        return folder

    def show_about(self) -> None:
        from tdri_engine import __version__

        self.message_bar.show_info(
            f"TDRI Studio {__version__}",
            f"Project: {self.store.path if self.store else '(none)'}\nSettings and logs: {paths.tdri_home()}",
            timeout_ms=20000,
        )

    def show_settings(self) -> SettingsDialog | None:
        if self.store is None:
            self.message_bar.show_info("Open a project first: settings belong to a project.")
            return None
        dlg = SettingsDialog(self.store, self.prefs, show_error=self.show_error, parent=self)
        dlg.saved.connect(self._on_settings_saved)
        dlg.finished.connect(lambda _r: self.focus_work())
        self.settings_dialog = dlg
        dlg.open()  # window-modal, but the event loop (and the engine) keep running
        dlg.start_check()
        return dlg

    def _on_settings_saved(self, changed: dict[str, Any]) -> None:
        if self.store is not None and ("settings" in changed or "profile" in changed):
            self._configure_engine(self.store)
            self.spawn(self.refinement_model.refresh_personalisation())
        if "prefs" in changed:
            self.refinement_model.auto_update = self.prefs.auto_update
            self.annotation_model.annotator = self.prefs.annotator
        self.message_bar.show_info("Settings saved.")

    # ------------------------------------------------------------------ projects
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Start ``coro`` without awaiting it (kept alive; a failure reaches the message bar)."""
        return self.tasks.spawn(coro)

    async def open_initial(self, project: str | None = None) -> Any:
        """At start: the given project, else the last one, else the sample, else a new one."""
        candidates = [project] if project else [self.prefs.last_project]
        candidates += [
            str(self.prefs.projects_root() / "sample"),
            str(paths.default_projects_dir() / "sample"),
        ]
        for c in candidates:
            if c and Path(c).is_dir():
                store = await self.open_project(c, quiet=not project)
                if store is not None:
                    return store
        # Nothing to open: make a first project so the studio is usable right away.
        # on the Atelier's trained models (shipped, installed on first use): real garments, offline
        return await self.create_project("My first project", tag_set="fashion", profile=LOCAL_DEFAULT_PROFILE)

    async def open_project(self, path: str | Path, *, quiet: bool = False) -> Any:
        from tdri_engine.store import open_project

        try:
            store = await store_io.run(open_project, Path(path))
        except TdriError as exc:
            self.show_error(Error(exc.kind, f"Could not open the project: {exc.message}", exc.what_to_do))
            if quiet and isinstance(exc, ProjectError):
                self.prefs.forget_project(str(path))
            return None
        await self._set_store(store)
        return store

    async def create_project(self, name: str, *, tag_set: str = "general", profile: str = "demo") -> Any:
        from tdri_engine.store import create_project

        root = self.prefs.projects_root()
        try:
            settings = starting_settings(profile)  # a profile's own size, steps and guidance
            store = await store_io.run(lambda: create_project(root, name, profile=profile, settings=settings))
            await store_io.run(store.set_meta, "tag_set", tag_set)
        except TdriError as exc:
            self.show_error(Error(exc.kind, f"Could not create the project: {exc.message}", exc.what_to_do))
            return None
        await self._set_store(store)
        self.message_bar.show_info(f"Created project “{store.name}” in {store.path}.")
        return store

    async def close_project(self) -> None:
        """Close the open project once nothing holds it: the one place a project is closed.

        The views let go of it first (edits flushed), then every engine job is cancelled and
        awaited (a round or an update stops at its next step), then the store I/O queued before
        is done, and only then the store closes, in the store I/O thread. A job that still
        tried to write afterwards would get the store's "closed" error, never a silent write.
        """
        old = self.store
        if old is None:
            return
        self.annotation_model.unload()  # flushes the last edits
        self.refinement_model.unload()
        self.store = None
        await self.bridge.drain()
        try:
            await store_io.run(old.close)
        except TdriError as exc:
            self.show_error(Error(exc.kind, f"Closing the previous project: {exc.message}", exc.what_to_do))

    async def _set_store(self, store: ProjectStore) -> None:
        await self.close_project()
        self.store = store
        self.annotation_model.load(store)
        self._configure_engine(store)
        self.prefs.remember_project(store.path)
        self._save_prefs()
        self.setWindowTitle(f"TDRI Studio — {store.name}")
        self.project_label.setText(f"Project: {store.name}")
        self.project_label.setToolTip(plain_tooltip(str(store.path)))
        if store.recovery is not None:
            self.message_bar.show_warning(
                "The project was repaired when it opened.", store.recovery.summary()
            )
        for note in getattr(store, "open_notes", []) or []:
            self.message_bar.show_info(note, timeout_ms=0)
        await self.refinement_model.load(store)
        self.project_opened.emit(store)
        self.prepare_engine()
        self.focus_work()

    def new_project_dialog(self) -> None:
        dlg = NewProjectDialog(self.prefs.projects_root(), self)

        def accepted() -> None:
            name = dlg.name_edit.text().strip()
            if not name:
                self.message_bar.show_info("A project needs a name.")
                return
            self.spawn(
                self.create_project(
                    name, tag_set=dlg.tags_combo.currentData(), profile=dlg.profile_combo.currentData()
                )
            )

        dlg.accepted.connect(accepted)
        dlg.open()

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Open a project folder", str(self.prefs.projects_root())
        )
        if folder:
            self.spawn(self.open_project(folder))

    def export_annotations(self) -> None:
        if self.store is None:
            return
        from tdri_engine.store.export import annotations_jsonl

        self.annotation_model.flush()
        try:
            out = annotations_jsonl(self.store)
        except TdriError as exc:
            self.show_error(Error(exc.kind, exc.message, exc.what_to_do))
            return
        self.message_bar.show_info("Annotations exported.", str(out), timeout_ms=20000)

    # ------------------------------------------------------------------ evaluation reports
    def open_eval_report_dialog(self) -> QFileDialog:
        """Ask for the folder that `tdri eval --out DIR` wrote, then show its report.md."""
        start = self.prefs.last_report_dir or str(Path.home())
        dlg = QFileDialog(self, "Open an evaluation report: the folder tdri eval wrote", start)
        dlg.setObjectName("evalReportFileDialog")
        dlg.setFileMode(QFileDialog.FileMode.Directory)
        dlg.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dlg.setOption(QFileDialog.Option.DontUseNativeDialog, True)  # keys work the same everywhere
        dlg.fileSelected.connect(lambda folder: self.spawn(self.open_eval_report(folder)))
        dlg.rejected.connect(self._back_to_work_later)
        self.report_file_dialog = dlg
        open_for_keys(dlg)  # the keys go to the folder name at once
        return dlg

    async def open_eval_report(self, path: str | Path) -> EvalReportDialog | None:
        """Show the report in ``path`` (a `tdri eval` folder or a .md file); read off the GUI
        thread. Not a report: a message that says which folder to pick, nothing else changes."""
        try:
            report = await store_io.run(read_report, path)
        except TdriError as exc:
            self.show_error(Error(exc.kind, exc.message, exc.what_to_do))
            return None
        self.prefs.last_report_dir = str(report.folder.parent)
        if self.report_dialog is not None:
            self.report_dialog.close()
        dlg = EvalReportDialog(report, self)
        dlg.finished.connect(lambda _r: self._back_to_work_later())
        self.report_dialog = dlg
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()
        dlg.browser.setFocus()
        return dlg

    # ------------------------------------------------------------------ window life
    def _restore_geometry(self) -> None:
        self.resize(1440, 900)
        if self.prefs.window_geometry:
            try:
                self.restoreGeometry(QByteArray.fromHex(self.prefs.window_geometry.encode()))
            except Exception:  # a bad saved geometry must not stop the window
                pass
        if self.prefs.current_view == "refine":
            self.tabs.setCurrentWidget(self.refinement_view)

    def _save_prefs(self) -> None:
        try:
            self.prefs.save()
        except OSError as exc:
            log.warning("could not save studio preferences: %s", exc)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            self.focus_work()
            QTimer.singleShot(0, self.shown.emit)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.refinement_view.confirm_quit():  # a round runs: the first Ctrl+Q says so
            event.ignore()
            return
        if not self.annotation_model.flush():
            answer = QMessageBox.warning(
                self,
                "Edits not saved",
                "Your last annotation edits could not be written to disk (see the message). Quit anyway and lose them?",
                QMessageBox.StandardButton.Cancel | QMessageBox.StandardButton.Discard,
            )
            if answer != QMessageBox.StandardButton.Discard:
                event.ignore()
                return
        self._closing = True
        self.prefs.window_geometry = bytes(self.saveGeometry().toHex()).decode()
        self.prefs.current_view = (
            "refine" if self.tabs.currentWidget() is self.refinement_view else "annotate"
        )
        self._save_prefs()
        self.refinement_model.save_draft()  # what was typed but not sent comes back next time
        self.bridge.shutdown()
        if self.store is not None:
            try:
                self.store.close()
            except TdriError as exc:
                log.warning("closing the project: %s", exc)
            self.store = None
        for w in (
            self.help_window,
            self.settings_dialog,
            self.message_bar.history_dialog,
            self.report_dialog,
        ):
            if w is not None:
                w.close()
        self.tasks.cancel_all()
        self.annotation_view.tasks.cancel_all()  # image loads still on their way
        self._restore_error_hooks()
        super().closeEvent(event)
