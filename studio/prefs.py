"""The studio's own preferences (not a project's): projects folder, recent projects, window.

Stored as JSON in ``tdri_home()/studio.json`` so that a packaged build, a test and a user all
find it in one documented place; written atomically (temporary file, fsync, rename) so a
crash never leaves a half-written file. Engine settings belong to each project instead
(``project.json``, written through the store).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tdri_engine import paths

log = logging.getLogger(__name__)

MAX_RECENT = 8


@dataclass
class StudioPrefs:
    projects_dir: str = ""  # empty: tdri_engine.paths.default_projects_dir()
    recent_projects: list[str] = field(default_factory=list)  # most recent first
    last_project: str = ""
    auto_update: bool = True  # start a preference update when "k of N" reaches 0
    window_geometry: str = ""  # hex of QWidget.saveGeometry()
    window_state: str = ""
    current_view: str = "annotate"
    annotator: str = ""
    last_image_dir: str = ""  # where Load Image / Replace image opened last (empty: home)
    last_report_dir: str = ""  # where Open evaluation report… opened last (empty: home)

    # -- persistence ---------------------------------------------------------------------------
    @staticmethod
    def path() -> Path:
        return paths.tdri_home() / "studio.json"

    @classmethod
    def load(cls) -> StudioPrefs:
        p = cls.path()
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            # A broken preferences file must never stop the studio from starting.
            log.warning("ignoring unreadable preferences %s: %s", p, exc)
            return cls()
        known = {f.name for f in fields(cls)}
        prefs = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(prefs.recent_projects, list):
            prefs.recent_projects = []
        return prefs

    def save(self) -> None:
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".studio-", suffix=".json", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(self), fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- helpers -------------------------------------------------------------------------------
    def projects_root(self) -> Path:
        return Path(self.projects_dir) if self.projects_dir else paths.default_projects_dir()

    def remember_project(self, path: str | os.PathLike[str]) -> None:
        p = str(Path(path).resolve())
        self.recent_projects = [p] + [r for r in self.recent_projects if r != p]
        del self.recent_projects[MAX_RECENT:]
        self.last_project = p

    def forget_project(self, path: str) -> None:
        self.recent_projects = [r for r in self.recent_projects if r != path]
        if self.last_project == path:
            self.last_project = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
