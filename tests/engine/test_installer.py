"""The Linux installer around the bundle: install.sh / uninstall.sh on a tiny fake bundle
(no PyInstaller here; the real bundle is built by ``python -m tdri_engine.packaging.build``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tdri_engine import paths
from tdri_engine.packaging.installer import make_installer

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    bundle = tmp_path / "dist" / "tdri-studio"
    (bundle / "_internal").mkdir(parents=True)
    exe = bundle / "tdri-studio"
    exe.write_text('#!/bin/sh\necho "fake studio $*"\n')
    exe.chmod(0o755)
    (bundle / "_internal" / "lib.so").write_bytes(b"\0" * 100)
    return make_installer(bundle, paths.resource_path("icons", "app.svg"), tmp_path / "out", "9.9.9")


def _unpack(archive: Path, where: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    (top,) = list(where.iterdir())
    return top


def _env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_install_then_uninstall_leaves_the_users_projects_and_data(archive, tmp_path):
    top = _unpack(archive, tmp_path / "unpacked")
    assert top.name.startswith("tdri-studio-9.9.9-linux-")
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["sh", str(top / "install.sh")], env=_env(home), check=True, capture_output=True)

    prefix = home / ".local/opt/tdri-studio"
    app = prefix / "tdri-studio" / "tdri-studio"
    desktop = home / ".local/share/applications/tdri-studio.desktop"
    icon = home / ".local/share/icons/hicolor/scalable/apps/tdri-studio.svg"
    link = home / ".local/bin/tdri-studio"
    assert app.is_file() and os.access(app, os.X_OK)
    assert all(p.stat().st_mode & 0o222 == 0 for p in (prefix / "tdri-studio").rglob("*"))  # read-only
    assert f'Exec="{app}" %F' in desktop.read_text() and "Icon=tdri-studio" in desktop.read_text()
    assert icon.read_bytes() == paths.resource_path("icons", "app.svg").read_bytes()
    out = subprocess.run([str(link), "--self-test"], env=_env(home), capture_output=True, text=True)
    assert out.stdout.strip() == "fake studio --self-test"

    # what the app writes while in use lives outside the prefix
    data = home / ".local/share/tdri-studio"
    (data / "models").mkdir(parents=True)
    (data / "studio.json").write_text("{}")
    project = home / "TDRI Projects" / "mine"
    project.mkdir(parents=True)
    (project / "project.json").write_text("{}")

    done = subprocess.run(
        ["sh", str(prefix / "uninstall.sh")], env=_env(home), check=True, capture_output=True, text=True
    )
    assert "Left in place" in done.stdout
    assert not prefix.exists() and not desktop.exists() and not icon.exists() and not link.is_symlink()
    assert (project / "project.json").read_text() == "{}"
    assert (data / "studio.json").exists() and (data / "models").is_dir()


def test_install_to_a_given_prefix_with_a_space_and_reinstall_over_it(archive, tmp_path):
    top = _unpack(archive, tmp_path / "unpacked")
    home = tmp_path / "home"
    home.mkdir()
    prefix = tmp_path / "opt dir" / "tdri"
    for _ in range(2):  # the second run replaces the read-only first install
        subprocess.run(
            ["sh", str(top / "install.sh"), str(prefix)], env=_env(home), check=True, capture_output=True
        )
    app = prefix / "tdri-studio" / "tdri-studio"
    desktop = (home / ".local/share/applications/tdri-studio.desktop").read_text()
    assert f'Exec="{app}" %F' in desktop
    out = subprocess.run(
        ["sh", "-c", desktop.split("Exec=")[1].split(" %F")[0]], capture_output=True, text=True
    )
    assert out.stdout.strip() == "fake studio"
    subprocess.run(["sh", str(prefix / "uninstall.sh")], env=_env(home), check=True, capture_output=True)
    assert not prefix.exists()


def test_install_refuses_a_prefix_that_holds_something_else(archive, tmp_path):
    top = _unpack(archive, tmp_path / "unpacked")
    home = tmp_path / "home"
    home.mkdir()
    prefix = tmp_path / "precious"
    prefix.mkdir()
    (prefix / "thesis.txt").write_text("keep me")
    run = subprocess.run(
        ["sh", str(top / "install.sh"), str(prefix)], env=_env(home), capture_output=True, text=True
    )
    assert run.returncode == 1 and "not a TDRI Studio install" in run.stderr
    assert (prefix / "thesis.txt").read_text() == "keep me" and len(list(prefix.iterdir())) == 1


def test_bundle_sizes_are_split_into_torch_cuda_qt_models_ours_and_the_rest(tmp_path):
    from tdri_engine.packaging.build import measure

    files = {
        "tdri-studio": 4000,
        "_internal/resources/style.qss": 1000,
        "_internal/tdri_studio-0.1.0.dist-info/METADATA": 1000,
        "_internal/torch/lib/libtorch_cpu.so": 5_000_000,
        "_internal/torch/lib/libc10.so": 1_000_000,
        "_internal/nvidia/cublas/lib/libcublas.so.13": 3_000_000,
        "_internal/torch/lib/libcudnn.so.9": 2_000_000,
        "_internal/PySide6/Qt/plugins/platforms/libqxcb.so": 500_000,
        "_internal/libQt6Core.so.6": 500_000,
        "_internal/demo_models/pose/model.safetensors": 700_000,
        "_internal/numpy/_core/_multiarray_umath.so": 300_000,
    }
    for rel, size in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"\0" * size)
    m = measure(tmp_path)
    parts = m["parts"]
    assert {k: v["files"] for k, v in parts.items()} == {
        "models": 1, "cuda": 2, "torch": 2, "qt": 2, "ours": 3, "other": 1,
    }  # fmt: skip
    assert parts["cuda"]["mb"] == 5.0 and parts["torch"]["mb"] == 6.0 and parts["models"]["mb"] == 0.7
    assert m["total"] == {"files": 11, "mb": round(sum(files.values()) / 1e6, 1)}
    assert list(m["largest_other"]) == ["_internal/numpy"]
