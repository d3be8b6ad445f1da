"""Open an evaluation report: the folder ``tdri eval --out DIR`` wrote, shown in a window.

The folder holds ``report.md`` (tables shaped like the paper's, with every number's scale),
``report.json`` and ``plot_*.png``. :func:`read_report` reads the Markdown (a folder with
``report.md`` in it, or any ``.md`` file) in the store I/O thread; :class:`EvalReportDialog`
renders it with Qt's own Markdown reader (``QTextBrowser.setMarkdown``: no scripts, no network;
images resolve inside the report's folder) and offers the folder and the file in the system's
viewer. Bad input (no report there, a file too large or not text) is a ``BadInput`` that says
which folder to pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from studio.ui.plain_label import PlainLabel
from tdri_engine.errors import BadInput
from tdri_engine.validation import as_unicode

REPORT_NAME = "report.md"
MAX_BYTES = 8 * 1024 * 1024  # a report of 50 targets x 8 conditions is ~30 kB; more is not one


@dataclass(frozen=True)
class Report:
    path: Path  # the .md file
    text: str

    @property
    def folder(self) -> Path:
        return self.path.parent


def read_report(path: str | Path) -> Report:
    """The Markdown report at ``path`` (a ``tdri eval`` output folder, or a .md file)."""
    p = Path(path)
    what_to_do = (
        "Pick the folder that `tdri eval --out DIR` wrote (it holds report.md), or run "
        "`tdri eval --out DIR --report-only` to write the report from its sessions."
    )
    if p.is_dir():
        p = p / REPORT_NAME
        if not p.is_file():
            raise BadInput(f"There is no {REPORT_NAME} in {as_unicode(str(p.parent))}.", what_to_do)
    elif not p.is_file():
        raise BadInput(f"{as_unicode(str(p))} does not exist.", what_to_do)
    elif p.suffix.lower() not in (".md", ".markdown"):
        raise BadInput(f"{as_unicode(p.name)} is not a Markdown report (.md).", what_to_do)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise BadInput(
                f"{as_unicode(p.name)} is {size // (1024 * 1024)} MB: too large for an evaluation report.",
                what_to_do,
            )
        data = p.read_bytes()
    except OSError as exc:
        raise BadInput(f"{as_unicode(str(p))} could not be read: {exc.strerror or exc}.", what_to_do) from exc
    if b"\x00" in data:
        raise BadInput(f"{as_unicode(p.name)} is not text.", what_to_do)
    return Report(p, data.decode("utf-8", errors="replace"))


class EvalReportDialog(QDialog):
    """One report, rendered; "Open folder" and "Open in the system viewer" beside Close."""

    def __init__(self, report: Report, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evalReportDialog")
        self.report = report
        self.setWindowTitle(f"Evaluation report — {as_unicode(report.folder.name)}")
        self.resize(980, 760)
        v = QVBoxLayout(self)
        where = PlainLabel(as_unicode(str(report.path)))
        where.setObjectName("evalReportPath")
        where.setWordWrap(True)
        v.addWidget(where)
        self.browser = QTextBrowser()
        self.browser.setObjectName("evalReportText")
        self.browser.setAccessibleName("Evaluation report")
        self.browser.setOpenLinks(False)  # a link opens in the system's viewer, never in here
        self.browser.anchorClicked.connect(self._open_link)
        self.browser.setSearchPaths([str(report.folder)])  # plot_*.png next to the report
        self.browser.document().setBaseUrl(QUrl.fromLocalFile(str(report.folder) + "/"))
        self.browser.setMarkdown(report.text)
        v.addWidget(self.browser, 1)
        row = QHBoxLayout()
        self.folder_button = QPushButton("Open &folder")
        self.folder_button.setObjectName("evalReportFolder")
        self.folder_button.clicked.connect(self.open_folder)
        row.addWidget(self.folder_button)
        self.viewer_button = QPushButton("Open in the system &viewer")
        self.viewer_button.setObjectName("evalReportViewer")
        self.viewer_button.clicked.connect(self.open_in_viewer)
        row.addWidget(self.viewer_button)
        row.addStretch(1)
        close = QPushButton("Close")
        close.setObjectName("evalReportClose")
        close.clicked.connect(self.close)
        row.addWidget(close)
        v.addLayout(row)

    def open_folder(self) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.report.folder)))

    def open_in_viewer(self) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.report.path)))

    def _open_link(self, url: QUrl) -> None:
        if url.isRelative():
            url = QUrl.fromLocalFile(str(self.report.folder / url.path()))
        if url.scheme() in ("http", "https", "file"):
            QDesktopServices.openUrl(url)
