"""The engine never imports Qt: every module under tdri_engine, imported in a clean process.

The walk finds modules by itself, so a module added tomorrow is checked tomorrow. Any attempt
to import PySide6/shiboken6 is recorded with the engine module that made it, even when that
module catches the ImportError.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, json, pkgutil, sys, traceback

    FORBIDDEN = ("PySide6", "shiboken6")
    attempts = []
    current = ["<start>"]

    class Recorder(importlib.abc.MetaPathFinder):
        # notes who asks for Qt; the normal finders still run, so a real import shows too
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                attempts.append([current[0], name])
            return None

    sys.meta_path.insert(0, Recorder())

    import tdri_engine

    imported, failed = [], {}
    def walk_error(name):
        failed[name] = traceback.format_exc(limit=3)

    names = ["tdri_engine"] + [
        m.name for m in pkgutil.walk_packages(tdri_engine.__path__, "tdri_engine.", onerror=walk_error)
    ]
    for name in names:
        current[0] = name
        try:
            importlib.import_module(name)
            imported.append(name)
        except SystemExit:  # a __main__ module runs its CLI on import
            imported.append(name)
        except BaseException:
            failed[name] = traceback.format_exc(limit=3)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    print("RESULT " + json.dumps({"imported": imported, "failed": failed, "attempts": attempts, "loaded": loaded}))
    """
)


def test_no_engine_module_imports_qt():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"probe crashed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert "tdri_engine.store" in result["imported"]  # the walk really walked
    assert "tdri_engine.store.project" in result["imported"]
    assert not result["failed"], "engine modules that do not import:\n" + "\n".join(
        f"{name}:\n{tb}" for name, tb in result["failed"].items()
    )
    assert not result["attempts"], f"engine modules that tried to import Qt: {result['attempts']}"
    assert not result["loaded"], f"Qt modules loaded by the engine: {result['loaded']}"
