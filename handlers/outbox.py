"""Kept for later: actions a transport could not send yet, and small memos that outlive a restart.

Nothing is lost when a send fails: the action is parked in the database and tried again later.

Transports park what they could not send and ask for what is due; a row is retried with growing
pauses and given up (kept, flagged) after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, or_, update
from sqlmodel import Session, col, select

from handlers.protocol import Outgoing, from_json, to_json
from storage.db import session
from storage.models import Outbox

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
FIRST_PAUSE = timedelta(seconds=5)
LEASE = timedelta(seconds=60)


def put(db: Session, actions: list[Outgoing], now: datetime) -> None:
    """Queue actions inside the caller's transaction: they are sent only if the transaction commits."""
    if actions:
        rows = [{"service": a.service, "payload": to_json(a), "next_at": now, "created_at": now, "attempts": 0,
                 "given_up": False} for a in actions]
        db.connection().execute(insert(Outbox.__table__), rows)  # type: ignore[attr-defined]


# The actions being handed back from the outbox right now: their rows and how often each was tried. A
# transport that parks one again continues its count, so an action that always fails is given up in the
# end; one that goes out is marked sent at once, so a crash later in the batch does not send it again.
_retrying: ContextVar[tuple[tuple[int, Outgoing, int], ...]] = ContextVar("retrying", default=())


def taken_row(action: Outgoing) -> tuple[int, int] | None:
    """The outbox row and earlier attempts of an action being handed back now, if it is one. Read it on the
    event loop, where the delivery runs: a worker thread does not see the delivery's context."""
    return next(((row_id, tried) for row_id, earlier, tried in _retrying.get()
                 if replace(earlier, service=action.service) == action), None)


def mark_sent(engine: Engine, row_id: int, now: datetime, lease: timedelta = LEASE) -> None:
    """One action of a batch went out: mark it now, and renew the lease on what its owner still holds."""
    with session(engine) as db:
        row = db.get(Outbox, row_id)
        if row is None or row.sent_at is not None:
            return
        row.sent_at = now
        db.add(row)
        if row.claimed_by:
            db.execute(update(Outbox).where(col(Outbox.claimed_by) == row.claimed_by, col(Outbox.sent_at).is_(None),
                                            col(Outbox.given_up).is_(False)).values(claimed_until=now + lease))
        db.commit()


def park(engine: Engine, action: Outgoing, error: str, now: datetime, tried: int | None = None) -> int:
    """A transport could not send `action`: keep it and try again after a pause that doubles each time.
    `tried`: how often it was tried before, when it came from the outbox (see `taken_row`)."""
    if tried is None:
        tried = next((n for _, earlier, n in _retrying.get() if replace(earlier, service=action.service) == action),
                     None)
    attempts = 0 if tried is None else tried + 1
    with session(engine) as db:
        row = Outbox(service=action.service, payload=to_json(action), attempts=attempts,
                     next_at=now + FIRST_PAUSE * (2**attempts), error=error[:500], created_at=now,
                     given_up=attempts >= MAX_ATTEMPTS)
        db.add(row)
        db.commit()
        if row.given_up:
            log.error("gave up on %s after %s attempts: %s", action.text.key, attempts, error)
        return row.id or 0


@contextmanager
def retrying(taken: list[tuple[int, Outgoing, int]]) -> Iterator[None]:
    """While delivering actions taken from the outbox, remember how often each was tried."""
    token = _retrying.set(tuple(taken))
    try:
        yield
    finally:
        _retrying.reset(token)


def claim(engine: Engine, owner: str, now: datetime, *, lease: timedelta = LEASE,
          limit: int = 200) -> list[tuple[int, Outgoing, int]]:
    """Take the actions that are due for `owner` to deliver. Another instance skips them until the lease
    runs out, so a process killed mid-delivery loses nothing: its rows are taken over. Each comes with the
    number of times it was tried before."""
    with session(engine) as db:
        query = (
            select(Outbox)
            .where(col(Outbox.sent_at).is_(None), col(Outbox.given_up).is_(False), Outbox.next_at <= now,
                   or_(col(Outbox.claimed_until).is_(None), col(Outbox.claimed_until) < now))
            .order_by(col(Outbox.id))
            .limit(limit)
        )
        if db.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = db.exec(query).all()
        for row in rows:
            row.claimed_by, row.claimed_until = owner, now + lease
            db.add(row)
        taken = [(row.id or 0, from_json(row.payload), row.attempts) for row in rows]
        db.commit()
        return taken


def settle(engine: Engine, row_ids: list[int], now: datetime, error: str | None = None) -> None:
    """Record how delivery went: sent, or failed (then wait twice as long, and give up in the end)."""
    if not row_ids:
        return
    with session(engine) as db:  # rows marked sent one by one (`mark_sent`) are settled already
        for row in db.exec(select(Outbox).where(col(Outbox.id).in_(row_ids), col(Outbox.sent_at).is_(None))):
            if error is None:
                row.sent_at = now
            else:
                row.attempts += 1
                row.error = error[:500]
                row.given_up = row.attempts >= MAX_ATTEMPTS
                row.next_at = now + FIRST_PAUSE * (2**row.attempts)
                row.claimed_until = None
            db.add(row)
        db.commit()
