"""A transport's way in: updates stored in the inbox first, then handled in order per chat, chats side by side.

`receive` stores a batch of updates (`handlers.inbox`) and returns only then, so the transport acknowledges
to its service only what is stored. Each update then joins its lane (its chat): a lane handles its updates
one after another, and lanes run concurrently, so a burst in one group does not hold up another. The core
itself runs on one worker thread; what a lane waits on (a service call, the worker) lets others go on.

With several processes on one PostgreSQL (webhooks behind a load balancer), a process holds a lane's
lease while it works on it; updates another process stored are picked up from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from sqlalchemy import Engine
from sqlmodel import Session

from handlers import inbox
from handlers.clock import Clock
from handlers.inbox import Arrival, Stored
from scheduler.sweep import Offload, inline
from storage.db import DATABASE_AWAY

log = logging.getLogger(__name__)
FLUSH_EVERY = 0.2  # seconds: updates that changed nothing are marked handled together
LOOK_EVERY = 1.0  # seconds: how often to look for updates another process stored, or a lane let wait
BATCH = 32  # updates of one chat handled in one transaction when they come in a burst
STORE_TOGETHER = 64  # webhook requests at most whose updates are stored in one transaction
RETRY_PAUSES = (1.0, 4.0)  # seconds before trying a batch that failed again
AWAY_PAUSES = (1.0, 30.0)  # seconds between tries while the database is away: the first, the longest


class InboxLanes:
    """One transport's incoming lanes."""

    def __init__(self, service: str, engine: Engine, clock: Clock, handle: Callable[[list[Stored]], Awaitable[None]], *,
                 owner: str, offload: Offload = inline, name: str = "") -> None:
        self.service, self.engine, self.clock, self.owner = service, engine, clock, owner
        self.handle = handle  # the transport's: stored updates of one lane, in order, through the core
        self.offload = offload
        self.name = name or service
        self.shared = engine.dialect.name == "postgresql"  # other processes may take updates too
        self.received = self.handled = 0
        self._queues: dict[str, deque[Stored]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._known: set[int] = set()  # queued, being handled, or handled and not marked yet
        self._quiet: list[int] = []  # handled here; the core may not have marked them (they changed nothing)
        self._flusher: asyncio.Task[None] | None = None
        self._looker: asyncio.Task[None] | None = None
        self._storing: list[tuple[list[Arrival], asyncio.Future[list[Stored]]]] = []
        self._storer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def receive(self, arrivals: list[Arrival], *, also: Callable[[Session], None] | None = None) -> int:
        """Store updates, then queue them in their lanes. Returns how many were new (the others came twice).
        `also` writes in the same transaction (Matrix's sync token). Without it, what arrives while a store
        is under way (webhook requests side by side) is stored together in the next transaction."""
        if also is not None:
            stored = await self.offload(inbox.store_now, self.engine, self.service, arrivals, self.clock.now(),
                                        also=also)
        else:
            stored = await self._store_together(arrivals)
        self.received += len(stored)
        self.submit(stored)
        return len(stored)

    async def _store_together(self, arrivals: list[Arrival]) -> list[Stored]:
        done: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._storing.append((arrivals, done))
        if self._storer is None or self._storer.done():
            self._storer = asyncio.create_task(self._store_gathered(), name=f"{self.name}-inbox-store")
        return await done

    async def _store_gathered(self) -> None:
        while self._storing:
            group, self._storing = self._storing[:STORE_TOGETHER], self._storing[STORE_TOGETHER:]
            try:
                together = [arrival for arrivals, _ in group for arrival in arrivals]
                stored = await self.offload(inbox.store_now, self.engine, self.service, together, self.clock.now())
            except Exception as error:  # each caller hears it (a webhook answers 500: Telegram sends it again)
                for _, done in group:
                    if not done.done():
                        done.set_exception(error)
                continue
            by_key = {update.key: update for update in stored}
            for arrivals, done in group:
                mine = [by_key.pop(key) for key in (arrival.key[:255] for arrival in arrivals) if key in by_key]
                if not done.done():
                    done.set_result(mine)

    async def recover(self) -> None:
        """Queue what is still waiting in the inbox (a crash, a restart, another process), oldest first."""
        self.submit(await self.offload(inbox.waiting, self.engine, self.service))
        if self._looker is None:  # what another process stored, or a lane could not handle for now
            self._looker = asyncio.create_task(self._look(), name=f"{self.name}-inbox-look")

    def submit(self, stored: list[Stored]) -> None:
        for update in stored:
            if update.id in self._known:
                continue
            self._known.add(update.id)
            self._queues.setdefault(update.lane, deque()).append(update)
            if update.lane not in self._tasks:
                self._tasks[update.lane] = asyncio.create_task(self._drain(update.lane),
                                                               name=f"{self.name}-in-{update.lane}")
                self._idle.clear()

    async def idle(self) -> None:
        """Until every update received so far is handled (tests, `linli bench`)."""
        await self._idle.wait()
        await self._flush()

    async def stop(self) -> None:
        """Stop handling; what is left waits in the inbox for the next start."""
        tasks = [*self._tasks.values(), *(t for t in (self._flusher, self._looker) if t is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()
        self._flusher = self._looker = None
        await self._flush()
        self._idle.set()

    # --- a lane ----------------------------------------------------------------------------
    async def _drain(self, lane: str) -> None:
        queue = self._queues[lane]
        try:
            held_at = 0.0
            while True:
                if self.shared:  # every batch: the lease, and what other processes stored, in the order stored
                    if time.monotonic() - held_at > inbox.LANE_LEASE.total_seconds() / 3:
                        if not await self._hold(lane):
                            break  # another process holds the lane: it handles these, from the database
                        held_at = time.monotonic()
                    await self._merge_waiting(lane, queue)
                if not queue:
                    break
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
                await self._handle(batch)
                self.handled += len(batch)
                self._quiet.extend(update.id for update in batch)
                if self._flusher is None or self._flusher.done():
                    self._flusher = asyncio.create_task(self._flush_soon(), name=f"{self.name}-inbox-flush")
        except asyncio.CancelledError:
            raise
        except Exception:  # the database away while taking the lease: the updates wait there, looked for again
            log.exception("%s: lane %s stopped for now; its updates wait in the inbox", self.name, lane)
        finally:
            for update in queue:  # not handled here: found again in the inbox (`_look`)
                self._known.discard(update.id)
            queue.clear()
            del self._tasks[lane]
            self._queues.pop(lane, None)
            if self.shared:
                with contextlib.suppress(Exception):
                    await self.offload(inbox.let_go, self.engine, self.service, lane, self.owner)
            if not self._tasks:
                self._idle.set()

    async def _merge_waiting(self, lane: str, queue: deque[Stored]) -> None:
        """What other processes stored for this lane (or left when they died) joins the queue, in id order."""
        found = [u for u in await self.offload(inbox.waiting, self.engine, self.service, lane=lane)
                 if u.id not in self._known]
        if found:
            self._known.update(u.id for u in found)
            merged = sorted([*queue, *found], key=lambda u: u.id)
            queue.clear()
            queue.extend(merged)

    async def _handle(self, batch: list[Stored]) -> None:
        """Hand a batch to the transport. While the database is away it is tried again and again (nothing is
        lost); a batch that fails otherwise (a bug) is tried a few times, then let go, logged: a broken update
        must not block its chat for good."""
        pauses, away = iter(RETRY_PAUSES), AWAY_PAUSES[0]
        while True:
            try:
                await self.handle(batch)
                return
            except asyncio.CancelledError:
                raise
            except DATABASE_AWAY as error:
                log.warning("%s: the database is away (%s); trying updates %s again in %.0f s", self.name, error,
                            [u.id for u in batch], away)
                await asyncio.sleep(away)
                away = min(away * 2, AWAY_PAUSES[1])
            except Exception:
                log.exception("%s: could not handle updates %s", self.name, [u.id for u in batch])
                pause = next(pauses, None)
                if pause is None:
                    return
                await asyncio.sleep(pause)

    async def _hold(self, lane: str) -> bool:
        return bool(await self.offload(inbox.hold_lane, self.engine, self.service, lane, self.owner,
                                       self.clock.now()))

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_EVERY)
        await self._flush()

    async def _flush(self) -> None:
        quiet, self._quiet = self._quiet, []
        if quiet:
            await self.offload(inbox.handled, self.engine, quiet, self.clock.now())
            self._known.difference_update(quiet)

    async def _look(self) -> None:
        while True:
            await asyncio.sleep(LOOK_EVERY)
            with contextlib.suppress(Exception):
                self.submit([u for u in await self.offload(inbox.waiting, self.engine, self.service)
                             if u.lane not in self._tasks])
