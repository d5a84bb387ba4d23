"""A coroutine that runs in the background of a process until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib


class Background:
    """Subclasses write ``_run``; :meth:`start` runs it as a task, :meth:`stop` cancels it and
    waits until it has ended."""

    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError
