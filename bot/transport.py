"""The one base every chat service stands on (Telegram, Matrix, the console), as opsdroid's connectors do.

A transport is the translation between its service's payloads and Linli's `Incoming` / `Outgoing`, and
little else. What every service needs lives here once: the core awaited on its worker thread, in-order
delivery with parking in the outbox (`bot/delivery.py`), connecting with growing pauses, and a store
for what a transport keeps across restarts, with secrets (access tokens) kept apart from ordinary state.
A new chat service is one module with a subclass of `Transport` and its settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from typing import ClassVar

from sqlalchemy import Engine

from bot.delivery import InOrder
from bot.settings import SettingsError
from handlers.protocol import Outgoing
from handlers.router import Linli
from storage.db import session
from storage.models import Memo

FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0  # seconds between tries to reach a service that is down


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

    def put(self, key: str, value: str) -> None:
        with session(self.engine) as db:
            row = db.get(Memo, (self.scope, key)) or Memo(service=self.scope, key=key, value=value)
            row.value = value
            db.add(row)
            db.commit()


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
        self.outbound = InOrder(self.service, core.engine, core.clock, name=self.title, offload=core.call)
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

    async def deliver(self, actions: list[Outgoing]) -> None:
        """Carry out this service's actions in order; what cannot go now waits in the outbox."""
        mine = [action for action in actions if action.service in ("", self.service)]
        if mine:
            await self.outbound.run(mine, self.carrier(), dropped=self.dropped, kept=self.kept)

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
