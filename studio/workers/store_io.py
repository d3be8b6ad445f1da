"""The studio's one thread for project-store I/O off the GUI thread.

Opening, creating and closing projects, reading a dialogue's rounds and decoding images run
here, one at a time, in a thread named ``tdri-store-io``: a log line or a stack dump says
which work it was, and closing a project (queued behind everything submitted before it) can
never overtake a read of that project. The engine thread is the store's only other user
outside the GUI thread; the main window waits for its jobs before it closes a project.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

THREAD_NAME = "tdri-store-io"
_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The executor (created on first use; one worker, so submitted work keeps its order)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
    return _executor


async def run(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in the store I/O thread and await its result (or its exception)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor(), fn, *args)
