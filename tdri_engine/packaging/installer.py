"""The Linux installer: a ``.tar.gz`` around the onedir bundle, with ``install.sh`` and ``uninstall.sh``.

Layout of the archive (one top folder, so unpacking never spills into the current folder)::

    tdri-studio-<version>-linux-<arch>/
        tdri-studio/            the onedir bundle (dist/tdri-studio)
        install.sh              ./install.sh [PREFIX]   (default ~/.local/opt/tdri-studio)
        uninstall.sh            also copied to PREFIX/uninstall.sh by install.sh
        tdri-studio.desktop     the menu entry (Exec/TryExec filled in by install.sh)
        tdri-studio.svg         the icon (resources/icons/app.svg)

``install.sh`` copies the bundle to ``PREFIX/tdri-studio``, makes it read-only (the app writes
only to the user's data folder, ``${XDG_DATA_HOME:-~/.local/share}/tdri-studio``: settings,
logs, the demo models' copy; projects go to ``~/TDRI Projects``), links
``~/.local/bin/tdri-studio``, and installs the menu entry and the icon under
``${XDG_DATA_HOME:-~/.local/share}``. It writes ``PREFIX/install-manifest.txt`` listing every
path it created outside the prefix, so ``uninstall.sh`` removes exactly those and the prefix,
and leaves the user's data folder and projects alone (it says where they are). An AppImage was
not made: it needs appimagetool (not on the package registry here) and mounts through FUSE, which
locked-down workstations often lack; a tar.gz needs nothing but tar and sh.
"""

from __future__ import annotations

import io
import platform
import tarfile
from pathlib import Path

APP = "tdri-studio"

DESKTOP = """[Desktop Entry]
Type=Application
Name=TDRI Studio
GenericName=Image refinement and annotation
Comment=Dialogue-driven image generation and preference annotation
Exec=@EXEC@ %F
TryExec=@EXEC@
Icon=tdri-studio
Terminal=false
Categories=Graphics;2DGraphics;RasterGraphics;
StartupWMClass=tdri-studio
"""

INSTALL_SH = r"""#!/bin/sh
# Install TDRI Studio for this user: ./install.sh [PREFIX]   (default: ~/.local/opt/tdri-studio)
# Nothing is written outside PREFIX but the menu entry, the icon and ~/.local/bin/tdri-studio,
# all listed in PREFIX/install-manifest.txt for uninstall.sh.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${1:-"$HOME/.local/opt/tdri-studio"}
SHARE=${XDG_DATA_HOME:-"$HOME/.local/share"}
BIN="$HOME/.local/bin"
APPDIR="$PREFIX/tdri-studio"
[ -x "$HERE/tdri-studio/tdri-studio" ] || { echo "install.sh: no bundle next to me ($HERE/tdri-studio)" >&2; exit 1; }
case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX"; APPDIR="$PREFIX/tdri-studio" ;; esac
if [ -e "$PREFIX" ] && [ ! -f "$PREFIX/install-manifest.txt" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
    echo "install.sh: $PREFIX exists and is not a TDRI Studio install; choose another PREFIX" >&2
    exit 1
fi
if [ -d "$APPDIR" ]; then  # an earlier version: replaced (the user's data is elsewhere)
    chmod -R u+w "$APPDIR"
    rm -rf "$APPDIR"
fi
mkdir -p "$PREFIX" "$SHARE/applications" "$SHARE/icons/hicolor/scalable/apps" "$BIN"
cp -R "$HERE/tdri-studio" "$APPDIR.partial"
mv "$APPDIR.partial" "$APPDIR"
chmod -R a-w "$APPDIR"  # read-only: the app writes only to the user's data folder
cp "$HERE/uninstall.sh" "$PREFIX/uninstall.sh"
chmod 755 "$PREFIX/uninstall.sh"
EXEC="$APPDIR/tdri-studio"
ESCAPED=$(printf '%s' "$EXEC" | sed 's/[\\"`$]/\\&/g')
sed "s|@EXEC@|\"$ESCAPED\"|g" "$HERE/tdri-studio.desktop" > "$SHARE/applications/tdri-studio.desktop"
cp "$HERE/tdri-studio.svg" "$SHARE/icons/hicolor/scalable/apps/tdri-studio.svg"
ln -sfn "$EXEC" "$BIN/tdri-studio"
{
    echo "$SHARE/applications/tdri-studio.desktop"
    echo "$SHARE/icons/hicolor/scalable/apps/tdri-studio.svg"
    echo "$BIN/tdri-studio"
} > "$PREFIX/install-manifest.txt"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$SHARE/applications" >/dev/null 2>&1 || true
echo "TDRI Studio installed in $APPDIR"
echo "Start it from the menu, or run: $BIN/tdri-studio   (check it: $BIN/tdri-studio --self-test)"
echo "Your settings and models' copies: $SHARE/tdri-studio; projects: ~/TDRI Projects"
echo "Uninstall: $PREFIX/uninstall.sh"
"""

UNINSTALL_SH = r"""#!/bin/sh
# Uninstall TDRI Studio: removes the app, its menu entry, icon and launcher link.
# The user's data folder (settings, logs, demo models' copy) and projects are left alone.
set -eu
PREFIX=${1:-$(cd "$(dirname "$0")" && pwd)}
MANIFEST="$PREFIX/install-manifest.txt"
[ -f "$MANIFEST" ] || { echo "uninstall.sh: $PREFIX is not a TDRI Studio install (no install-manifest.txt)" >&2; exit 1; }
while IFS= read -r path; do
    [ -n "$path" ] && rm -f "$path"
done < "$MANIFEST"
[ -d "$PREFIX/tdri-studio" ] && chmod -R u+w "$PREFIX/tdri-studio"
rm -rf "$PREFIX/tdri-studio"
rm -f "$MANIFEST" "$PREFIX/uninstall.sh"
rmdir "$PREFIX" 2>/dev/null || true
SHARE=${XDG_DATA_HOME:-"$HOME/.local/share"}
echo "TDRI Studio removed from $PREFIX."
echo "Left in place: your projects (~/TDRI Projects) and your data folder ($SHARE/tdri-studio)."
"""


def archive_name(version: str, arch: str | None = None) -> str:
    return f"{APP}-{version}-linux-{arch or platform.machine()}"


def make_installer(bundle: Path, icon: Path, out_dir: Path, version: str, *, compresslevel: int = 6) -> Path:
    """Write ``<out_dir>/tdri-studio-<version>-linux-<arch>.tar.gz`` around ``bundle`` (the
    onedir folder holding the ``tdri-studio`` executable); returns its path."""
    bundle, icon = Path(bundle), Path(icon)
    if not (bundle / APP).is_file():
        raise FileNotFoundError(f"{bundle} holds no {APP} executable: build the bundle first")
    top = archive_name(version)
    out = Path(out_dir) / f"{top}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")

    def add_text(tar: tarfile.TarFile, name: str, text: str, mode: int) -> None:
        data = text.encode("utf-8")
        info = tarfile.TarInfo(f"{top}/{name}")
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(tmp, "w:gz", compresslevel=compresslevel) as tar:
        tar.add(bundle, arcname=f"{top}/{APP}")
        add_text(tar, "install.sh", INSTALL_SH, 0o755)
        add_text(tar, "uninstall.sh", UNINSTALL_SH, 0o755)
        add_text(tar, f"{APP}.desktop", DESKTOP, 0o644)
        tar.add(icon, arcname=f"{top}/{APP}.svg")
    tmp.replace(out)
    return out
