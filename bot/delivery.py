"""Posting a transport's actions: one lane per chat (or person), each in order, lanes side by side.

Everything the core says is queued in the outbox before it is posted (`Linli.take`), leased to this
process; a lane posts its rows one after another and marks each sent as soon as it went out, so a crash
repeats at most the one message a lane was posting. Lanes run concurrently: a chat waiting out its rate
limit (Telegram: 20 messages a minute in a group) holds up that chat only.

What cannot be posted now waits in the outbox (the scheduler hands it back later), and so does everything
behind it in its lane, so nobody reads their messages out of order. An edit of a card goes in the lane
of the card's chat, so it never overtakes the card.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine

from handlers import outbox
from handlers.clock import Clock
from handlers.protocol import Kind, Outgoing
from scheduler.sweep import Offload, inline

log = logging.getLogger(__name__)
Carry = Callable[[Outgoing], Awaitable[None]]
RENEW_EVERY = outbox.LEASE.total_seconds() / 4  # a busy lane keeps its lease on what it still has to post


class Undeliverable(Exception):
    """A call that failed for now (rate limit past its budget, network, server down): park the action."""

    def __init__(self, message: str, *, limited: bool = False) -> None:
        super().__init__(message)
        self.limited = limited  # every other call would fail as well right now


@dataclass
class Posting:
    """The outbox row being posted now: how many calls its posting made so far (a service that takes an
    idempotency key, Matrix's transaction id, gets the same one when a restart posts the row again), and
    the messages it became, written with its "sent" mark in one go."""

    row: int
    calls: int = 0
    links: list[tuple[Outgoing, str]] = field(default_factory=list)


_posting: ContextVar[Posting | None] = ContextVar("posting", default=None)


def once_key() -> str | None:
    """A key naming this call of this outbox row's posting, the same on every try; None outside a lane."""
    posting = _posting.get()
    if posting is None:
        return None
    posting.calls += 1
    return f"o{posting.row}-{posting.calls}"


def defer_link(action: Outgoing, message_ref: str) -> bool:
    """Inside a lane posting an outbox row: keep the message it became, to be written with its "sent"
    mark. False elsewhere: then the caller writes it itself."""
    posting = _posting.get()
    if posting is None:
        return False
    posting.links.append((action, message_ref))
    return True


def _behind(row: int | None, ahead: int | None) -> bool:
    """A row handed back from the outbox waits if it came after the one its lane waits on."""
    return row is not None and ahead is not None and row > ahead


def lane_of(action: Outgoing) -> str:
    """The lane an action keeps its order in: its chat; a direct message's person; else its order."""
    if action.kind is Kind.DIRECT:
        return f"person:{action.person_id}"
    if action.chat_id:
        return f"chat:{action.chat_id}"
    return f"order:{action.order_id}"


@dataclass(eq=False)
class Item:
    """One action on its way, with its outbox row when it has one (and how often that was tried)."""

    action: Outgoing
    row: int | None = None
    tried: int | None = None
    done: asyncio.Future[str | None] | None = field(default=None, repr=False)  # for a caller that waits


class Lanes:
    """One transport's outbound lanes."""

    def __init__(self, service: str, engine: Engine, clock: Clock, carrier: Callable[[], Carry], *, name: str,
                 owner: str = "", offload: Offload = inline, mark: Offload | None = None,
                 on_sent: Callable[[int | None, list[tuple[Outgoing, str]]], None] | None = None,
                 dropped: tuple[type[Exception], ...] = (), kept: tuple[type[Exception], ...] = ()) -> None:
        self.service, self.engine, self.clock, self.name, self.owner = service, engine, clock, name, owner
        self.carrier = carrier  # a fresh carry for each run of a lane (Matrix keeps a rate budget per run)
        self.offload = offload  # the core's worker thread: outbox writes off the event loop
        self.mark = mark or offload  # where "sent" is written: at once, not behind the core's work
        self.on_sent = on_sent or self._mark_sent  # writes a row's "sent" mark with the messages it became
        self.dropped, self.kept = dropped, kept  # errors meaning the request is wrong / to park the action for
        self.parked = 0  # actions left in the outbox for a later try
        self.sent = 0
        self._queues: dict[str, deque[Item]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._inline: set[str] = set()  # lanes `run` is posting in here and now: what is submitted waits
        self._rows: set[int] = set()  # outbox rows in a lane now
        self._held: dict[str, tuple[int | None, str]] = {}  # lanes waiting behind a parked row, and why
        self._renewer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # --- in --------------------------------------------------------------------------------
    def submit(self, items: Iterable[Item]) -> None:
        """Queue actions in their lanes and return: each lane posts in the background."""
        for item in items:
            if item.row is not None:
                if item.row in self._rows:
                    self._finish(item, None)
                    continue  # handed back by the scheduler while this process still has it
                self._rows.add(item.row)
            key = lane_of(item.action)
            self._queues.setdefault(key, deque()).append(item)
            if key not in self._tasks and key not in self._inline:
                self._start(key)
        if self._rows and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._renew(), name=f"{self.name}-renew")

    def items(self, actions: Iterable[Outgoing]) -> list[Item]:
        """Actions as lane items; those handed back from the outbox now come with their row, adopted."""
        found = []
        for action in actions:
            taken = outbox.taken_row(action, adopt=True)
            found.append(Item(action, *(taken or (None, None))))
        return found

    async def run(self, actions: list[Outgoing]) -> None:
        """Post `actions` and return when each went out or was parked. A lane that is busy in the background
        takes them at its end; otherwise they go here and now, in order."""
        await self.run_items(self.items(actions))

    async def run_items(self, items: list[Item]) -> None:
        down: str | None = None  # the service refused everything: the rest of the batch waits
        carry = self.carrier()
        for item in items:
            key = lane_of(item.action)
            if key in self._tasks or key in self._inline:
                item.done = asyncio.get_running_loop().create_future()
                self.submit([item])
                await item.done
            elif down is not None:
                await self._park(item, down, behind=None)
            else:
                reason, limited = await self._here(key, item, carry)
                down = reason if limited else None

    async def _here(self, key: str, item: Item, carry: Carry) -> tuple[str | None, bool]:
        """Post one item here and now, holding its lane meanwhile: what is submitted to the lane in the
        meantime goes after it, as a lane posts in order."""
        self._inline.add(key)
        self._idle.clear()
        try:
            return await self._step(key, item, carry)
        except Exception as error:  # as in a lane: what was queued behind it waits behind its row
            self._held[key] = (item.row, repr(error))
            raise
        finally:
            self._inline.discard(key)
            if self._queues.get(key) and key not in self._tasks:
                self._start(key)
            elif not self._tasks and not self._inline:
                self._idle.set()

    def _start(self, key: str) -> None:
        self._tasks[key] = asyncio.create_task(self._drain(key), name=f"{self.name}-{key}")
        self._idle.clear()

    async def idle(self) -> None:
        """Until every lane is empty (tests, `linli bench`)."""
        await self._idle.wait()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop posting, after up to `grace` seconds for the lanes to empty; what was not posted by then is
        handed back to the outbox for the next process."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), grace)
        tasks = [*self._tasks.values(), *([self._renewer] if self._renewer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._rows and self.owner:
            await self.offload(outbox.release, self.engine, sorted(self._rows), self.owner)
        self._rows.clear()
        for queue in self._queues.values():  # waiting behind a post `run` made here: not posted, and said so
            for item in queue:
                self._finish(item, "stopped")
        self._queues.clear()
        self._tasks.clear()
        self._idle.set()

    # --- a lane ----------------------------------------------------------------------------
    async def _drain(self, key: str) -> None:
        queue, carry = self._queues[key], self.carrier()
        try:
            while queue:
                item = queue.popleft()
                try:
                    await self._step(key, item, carry)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the outbox could not be written (the database away): the row
                    # stays unsent and unrenewed, so the scheduler hands it back when its lease runs out
                    log.exception("%s: could not settle %s", self.name, item.action.text.key)
                    self._rows.discard(item.row or 0)
                    self._held[key] = (item.row, repr(error))
                    self._finish(item, repr(error))
        finally:
            for item in queue:  # cancelled: whoever waits on one hears it was not posted
                self._finish(item, "stopped")
            del self._tasks[key]
            if not queue:
                self._queues.pop(key, None)
            if not self._tasks and not self._inline:
                self._idle.set()

    async def _step(self, key: str, item: Item, carry: Carry) -> tuple[str | None, bool]:
        """Post one item of lane `key`, unless the lane waits behind a parked one: then it waits too. An item
        handed back from the outbox goes, unless it came after the one its lane now waits on."""
        held = self._held.get(key)
        if held is not None and (item.tried is None or _behind(item.row, held[0])):
            ahead, reason = held
            await self._park(item, reason, behind=ahead)
            self._held[key] = (item.row or ahead, reason)
            self._finish(item, reason)
            return reason, False
        self._held.pop(key, None)
        reason, limited = await self._post(item, carry)
        if reason is not None:
            self._held[key] = (item.row, reason)
        return reason, limited

    async def _post(self, item: Item, carry: Carry) -> tuple[str | None, bool]:
        """Post one item; mark its row sent, or park it. Returns why it could not go, and whether nothing
        else can go either right now."""
        action, reason, limited = item.action, None, False
        posting = Posting(item.row) if item.row is not None else None
        token = _posting.set(posting)
        try:
            await carry(action)
        except self.dropped as error:
            log.warning("%s: refused %s: %s", self.name, action.text.key, error)
        except Undeliverable as error:
            reason, limited = str(error), error.limited
        except self.kept as error:
            reason = f"{type(error).__name__}: {error}"
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("%s: could not post %s", self.name, action.text.key)
            reason = repr(error)
        finally:
            _posting.reset(token)
        if posting is not None and (reason is None or posting.links):  # what went out is written at once
            await self.mark(self.on_sent, posting.row if reason is None else None, posting.links)
        if reason is None:
            self.sent += 1
            self._rows.discard(item.row or 0)
        else:
            await self._park(item, reason, behind=None)
        self._finish(item, reason)
        return reason, limited

    async def _park(self, item: Item, reason: str, *, behind: int | None) -> None:
        now = self.clock.now()
        if item.row is not None:
            await self.offload(outbox.retry_later, self.engine, item.row, reason, now, behind=behind)
            self._rows.discard(item.row)
        else:  # marked as this transport's, so the retry comes back to it only
            await self.offload(outbox.park, self.engine, replace(item.action, service=self.service), reason, now,
                               item.tried)
        self.parked += 1
        log.warning("%s: parked %s for later (%s)", self.name, item.action.text.key, reason)

    def _mark_sent(self, row: int | None, links: list[tuple[Outgoing, str]]) -> None:
        if row is not None:
            outbox.mark_sent(self.engine, row, self.clock.now())

    @staticmethod
    def _finish(item: Item, reason: str | None) -> None:
        if item.done is not None and not item.done.done():
            item.done.set_result(reason)

    async def _renew(self) -> None:
        while self._rows:
            await asyncio.sleep(RENEW_EVERY)
            with contextlib.suppress(Exception):
                await self.offload(outbox.renew, self.engine, sorted(self._rows), self.owner, self.clock.now())
