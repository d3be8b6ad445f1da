"""No file of the studio or the engine patches the interpreter or another library's internals.

A patch made for one purpose (a faster import, a workaround for one Qt release) changes the
whole process for every library in it, and outlives the reason it was written for. This test
reads every source file and fails on:

- an assignment to an attribute of something the file imported (``module.attr = ...``,
  ``SomeClass.method = ...``) rather than of an object it made;
- reference-count or garbage-collector manipulation, loader or ``dlopen`` replacement,
  ``sys.modules`` assignment.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("studio", "tdri_engine")

# Names and calls that only a process-wide patch needs.
FORBIDDEN = re.compile(
    r"pythonapi|Py_IncRef|Py_DecRef|ob_refcnt|gc\.freeze|gc\.set_threshold|ExtensionFileLoader"
    r"|_dlopen|c_ssize_t\.from_address|sys\.setdlopenflags|builtins\.__import__|sys\.meta_path"
)


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported_names(tree: ast.Module) -> set[str]:
    """Every name a file binds by ``import`` (at any depth): modules and classes it does not own."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


# The interpreter's documented hooks for what they are made for: the studio's one error path
# (studio/error_path.py) logs and shows every uncaught exception, and restores them on close.
ALLOWED = {"sys.excepthook", "threading.excepthook"}


def foreign_assignments(text: str, label: str) -> list[str]:
    tree = ast.parse(text, label)
    foreign = imported_names(tree)
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?")]
        for t in targets:
            if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "sys.modules":
                found.append(f"{label}:{node.lineno}: sys.modules[...] assigned")
            if not isinstance(t, ast.Attribute):
                continue
            base = t.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in foreign and ast.unparse(t) not in ALLOWED:
                found.append(f"{label}:{node.lineno}: {ast.unparse(t)} assigned")
    return found


def test_no_file_assigns_to_attributes_of_what_it_imported() -> None:
    found = [
        line
        for p in sources()
        for line in foreign_assignments(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))
    ]
    assert not found, "\n".join(found)


def test_no_file_touches_reference_counts_the_collector_or_the_loaders() -> None:
    found = []
    for p in sources():
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "import ctypes\nctypes._dlopen = None\n",
        "import importlib.machinery\nimportlib.machinery.ExtensionFileLoader.create_module = f\n",
        "from diffusers import Pipe\nPipe.__call__ = f\n",
        "import sys\nsys.modules['torch'] = object()\n",
        "import gc\nsetattr(gc, 'x', 1)\n",
    ],
)
def test_the_checks_catch_a_patch(code: str) -> None:
    """The checks themselves: each of these patches is reported."""
    assert foreign_assignments(code, "probe.py") or FORBIDDEN.search(code)


def test_an_attribute_of_an_own_object_is_not_a_patch() -> None:
    code = "import torch\nclass A:\n    pass\na = A()\na.x = torch.zeros(1)\nself_x = 1\n"
    assert foreign_assignments(code, "probe.py") == []


def test_a_broken_pyside6_is_refused_at_start_with_the_release_to_install(monkeypatch, capsys) -> None:
    import PySide6

    from studio import app

    assert app.pyside_problem(PySide6.__version__) is None or PySide6.__version__ == "6.12.0"
    monkeypatch.setattr(PySide6, "__version__", "6.12.0")
    assert app.main(["--exit-when-shown"]) == 2
    err = capsys.readouterr().err
    assert "PySide6 6.12.0 cannot run TDRI Studio" in err and "!=6.12.0" in err
