"""Group commit: many requests' log records made durable by one fsync.

A request appends its record (``Journal.append``, under the service's apply lock, so the
log order is the order in which the engine saw the records), lets go of the lock, and
waits (``await Journal.durable(seq)``) until a sync covers its seq. One flusher thread
syncs in a loop: while one fsync runs (milliseconds on a real disk) the records of other
requests pile up, and the next fsync covers them all, so the cost of durability is one
fsync per group rather than per request, and the event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .storage import Storage

log = logging.getLogger("promobandit.service")


class Journal:
    """Appends records to a Storage and tells waiters when they are durable.

    on_sync: called after each successful sync with (records in the group, seconds it
        took), for metrics.
    """

    def __init__(self, storage: Storage,
                 on_sync: Callable[[int, float], None] | None = None) -> None:
        self.storage = storage
        self.on_sync = on_sync
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by seq
        self._tiebreak = 0
        self._synced = storage.last_seq
        self._failure: BaseException | None = None
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the flusher thread (after recovery, when the log accepts appends)."""
        self._synced = self.storage.last_seq
        if self.storage.needs_sync and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="promobandit-wal-sync",
                                            daemon=True)
            self._thread.start()

    @property
    def failure(self) -> BaseException | None:
        """The sync error that stopped the journal, if any."""
        return self._failure

    def append(self, kind: int, payload: bytes) -> int:
        """Appends a record (not yet durable) and returns its seq. Raises OSError having
        appended nothing (or StorageError once the storage is unusable)."""
        if self._failure is not None:
            raise self._failure
        return self.storage.append(kind, payload)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    async def durable(self, seq: int) -> None:
        """Returns once the record ``seq`` is durable; raises the sync error otherwise."""
        if self._failure is not None:
            raise self._failure
        if seq <= self._synced or not self.storage.needs_sync:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if seq <= self._synced:
                return
            self._tiebreak += 1
            heapq.heappush(self._waiters, (seq, self._tiebreak, fut))
            self._cond.notify()
        await fut

    def wait_durable(self, seq: int, timeout: float | None = None) -> bool:
        """Blocking form of durable(), for threads; False on timeout."""
        if not self.storage.needs_sync:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
            while self._synced < seq:
                if self._failure is not None:
                    raise self._failure
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._waiters and self.storage.last_seq <= self._synced:
                    self._cond.wait()
                if self._stop and not self._waiters:
                    return
            before = self._synced
            t0 = time.perf_counter()
            try:
                synced = self.storage.sync()
            except BaseException as exc:  # every waiter must hear of it
                log.critical("write-ahead log sync failed; no further write is "
                             "acknowledged until a restart recovers: %s", exc)
                with self._cond:
                    self._failure = exc
                    ready = [w for w in self._waiters]
                    self._waiters.clear()
                    self._cond.notify_all()
                self._resolve(ready, exc)
                return
            dt = time.perf_counter() - t0
            with self._cond:
                self._synced = max(self._synced, synced)
                ready = []
                while self._waiters and self._waiters[0][0] <= self._synced:
                    ready.append(heapq.heappop(self._waiters))
                self._cond.notify_all()
            if self.on_sync is not None and synced > before:
                self.on_sync(synced - before, dt)
            self._resolve(ready, None)

    @staticmethod
    def _resolve(ready: list[tuple[int, int, asyncio.Future[None]]],
                 exc: BaseException | None) -> None:
        by_loop: dict[Any, list[asyncio.Future[None]]] = {}
        for _, _, fut in ready:
            by_loop.setdefault(fut.get_loop(), []).append(fut)
        for loop, futs in by_loop.items():
            # One hop into each event loop per group, not one per request.
            try:
                loop.call_soon_threadsafe(_settle, futs, exc)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def stop(self) -> None:
        """Syncs what was appended and stops the flusher."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._failure is None and self.storage.needs_sync:
            try:
                self._synced = self.storage.sync()
            except OSError as exc:
                self._failure = exc


def _settle(futs: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for f in futs:
        if not f.done():
            if exc is None:
                f.set_result(None)
            else:
                f.set_exception(exc)


__all__ = ["Journal"]
