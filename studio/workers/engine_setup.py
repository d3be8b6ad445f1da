"""Which engine the studio makes: the real one of ``tdri_engine.session``, or one a test gives.

The factory is called in the engine thread only (it imports torch).
"""

from __future__ import annotations

from collections.abc import Callable

from tdri_engine.api import EngineAPI
from tdri_engine.settings import EngineSettings

EngineFactory = Callable[[str, EngineSettings], EngineAPI]  # (profile, settings) -> engine


def real_engine_factory(profile: str, settings: EngineSettings) -> EngineAPI:
    """The engine of ``tdri_engine.session`` (imports torch: call only in the engine thread)."""
    from tdri_engine.session import Engine

    return Engine(profile=profile, settings=settings)
