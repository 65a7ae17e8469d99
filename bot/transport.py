"""The one base every chat service stands on (Telegram, Matrix, the console), as opsdroid's connectors do.

A transport is the translation between its service's payloads and Linli's `Incoming` / `Outgoing`, and
little else. What every service needs lives here once: updates stored in the inbox before they are
acknowledged and handled in order per chat (`bot/inbox.py`), the core awaited on its worker thread, what
it says queued in the outbox and posted in per-chat lanes with parking (`bot/delivery.py`), connecting
with growing pauses, and a store for what a transport keeps across restarts, with secrets (access
tokens) kept apart from ordinary state.
A new chat service is one module with a subclass of `Transport` and its settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from typing import ClassVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.delivery import Item, Lanes, defer_link
from bot.inbox import InboxLanes
from bot.settings import SettingsError
from handlers import outbox
from handlers.inbox import Stored
from handlers.protocol import Incoming, Outgoing
from handlers.router import Linli, Queued
from storage.db import session
from storage.models import Memo

FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0  # seconds between tries to reach a service that is down
HANDLING_GRACE = 30.0  # seconds a stop lets the updates received be handled (the rest waits in the inbox)
SENDING_GRACE = 10.0  # seconds a stop waits for what is being posted (the rest waits in the outbox)


class LoginFailed(SettingsError):
    """The service refused the bot's credentials: `linli run` stops with this one line."""


class TransportState:
    """What one transport keeps across restarts: a sync token, usernames it met, notices it gave.

    Secrets (an access token) are kept in a `TransportState` of their own (`secret=True`), under another
    name, so what holds ordinary state never carries them."""

    def __init__(self, engine: Engine, service: str, *, secret: bool = False) -> None:
        self.engine = engine
        self.scope = f"{service}:secret" if secret else service
        self._legacy = service if secret else None  # earlier versions kept secrets with the ordinary state

    def get(self, key: str) -> str | None:
        with session(self.engine) as db:
            row = db.get(Memo, (self.scope, key))
            if row is None and self._legacy is not None and (old := db.get(Memo, (self._legacy, key))):
                db.add(Memo(service=self.scope, key=key, value=old.value))
                db.delete(old)
                db.commit()
                return old.value or None
            return row.value if row and row.value else None

    def first(self, key: str, value: str) -> str:
        """Keep `value` unless a value is kept already (another process's, started at the same moment);
        returns the one kept."""
        with session(self.engine) as db:
            db.add(Memo(service=self.scope, key=key, value=value))
            try:
                db.commit()
                return value
            except IntegrityError:
                db.rollback()
        return self.get(key) or value

    def put(self, key: str, value: str) -> None:
        with session(self.engine) as db:
            self.put_in(db, key, value)
            db.commit()

    def put_in(self, db: Session, key: str, value: str) -> None:
        """`put` inside the caller's transaction (Matrix's sync token with the events it covers)."""
        row = db.get(Memo, (self.scope, key)) or Memo(service=self.scope, key=key, value=value)
        row.value = value
        db.add(row)


class Transport(ABC):
    """A chat service carrying the loop. Subclasses say how to start, stop and carry one action."""

    service: ClassVar[str]  # the name stored with chats and accounts: "telegram", "matrix", "console"
    title: ClassVar[str]  # for log lines
    dropped: ClassVar[tuple[type[Exception], ...]] = ()  # errors meaning the request itself is wrong
    kept: ClassVar[tuple[type[Exception], ...]] = ()  # errors that park the action for a later try

    def __init__(self, core: Linli) -> None:
        self.core = core
        self.engine = core.engine
        self.state = TransportState(core.engine, self.service)
        self.secrets = TransportState(core.engine, self.service, secret=True)
        self.outbound = Lanes(self.service, core.engine, core.clock, self.carrier, name=self.title, owner=core.owner,
                              offload=core.call, mark=core.aside, on_sent=core.posted, dropped=self.dropped,
                              kept=self.kept)
        self.inbound = InboxLanes(self.service, core.engine, core.clock, self.take_many, owner=core.owner,
                                  offload=core.call, name=self.title)
        self.dispatch: Callable[[list[Queued]], Awaitable[list[Queued]]] = self.post_queued
        self.stopping = asyncio.Event()

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def carry(self, action: Outgoing) -> None:
        """Post one action on the service; raise `Undeliverable` (or a `kept` error) to park it."""

    def carrier(self) -> Callable[[Outgoing], Awaitable[None]]:
        """What carries one batch of actions: `carry`, unless a service keeps state per batch."""
        return self.carry

    async def resume(self) -> None:
        """On starting, before anything new: what a stopped or killed process left queued for this service
        joins the lanes first, so each chat still reads its messages in order."""
        taken = await self.core.call(outbox.claim, self.engine, self.core.owner, self.core.clock.now(),
                                     service=self.service)
        self.outbound.submit(Item(action, row, tried) for row, action, tried in taken)

    async def finish_lanes(self) -> None:
        """On stopping, once nothing new comes in: let the lanes finish for a while; what is left waits in the
        inbox and the outbox for the next start."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.inbound.idle(), HANDLING_GRACE)
        await self.inbound.stop()
        await self.outbound.stop(grace=SENDING_GRACE)

    async def take_many(self, updates: list[Stored]) -> None:
        """Handle updates of one chat from the inbox, in order: translate them and hand them to the core
        (`handle_many`)."""
        raise NotImplementedError(f"{self.title} does not read its updates from the inbox")

    async def handle_many(self, updates: list[tuple[Incoming, Stored]]) -> list[list[Outgoing]]:
        """The core handles stored updates of one chat (with what other chats hand in meanwhile, in one
        transaction: group commit). In it each update's change is stored, the update marked handled and
        what to say queued, which goes to its lanes now. Returns, for each, what is not kept (a press's
        alerts)."""
        if not updates:
            return []
        results = await self.core.take_async([(incoming, stored.id) for incoming, stored in updates])
        await self.dispatch([(row, action) for queued in results for row, action in queued if row is not None])
        return [[action for row, action in queued if row is None] for queued in results]

    async def post_queued(self, queued: list[Queued]) -> list[Queued]:
        """Queue actions kept in the outbox in this transport's lanes; returns those for another service."""
        mine = [(row, action) for row, action in queued if action.service in ("", self.service)]
        self.outbound.submit(Item(action, row) for row, action in mine)
        return [(row, action) for row, action in queued if action.service not in ("", self.service)]

    async def deliver(self, actions: list[Outgoing], *, wait: bool = True) -> None:
        """Carry out this service's actions in order; what cannot go now waits in the outbox. Without `wait`,
        they join their lanes and this returns at once (the scheduler's rows, marked sent as they go)."""
        mine = [action for action in actions if action.service in ("", self.service)]
        if not mine:
            return
        if wait:
            await self.outbound.run(mine)
        else:
            self.outbound.submit(self.outbound.items(mine))

    async def posted(self, action: Outgoing, message_ref: str) -> None:
        """A message went out as `message_ref`: replies to it act on its order from now on. Inside a lane it
        is written together with the row's "sent" mark."""
        if not defer_link(action, message_ref):
            await self.core.aside(self.core.sent, action, message_ref)

    @property
    def parked(self) -> int:
        """Actions left in the outbox for a later try."""
        return self.outbound.parked

    @staticmethod
    def pauses() -> Iterator[float]:
        """Growing pauses between tries to reach a service: 1, 2, 4 … 60 seconds."""
        pause = FIRST_PAUSE
        while True:
            yield pause
            pause = min(pause * 2, LONGEST_PAUSE)

    async def rest(self, pause: float) -> None:
        """Wait `pause` seconds, or less if the transport is being stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), pause)
