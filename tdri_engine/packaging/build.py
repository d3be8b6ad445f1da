"""``python -m tdri_engine.packaging.build``: from a clean clone to a checked, packaged studio.

    .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m tdri_engine.packaging.build

1. builds the demo models into ``build/demo_models`` (``tdri models demo --dest``; random
   weights, no download) for the bundle to carry read-only;
2. runs PyInstaller on ``build.spec`` (onedir ``dist/tdri-studio/``), the log in
   ``build/pyinstaller.log``;
3. measures the bundle: files and MB per part (torch, CUDA libraries, Qt, models, ours, the rest);
4. checks the bundle as a user's machine would run it (``env -i`` with a fresh ``HOME``, no
   Python on PATH, no network where ``unshare -n`` is allowed): ``--self-test``,
   ``--screenshots DIR``, the time to the first window beside the installed app's, and that
   nothing was written inside the bundle (every file's size and mtime before and after);
5. wraps the bundle in the installer (``dist/tdri-studio-<version>-linux-<arch>.tar.gz``);
6. writes it all to ``docs/packaging/build_linux.json``.

It takes 10-20 minutes on two cores, so it is not part of every test run (the installed app's
``tdri self-test`` is, in ``tests/engine/test_selftest.py``). ``--check-only`` repeats steps 3-4
and 6 on an existing ``dist/tdri-studio``. PyInstaller runs in a child process: this module never
imports it, so the bundle does not carry it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
APP = "tdri-studio"
COMMAND = ".venv/bin/pip install -e '.[dev]' && .venv/bin/python -m tdri_engine.packaging.build"

# Which part of the bundle a file belongs to (first match wins), on its path inside the bundle.
PARTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("models", re.compile(r"^_internal/demo_models/")),
    (
        "cuda",
        re.compile(
            r"(^|/)(nvidia|cuda_bindings|cuda_pathfinder|cuda)/|(^|/)lib(cu|nv|cudnn|nccl|cusparse|cublas|curand"
            r"|cusolver|cufft|cupti|cufile|nvrtc|nvjitlink|nvshmem|nvToolsExt)[^/]*$"
        ),
    ),
    (
        "torch",
        re.compile(r"^_internal/(torch|torchvision|functorch|torchgen)/|(^|/)lib(torch|c10|shm|gomp)[^/]*$"),
    ),
    ("qt", re.compile(r"^_internal/(PySide6|shiboken6)/|(^|/)lib(Qt6|pyside6|shiboken6)[^/]*$")),
    ("ours", re.compile(r"^(tdri-studio|_internal/(resources|studio|tdri_engine|tdri_studio[^/]*)(/|$))")),
)


def _run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as fh:
        return subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def measure(bundle: Path) -> dict[str, Any]:
    """Files and MB per part of the bundle, and its ten largest other folders."""
    parts: dict[str, dict[str, float]] = {name: {"files": 0, "mb": 0.0} for name, _ in PARTS}
    parts["other"] = {"files": 0, "mb": 0.0}
    other_dirs: dict[str, float] = {}
    for f in bundle.rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        rel = f.relative_to(bundle).as_posix()
        size = f.stat().st_size / 1e6
        part = next((name for name, rx in PARTS if rx.search(rel)), "other")
        parts[part]["files"] += 1
        parts[part]["mb"] += size
        if part == "other":
            top = "/".join(rel.split("/")[:2])
            other_dirs[top] = other_dirs.get(top, 0.0) + size
    for p in parts.values():
        p["mb"] = round(p["mb"], 1)
    return {
        "total": {
            "files": sum(int(p["files"]) for p in parts.values()),
            "mb": round(sum(p["mb"] for p in parts.values()), 1),
        },
        "parts": parts,
        "largest_other": {k: round(v, 1) for k, v in sorted(other_dirs.items(), key=lambda kv: -kv[1])[:10]},
        "note": (
            "'ours' is the launcher (which also holds the bytecode archive of every pure-Python "
            "module, ours and the libraries'), resources/ and our package files; 'cuda' the nvidia "
            "CUDA libraries torch's CUDA build links; 'models' the bundled demo models."
        ),
    }


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (ns): compared before and after a run."""
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _no_network_prefix() -> list[str]:
    """``unshare -n`` (a new network namespace: no interface but a down loopback) where allowed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def _clean_env(home: Path) -> list[str]:
    # env -i: no PATH (so no Python on it), no PYTHON*, no virtualenv, a fresh HOME
    return ["env", "-i", f"HOME={home}", "QT_QPA_PLATFORM=offscreen"]


def _time_to_window(cmd: list[str], runs: int = 3, timeout: int = 300) -> dict[str, Any]:
    """Seconds from launching ``cmd ... --exit-when-shown`` to the window's shown signal."""
    times, torch_loaded = [], []
    for _ in range(runs):
        started = time.time()
        out = subprocess.run([*cmd, "--exit-when-shown"], capture_output=True, text=True, timeout=timeout)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{") and "shown_at" in ln), None)
        if out.returncode != 0 or line is None:
            return {"ok": False, "rc": out.returncode, "output_tail": (out.stdout + out.stderr)[-2000:]}
        data = json.loads(line)
        times.append(round(data["shown_at"] - started, 2))
        torch_loaded.append(bool(data.get("torch_imported_at_show")))
    return {
        "ok": True,
        "seconds": times,
        "median_s": statistics.median(times),
        "torch_loaded_at_show": torch_loaded,
    }


def check_bundle(bundle: Path, installed: list[str] | None = None) -> dict[str, Any]:
    """Run the bundle as a user's fresh account would; see the module docstring (step 4)."""
    exe = str(bundle / APP)
    before = listing(bundle)
    nonet = _no_network_prefix()
    home = Path(tempfile.mkdtemp(prefix="tdri-bundle-home-"))
    base = [*nonet, *_clean_env(home)]
    result: dict[str, Any] = {
        "env": " ".join([*(["unshare -n"] if nonet else []), "env -i HOME=<fresh> QT_QPA_PLATFORM=offscreen"])
    }
    result["no_network"] = bool(nonet)

    t = time.perf_counter()
    st = subprocess.run([*base, exe, "--self-test"], capture_output=True, text=True, timeout=1200)
    result["self_test"] = {
        "command": "env -i HOME=$(mktemp -d) QT_QPA_PLATFORM=offscreen ./dist/tdri-studio/tdri-studio --self-test",
        "rc": st.returncode,
        "seconds": round(time.perf_counter() - t, 1),
        "first_start": True,
        "output": [ln for ln in st.stdout.splitlines() if ln.strip()][-20:],
        "stderr_tail": st.stderr.splitlines()[-10:] if st.returncode else [],
    }

    shots = Path(tempfile.mkdtemp(prefix="tdri-bundle-shots-"))
    t = time.perf_counter()
    sc = subprocess.run(
        [*base, exe, "--screenshots", str(shots)], capture_output=True, text=True, timeout=1200
    )
    images = {}
    for png in sorted(shots.glob("*.png")):
        from PIL import Image

        with Image.open(png) as im:
            images[png.name] = list(im.size)
    result["screenshots"] = {
        "command": "env -i HOME=$(mktemp -d) QT_QPA_PLATFORM=offscreen ./dist/tdri-studio/tdri-studio --screenshots DIR",
        "rc": sc.returncode,
        "seconds": round(time.perf_counter() - t, 1),
        "images": images,
        "folder": str(shots),
        "output_tail": (sc.stdout + sc.stderr).splitlines()[-10:] if sc.returncode else [],
    }

    result["time_to_window"] = {"bundle": _time_to_window([*base, exe])}
    if installed:
        env = [*_clean_env(home)[:-1], "QT_QPA_PLATFORM=offscreen"]
        result["time_to_window"]["installed_app"] = _time_to_window([*env, *installed])
        result["time_to_window"]["installed_command"] = " ".join(installed)
    result["time_to_window"]["how"] = (
        "launch to MainWindow.shown (--exit-when-shown), offscreen, same fresh HOME after the first "
        "start (demo models already copied), 3 runs each"
    )

    after = listing(bundle)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    result["bundle_unchanged"] = {"ok": not changed, "paths_checked": len(before), "changed": changed[:50]}
    shutil.rmtree(home, ignore_errors=True)
    return result


def _torch_build() -> dict[str, Any]:
    import torch

    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "kind": "CUDA" if torch.version.cuda else "CPU-only",
    }


def _cpu_torch_available(version: str) -> dict[str, Any]:
    """Does the package registry configured here offer ``torch==<version>+cpu``?"""
    base = version.split("+")[0]
    wanted = f"torch=={base}+cpu"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, wanted]
        env = {**os.environ, "PIP_CONSTRAINT": os.devnull}  # the pinned constraints would hide it
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
        except subprocess.TimeoutExpired:
            return {"asked": wanted, "available": None, "detail": "pip timed out"}
    text = (out.stdout + out.stderr).strip().splitlines()
    return {
        "asked": f"pip download --no-deps {wanted}",
        "available": out.returncode == 0,
        "detail": next(
            (ln for ln in text if "from versions" in ln or "Saved" in ln), text[-1] if text else ""
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tdri_engine.packaging.build", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--dist", type=Path, default=ROOT / "dist")
    p.add_argument("--work", type=Path, default=ROOT / "build")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "packaging" / "build_linux.json")
    p.add_argument(
        "--no-demo", action="store_true", help="do not bundle the demo models (built on first start)"
    )
    p.add_argument("--no-installer", action="store_true", help="skip the .tar.gz")
    p.add_argument("--no-check", action="store_true", help="skip running the bundle")
    p.add_argument("--check-only", action="store_true", help="measure and check an existing dist/tdri-studio")
    args = p.parse_args(argv)

    bundle = args.dist / APP
    report: dict[str, Any] = {}
    if args.report.exists():
        try:
            report = json.loads(args.report.read_text(encoding="utf-8"))
        except ValueError:
            report = {}
    report.update(
        {
            "command": COMMAND,
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    )

    if not args.check_only:
        from importlib.metadata import version

        report["pyinstaller"] = version("pyinstaller")
        report["torch"] = _torch_build()
        report["cpu_only_torch"] = _cpu_torch_available(report["torch"]["version"])
        env = dict(os.environ)
        if not args.no_demo:
            from tdri_engine.demo import build_demo_models

            demo = args.work / "demo_models"
            t = time.perf_counter()
            build_demo_models(demo)
            report["demo_models_build_s"] = round(time.perf_counter() - t, 1)
            env["TDRI_DEMO_MODELS"] = str(demo)
        log = args.work / "pyinstaller.log"
        cmd = [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", _rel(args.dist),
            "--workpath", _rel(args.work / "pyinstaller"), "build.spec",
        ]  # fmt: skip
        print("building:", " ".join(cmd), flush=True)
        t = time.perf_counter()
        rc = _run_logged(cmd, log, env)
        report["build"] = {
            "pyinstaller_command": " ".join(Path(c).name if c == sys.executable else c for c in cmd),
            "rc": rc,
            "seconds": round(time.perf_counter() - t, 1),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "warnings": sum(1 for ln in _tail(log, 10**7) if " WARNING: " in ln),
            "log_tail": _tail(log, 40),
        }
        _write(args.report, report)
        if rc != 0:
            print(f"PyInstaller failed (rc {rc}); log: {log}", file=sys.stderr)
            return rc

    if not (bundle / APP).is_file():
        print(f"no bundle at {bundle}", file=sys.stderr)
        return 1
    report["bundle"] = {"path": "dist/tdri-studio", **measure(bundle)}
    _write(args.report, report)
    ok = True
    if not args.no_check:
        installed = shutil.which("tdri-studio", path=str(Path(sys.executable).parent))
        report["checks"] = check_bundle(bundle, [installed] if installed else None)
        _write(args.report, report)
        checks = report["checks"]
        ok = (
            checks["self_test"]["rc"] == 0
            and checks["screenshots"]["rc"] == 0
            and checks["bundle_unchanged"]["ok"]
        )
    if not args.no_installer:
        from importlib.metadata import version as dist_version

        from tdri_engine import paths
        from tdri_engine.packaging.installer import make_installer

        t = time.perf_counter()
        out = make_installer(
            bundle,
            paths.resource_path("icons", "app.svg"),
            args.dist,
            dist_version("tdri-studio"),
            compresslevel=1,
        )
        report["installer"] = {
            "path": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
            "mb": round(out.stat().st_size / 1e6, 1),
            "seconds": round(time.perf_counter() - t, 1),
        }
        _write(args.report, report)
    print(json.dumps({k: report[k] for k in ("bundle", "checks", "installer") if k in report}, indent=2))
    return 0 if ok else 1


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
