"""Entry point of the packaged build (PyInstaller, see ``build.spec``).

In a frozen app torch is imported before PySide6: both bring native libraries (OpenMP and the
C++ runtime on Linux, the MSVC runtime DLLs on Windows), and loading torch's first is the
order known to work in packaged apps. It costs about two seconds before the window shows, in
the packaged build only; ``tdri-studio`` run from source shows the window first and imports
torch in the engine thread.

Before the window, ``tdri_engine.packaging.bundled.first_start`` copies the bundled demo models
to the user's data folder when they are not there yet, and on an account's first start builds
the sample project: the bundle itself is never written to.
"""

import sys

if getattr(sys, "frozen", False):
    import torch  # noqa: F401  (load order only)

    from tdri_engine.packaging.bundled import first_start

    for note in first_start():  # the bundled demo models copied out; the sample on a first start
        print(note, file=sys.stderr)

from studio.app import main

if __name__ == "__main__":
    sys.exit(main())
