"""A keyed work queue with controller-runtime's guarantees (client-go `util/workqueue`):

- a key waits in the queue at most once: a burst of events for one LLMDeployment costs one
  reconcile (coalescing);
- a key is never handed to two workers at once: a key added while it is being processed is
  queued again once that finishes, so the next reconcile sees the newest state;
- each entry remembers the strongest need asked for it (a full reconcile beats a status
  refresh), so coalescing never downgrades a request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Hashable, Optional

STATUS, FULL = 1, 2  # what a key needs: refresh status only, or apply children too


@dataclass
class QueueStats:
    added: int = 0       # add() calls
    coalesced: int = 0   # add() calls absorbed by an entry already waiting or running


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._dirty: dict[Hashable, int] = {}   # waiting (or re-queued while running) -> need
        self._processing: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.stats = QueueStats()

    def add(self, key: Hashable, need: int = FULL) -> None:
        self.stats.added += 1
        if key in self._dirty:
            self.stats.coalesced += 1
            self._dirty[key] = max(self._dirty[key], need)
            return
        self._dirty[key] = need
        if key in self._processing:
            self.stats.coalesced += 1
            return  # done() re-queues it
        self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float, need: int = FULL) -> None:
        """Add `key` after `delay` seconds (drift checks, retries); a later call replaces an earlier one."""
        if (old := self._timers.pop(key, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire, key, need)

    def _fire(self, key: Hashable, need: int) -> None:
        self._timers.pop(key, None)
        self.add(key, need)

    def forget(self, key: Hashable) -> None:
        """The object is gone: drop its timer (a waiting entry is dropped by the worker)."""
        if (old := self._timers.pop(key, None)) is not None:
            old.cancel()

    async def get(self) -> tuple[Hashable, int]:
        """The next key and its need; the caller owns the key until done(key)."""
        key = await self._queue.get()
        need = self._dirty.pop(key, FULL)
        self._processing.add(key)
        return key, need

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def pending(self) -> int:
        return self._queue.qsize()

    def busy(self, key: Optional[Hashable] = None) -> bool:
        return key in self._processing if key is not None else bool(self._processing)
