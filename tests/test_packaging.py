"""Every library the two packages import is a declared dependency of the distribution."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
OWN = {"studio", "tdri_engine", "tdri_resources"}


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> one file importing it (lazy imports inside functions included)."""
    found: dict[str, str] = {}
    for pkg in ("studio", "tdri_engine"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m not in OWN}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_distribution_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    by_module = md.packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_levels().items()):
        dists = {_norm(d) for d in by_module.get(module, [])}
        if not dists:
            missing.append(f"{module} (imported in {where}) is not installed in this environment")
        elif not dists & declared:
            missing.append(f"{module} (imported in {where}) comes from {sorted(dists)}, not declared")
    assert not missing, "\n".join(missing)


def test_the_listed_packages_are_every_package_on_disk() -> None:
    """pyproject lists its packages (to map resources/ to tdri_resources): a new subpackage
    left off the list would be missing from every wheel and installed app."""
    from setuptools import find_packages

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = set(find_packages(str(ROOT), include=["tdri_engine", "tdri_engine.*", "studio", "studio.*"]))
    assert set(tool["packages"]) == on_disk | {"tdri_resources"}
    assert tool["package-dir"] == {"tdri_resources": "resources"}
