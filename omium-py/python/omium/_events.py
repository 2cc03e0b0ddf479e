"""The event feed: every change of the store as a CloudEvent, from a cursor, optionally live.

Events are the store's audit log read as a feed (written in the same batch as each change), so
``event["omiumseq"]`` is a gap-free position a consumer stores as its cursor and passes back as
``since`` after a restart: nothing is lost, and nothing before the cursor comes again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from . import _runtime

_BATCH = 1000
# How long one native call waits for a new event before the iterator checks its own timeout.
_POLL = 1.0


def _page(since: int, limit: int, types: list[str], execution_id: str | None, wait: float) -> tuple[list[dict[str, Any]], int]:
    page = json.loads(_runtime.store().events(since, limit, types, execution_id, wait))
    return page["events"], page["cursor"]


def events(
    since: int = 0,
    *,
    types: Iterable[str] | None = None,
    execution_id: str | None = None,
    limit: int | None = None,
    follow: bool = False,
    timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Yields the events written after the cursor ``since`` (CloudEvents 1.0 as dicts), oldest
    first. ``types`` keeps only those types or families (``"execution.failed"``,
    ``"execution.*"``); ``execution_id`` only one execution's. Without ``follow`` it stops at the
    end of the feed (or after ``limit`` events); with ``follow`` it waits for new events as they
    are written — for ever, or until ``timeout`` seconds pass with none."""
    kinds = list(types or [])
    left = limit if limit is not None else -1
    idle_since = time.monotonic()
    while left != 0:
        want = _BATCH if left < 0 else min(left, _BATCH)
        wait = 0.0
        if follow:
            wait = _POLL if timeout is None else max(0.0, min(_POLL, timeout - (time.monotonic() - idle_since)))
        batch, since = _page(since, want, kinds, execution_id, wait)
        yield from batch
        if left > 0:
            left = max(0, left - len(batch))
        if not follow:
            if len(batch) < want:
                return
        elif batch:
            idle_since = time.monotonic()
        elif timeout is not None and time.monotonic() - idle_since >= timeout:
            return


async def aevents(
    since: int = 0,
    *,
    types: Iterable[str] | None = None,
    execution_id: str | None = None,
    limit: int | None = None,
    follow: bool = False,
    timeout: float | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """:func:`events` as an async iterator: each wait runs in a worker thread, so the event
    loop goes on while the feed is quiet."""
    it = events(since, types=types, execution_id=execution_id, limit=limit, follow=follow, timeout=timeout)
    done = object()
    while True:
        e = await asyncio.to_thread(next, it, done)
        if e is done:
            return
        yield e
