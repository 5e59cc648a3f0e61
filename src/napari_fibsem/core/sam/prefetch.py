"""The SAM service's background work: one prefetch thread, its job queue and the in-flight table.

:class:`PrefetchQueue` knows nothing of SAM: it runs jobs through a ``run`` callable on one daemon
thread, never twice for the same key at once, and steps aside while a foreground request
(:meth:`PrefetchQueue.claim`) waits, so the image the person looks at goes first. Every queue whose
thread may still run is closed at interpreter exit (see ``_LIVE``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Queues whose prefetch thread may still run. Python does not wait for daemon threads at exit, and
# one still inside the encoder while the interpreter tears down makes torch's thread pool call
# std::terminate ("terminate called without an active exception"): close them all at exit.
_LIVE: weakref.WeakSet[PrefetchQueue] = weakref.WeakSet()


@atexit.register
def _close_live_queues() -> None:
    for queue in list(_LIVE):
        queue.close()


@dataclass(frozen=True)
class PrefetchProgress:
    """Sent to ``on_progress`` after each prefetch job: ``done`` of ``total`` since the queue was last empty."""

    done: int
    total: int


@dataclass
class Job:
    """One embedding to compute in the background; ``key`` identifies it (content + model + preprocessing)."""

    key: str
    signature: dict[str, Any]
    image: np.ndarray
    tag: Hashable | None


class PrefetchQueue:
    """Pending jobs, the futures of jobs being computed, and the thread that works through them.

    ``lock`` is shared with the owner, so the owner's own bookkeeping and this queue's state change
    under one lock. ``run`` computes a job's result; ``report`` receives a :class:`PrefetchProgress`
    after each job (on the worker thread, outside the lock).
    """

    def __init__(
        self,
        run: Callable[[Job], Any],
        report: Callable[[PrefetchProgress], None],
        lock: threading.Lock,
    ) -> None:
        self._run = run
        self._report = report
        self._cond = threading.Condition(lock)
        self._pending: deque[Job] = deque()
        self._inflight: dict[str, Future] = {}
        self._foreground = 0
        self._worker: threading.Thread | None = None
        self.busy = False  # the worker is computing a job
        self._closed = False
        self._done = 0
        self._total = 0
        _LIVE.add(self)

    # -- foreground requests --------------------------------------------------------------------

    def claim(self, key: str) -> tuple[Future, bool]:
        """Register a foreground request for ``key``; pair every call with :meth:`release`.

        Returns the future to wait on and whether the caller owns it (must compute and resolve it):
        a job being computed is joined, a pending one is taken over. While any request is
        registered the worker starts no new job.
        """
        with self._cond:
            self._foreground += 1
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                for job in list(self._pending):  # the caller takes this one over, now
                    if job.key == key:
                        self._pending.remove(job)
                future = self._inflight[key] = Future()
        return future, owner

    def release(self, key: str, owner: bool) -> None:
        """End a foreground request from :meth:`claim` (its future is resolved or abandoned)."""
        with self._cond:
            self._foreground -= 1
            if owner:
                self._inflight.pop(key, None)
            self._cond.notify_all()

    # -- background jobs ------------------------------------------------------------------------

    def add(self, jobs: Iterable[Job], replace: bool, cached: Callable[[str], bool]) -> int:
        """Queue the jobs not already queued, computing, or ``cached``; returns how many were queued.

        ``replace=True`` drops the jobs still pending first.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("SamService is closed")
            if replace:
                self._drop_pending()
            queued = {j.key for j in self._pending} | set(self._inflight)
            n = 0
            for job in jobs:
                if job.key in queued or cached(job.key):
                    continue
                queued.add(job.key)
                self._pending.append(job)
                self._total += 1
                n += 1
            if n and (self._worker is None or not self._worker.is_alive()):
                self._worker = threading.Thread(target=self._run_worker, name="napari-fibsem-sam-prefetch", daemon=True)
                self._worker.start()
            self._cond.notify_all()
        return n

    def _drop_pending(self) -> int:
        n = len(self._pending)
        self._pending.clear()
        self._total -= n
        if not self.busy:
            self._done = self._total = 0
        return n

    def cancel(self) -> int:
        """Drop pending jobs (a job already running finishes); returns how many were dropped."""
        with self._cond:
            n = self._drop_pending()
            self._cond.notify_all()
        return n

    @property
    def pending(self) -> int:
        """Jobs queued and not started."""
        with self._cond:
            return len(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self.busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _run_worker(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._pending or self._foreground > 0):
                    self._cond.wait()
                if self._closed:
                    return
                job = self._pending.popleft()
                future = self._inflight[job.key] = Future()
                self.busy = True
            try:
                future.set_result(self._run(job))
            except Exception as e:  # reported to whoever waits on it; the worker carries on
                log.exception("SAM prefetch of %s failed", job.tag if job.tag is not None else job.key[:8])
                future.set_exception(e)
            with self._cond:
                self._inflight.pop(job.key, None)
                self.busy = False
                self._done += 1
                progress = PrefetchProgress(self._done, self._total)
                if not self._pending:
                    self._done = self._total = 0
                self._cond.notify_all()
            self._report(progress)

    def close(self) -> None:
        """Stop the worker (after its current job); pending jobs are dropped."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()
