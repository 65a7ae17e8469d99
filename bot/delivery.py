"""Posting a transport's actions in order, and parking what cannot go now — shared by every transport.

What cannot be posted now is parked in the outbox (the scheduler's `deliver_due` hands it back to the
transport later), and so is everything after it in the same chat, about the same order or for the same
person, so nobody reads their messages out of order. An edit waits behind a card that is still parked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from sqlalchemy import Engine

from handlers import outbox
from handlers.clock import Clock
from handlers.protocol import Kind, Outgoing
from scheduler.sweep import Offload, inline

log = logging.getLogger(__name__)


class Undeliverable(Exception):
    """A call that failed for now (rate limit past its budget, network, server down): park the action."""

    def __init__(self, message: str, *, limited: bool = False) -> None:
        super().__init__(message)
        self.limited = limited  # every other call would fail as well right now


def lanes(action: Outgoing) -> set[str]:
    """What an action must stay in order with: its chat, its order, the person a direct message is for."""
    found = set()
    if action.chat_id:
        found.add(f"chat:{action.chat_id}")
    if action.order_id is not None:
        found.add(f"order:{action.order_id}")
    if action.kind is Kind.DIRECT:
        found.add(f"person:{action.person_id}")
    return found


class InOrder:
    """One transport's outbound queue discipline."""

    def __init__(self, service: str, engine: Engine, clock: Clock, *, name: str, offload: Offload = inline) -> None:
        self.service, self.engine, self.clock, self.name = service, engine, clock, name
        self.offload = offload  # the core's worker thread: parking writes to the database, off the event loop
        self.parked = 0  # actions left in the outbox for a later try
        self.unposted: set[int] = set()  # orders whose card is parked: their edits wait behind it
        self.lock = asyncio.Lock()

    async def run(self, actions: list[Outgoing], carry: Callable[[Outgoing], Awaitable[None]], *,
                  dropped: tuple[type[Exception], ...] = (), kept: tuple[type[Exception], ...] = ()) -> None:
        """Carry out `actions` in order. `dropped` errors mean the request itself is wrong (trying again won't
        help); `kept` errors park the action like `Undeliverable` does."""
        async with self.lock:
            blocked: dict[str, str] = {}
            for action in actions:
                its_lanes = lanes(action)
                reason = blocked.get("*") or next((blocked[lane] for lane in its_lanes if lane in blocked), None)
                if reason is None and action.kind is Kind.UPDATE_CARD and action.order_id in self.unposted:
                    reason = "its card is parked"  # edited after the card is posted, not before
                if reason is None:
                    try:
                        await carry(action)
                        await self._sent(action)
                        continue
                    except dropped as error:
                        log.warning("%s: refused %s: %s", self.name, action.text.key, error)
                        continue
                    except Undeliverable as error:
                        reason = str(error)
                        if error.limited:
                            blocked["*"] = reason
                    except kept as error:
                        reason = f"{type(error).__name__}: {error}"
                    except Exception as error:
                        log.exception("%s: could not post %s", self.name, action.text.key)
                        reason = repr(error)
                    blocked.update(dict.fromkeys(its_lanes, reason))
                await self.park(action, reason)

    async def _sent(self, action: Outgoing) -> None:
        """An action handed back from the outbox went out: its row is marked at once, not after the batch."""
        if (taken := outbox.taken_row(action)) is not None:
            await self.offload(outbox.mark_sent, self.engine, taken[0], self.clock.now())

    async def park(self, action: Outgoing, error: str) -> None:
        if action.kind is Kind.CARD and action.order_id is not None:
            self.unposted.add(action.order_id)
        taken = outbox.taken_row(action)  # read here, on the loop: the worker does not see this context
        # marked as this transport's, so the retry comes back to it only
        await self.offload(outbox.park, self.engine, replace(action, service=self.service), error, self.clock.now(),
                           taken[1] if taken else None)
        if taken is not None:  # the parked copy stands for it from now on
            await self.offload(outbox.mark_sent, self.engine, taken[0], self.clock.now())
        self.parked += 1
        log.warning("%s: parked %s for later (%s)", self.name, action.text.key, error)

    def posted(self, order_id: int | None) -> None:
        """A card went out: its edits may follow."""
        self.unposted.discard(order_id or 0)
