"""Coroutines the GUI starts and does not await (a button's action, a project opening).

:meth:`Tasks.spawn` keeps each one alive until it ends (the event loop holds only weak
references to tasks), sends an exception nobody awaited to the studio's one error path
(``studio.error_path``: the log file and the message bar), and :meth:`Tasks.cancel_all`
stops whatever is left when the window closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from studio import error_path


class Tasks:
    def __init__(self, where: str, expected: tuple[type[BaseException], ...] = ()) -> None:
        """``where`` names the owner in the log; ``expected`` exceptions were already shown."""
        self._where = where
        self._expected = expected
        self._live: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        fut = asyncio.ensure_future(coro)
        self._live.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self._live.discard(fut)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None and not isinstance(exc, self._expected):
            error_path.report(exc, self._where)

    def cancel_all(self) -> None:
        for fut in list(self._live):
            fut.cancel()

    def __len__(self) -> int:
        return len(self._live)
