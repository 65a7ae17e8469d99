"""APScheduler wakes the sweep; the sweep reads the database; transports post what it returns."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from handlers import inbox, leases, outbox
from handlers.clock import Clock
from handlers.turn import Community
from scheduler.sweep import Deliver, Offload, deliver_due, inline, sweep

log = logging.getLogger(__name__)
PRUNE_EVERY = timedelta(hours=1)  # sent messages and handled updates are forgotten after two days


class _SkippedTicks(logging.Filter):
    """A sweep still running when the next tick comes is skipped on purpose (max_instances=1): not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_SkippedTicks())


class SweepRunner:
    """Runs the sweep every `every` seconds on an asyncio loop; a slow run is never doubled."""

    def __init__(self, engine: Engine, community: Community, clock: Clock, deliver: Deliver,
                 every: float = 15.0, lease: timedelta = outbox.LEASE, offload: Offload = inline,
                 owner: str | None = None) -> None:
        self.engine = engine
        self.community = community
        self.clock = clock
        self.deliver = deliver
        self.every = every
        self.lease = lease
        self.offload = offload  # `linli run` passes the core's worker thread: the sweep never runs on the loop
        self.owner = owner or leases.new_owner()  # who holds a lease
        self.runs = 0
        self._pruned: datetime | None = None
        self._ran = asyncio.Condition()
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self._scheduler.add_job(self.tick, "interval", seconds=self.every, max_instances=1, coalesce=True,
                                id="sweep", misfire_grace_time=None)
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def tick(self) -> int:
        delivered = 0
        try:
            now = self.clock.now()
            await self.offload(sweep, self.engine, self.community, now)
            if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
                self._pruned = now
                await self.offload(outbox.prune, self.engine, now)
                await self.offload(inbox.prune, self.engine, now)
            delivered = await deliver_due(self.engine, self.owner, now, self.deliver, lease=self.lease,
                                          offload=self.offload)
        except Exception:
            log.exception("sweep failed; the due rows stay due and are tried again")
        async with self._ran:
            self.runs += 1
            self._ran.notify_all()
        return delivered

    async def wait_runs(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until the scheduler has run the sweep `count` more times (the demo's fast clock)."""
        async with self._ran:
            target = self.runs + count
            await asyncio.wait_for(self._ran.wait_for(lambda: self.runs >= target), timeout)
