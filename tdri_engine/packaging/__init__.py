"""Packaging of TDRI Studio: the bundled demo models, the PyInstaller build and the Linux installer.

* :mod:`.bundled` — the demo models a packaged build carries (read-only) and their copy into the
  user's data folder on first start.
* :mod:`.build` — ``python -m tdri_engine.packaging.build``: one command from a clean clone to
  ``dist/tdri-studio/`` (PyInstaller, ``build.spec``), its size report and the installer.
* :mod:`.installer` — the ``.tar.gz`` around the onedir bundle with ``install.sh`` and
  ``uninstall.sh``, a ``.desktop`` entry and the icon.

Nothing here imports torch or Qt at import time.
"""
