"""Server-Sent Events: the job list and single jobs, pushed when the database changes.

One watcher per server reads SQLite's ``PRAGMA data_version`` (it moves whenever any other connection,
a worker's included, commits) ten times a second and wakes the waiting streams; the page itself never
polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from masquerade.studio.store import JobStore

WATCH_EVERY_S = 0.1
KEEPALIVE_S = 15.0


class Changes:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.version = 0
        self.closed = False
        self._condition: asyncio.Condition | None = None

    async def run(self) -> None:
        self._condition = asyncio.Condition()
        db = self.store.watcher()
        last = None
        try:
            while not self.closed:
                current = db.execute("PRAGMA data_version").fetchone()[0]
                if current != last:
                    last = current
                    await self._bump()
                await asyncio.sleep(WATCH_EVERY_S)
        finally:
            db.close()

    async def _bump(self) -> None:
        self.version += 1
        if self._condition is not None:
            async with self._condition:
                self._condition.notify_all()

    async def close(self) -> None:
        self.closed = True
        await self._bump()

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait until the version moves past ``seen``; False on timeout."""
        if self._condition is None:
            await asyncio.sleep(timeout)
            return False
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            async with self._condition:
                await asyncio.wait_for(self._condition.wait_for(lambda: self.version != seen or self.closed),
                                       timeout)
                return True
        return False

    async def stream(self, event: str, read: Callable[[], Awaitable[Any]],
                     is_disconnected: Callable[[], Awaitable[bool]],
                     last: Callable[[Any], bool] = lambda value: False) -> AsyncIterator[str]:
        """``event`` with ``read()``'s JSON each time it changes; ends after a value ``last`` accepts,
        when ``read()`` gives None (``deleted``), on disconnect or server shutdown."""
        sent = None
        yield "retry: 1000\n\n"
        while not self.closed:
            seen = self.version
            value = await read()
            if value is None:
                yield "event: deleted\ndata: {}\n\n"
                return
            payload = json.dumps(value, separators=(",", ":"))
            if payload != sent:
                yield f"event: {event}\ndata: {payload}\n\n"
                sent = payload
            if last(value):
                return
            if not await self.wait(seen, KEEPALIVE_S):
                yield ": keep-alive\n\n"
            if await is_disconnected():
                return
