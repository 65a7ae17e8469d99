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

from sqlalchemy import Engine, bindparam, delete, insert, or_, update
from sqlmodel import Session, col, select

from handlers import leases
from handlers.protocol import Outgoing, from_json, to_json
from storage.db import session
from storage.models import Outbox
from storage.prepared import insert_many

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
FIRST_PAUSE = timedelta(seconds=5)
LEASE = timedelta(seconds=60)
_TABLE = Outbox.__table__  # type: ignore[attr-defined]
_MARK_SENT = (update(_TABLE).where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.sent_at.is_(None))
              .values(sent_at=bindparam("now")))


def put(db: Session, actions: list[Outgoing], now: datetime, *, owner: str | None = None,
        lease: timedelta = LEASE) -> list[int]:
    """Queue actions inside the caller's transaction: they are sent only if the transaction commits.
    With `owner`, the rows are leased to that process from the start (it posts them itself right away)."""
    if not actions:
        return []
    rows = [{"service": a.service, "payload": to_json(a), "next_at": now, "created_at": now, "attempts": 0,
             "given_up": False, "claimed_by": owner, "claimed_until": now + lease if owner else None}
            for a in actions]
    if owner is None:  # the sweep's reminders: many rows at once, nobody waiting on their ids
        db.connection().execute(insert(_TABLE), rows)
        return []
    return insert_many(db, Outbox, rows)  # a busy moment's replies: the hot path


class Taken:
    """Actions being handed back from the outbox right now: their rows, how often each was tried, and which
    rows a transport adopted (it marks them sent or parks them itself, one by one)."""

    def __init__(self, rows: list[tuple[int, Outgoing, int]]) -> None:
        self.rows = tuple(rows)
        self.adopted: set[int] = set()


# A transport that parks one again continues its count, so an action that always fails is given up in the
# end; one that goes out is marked sent at once, so a crash later in the batch does not send it again.
_retrying: ContextVar[Taken | None] = ContextVar("retrying", default=None)


def taken_row(action: Outgoing, *, adopt: bool = False) -> tuple[int, int] | None:
    """The outbox row and earlier attempts of an action being handed back now, if it is one. Read it on the
    event loop, where the delivery runs: a worker thread does not see the delivery's context. `adopt`: the
    caller settles that row itself; two equal actions (the same reminder queued twice) adopt a row each."""
    taken = _retrying.get()
    if taken is None:
        return None
    found = next(((row_id, tried) for row_id, earlier, tried in taken.rows
                  if replace(earlier, service=action.service) == action
                  and not (adopt and row_id in taken.adopted)), None)
    if found is not None and adopt:
        taken.adopted.add(found[0])
    return found


def mark_sent(engine: Engine, row_id: int, now: datetime) -> None:
    """One action went out: mark it at once, in one statement (a busy lane renews its leases meanwhile)."""
    with session(engine) as db:
        mark_sent_in(db, row_id, now)
        db.commit()


def mark_sent_in(db: Session, row_id: int, now: datetime) -> None:
    db.connection().execute(_MARK_SENT, {"row_id": row_id, "now": now})


def park(engine: Engine, action: Outgoing, error: str, now: datetime, tried: int | None = None) -> int:
    """A transport could not send `action`: keep it and try again after a pause that doubles each time.
    `tried`: how often it was tried before, when it came from the outbox (see `taken_row`)."""
    if tried is None:
        taken = _retrying.get()
        tried = next((n for _, earlier, n in taken.rows if replace(earlier, service=action.service) == action),
                     None) if taken else None
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
def retrying(taken: list[tuple[int, Outgoing, int]]) -> Iterator[Taken]:
    """While delivering actions taken from the outbox, remember how often each was tried."""
    current = Taken(taken)
    token = _retrying.set(current)
    try:
        yield current
    finally:
        _retrying.reset(token)


def retry_later(engine: Engine, row_id: int, error: str, now: datetime, *, behind: int | None = None) -> datetime:
    """A leased row could not be posted: it waits twice as long as the last time (given up in the end).
    `behind`: a row that only waits behind another one of its lane; it keeps its count and comes back
    with that one. Returns when it is due again."""
    with session(engine) as db:
        row = db.get(Outbox, row_id)
        if row is None or row.sent_at is not None:
            return now
        if behind is None:
            _back_off(row, error, now)
        else:
            ahead = db.get(Outbox, behind)
            row.next_at = max(row.next_at, ahead.next_at if ahead else now)
            row.error = error[:500]
        row.claimed_by, row.claimed_until = None, None
        db.add(row)
        db.commit()
        return row.next_at


def _back_off(row: Outbox, error: str, now: datetime) -> None:
    """A try failed: the row waits twice as long as the last time, and is given up after `MAX_ATTEMPTS`."""
    row.attempts += 1
    row.error = error[:500]
    row.given_up = row.attempts >= MAX_ATTEMPTS
    row.next_at = now + FIRST_PAUSE * (2**row.attempts)
    if row.given_up:
        log.error("gave up on %s after %s attempts: %s", row.payload.get("text", {}).get("key"), row.attempts, error)


def renew(engine: Engine, row_ids: list[int], owner: str, now: datetime, lease: timedelta = LEASE) -> None:
    """A process still busy posting these rows keeps its lease on them."""
    if row_ids:
        with session(engine) as db:
            db.execute(update(Outbox).where(col(Outbox.id).in_(row_ids), col(Outbox.claimed_by) == owner,
                                            col(Outbox.sent_at).is_(None)).values(claimed_until=now + lease))
            db.commit()


def release(engine: Engine, row_ids: list[int], owner: str) -> None:
    """A process stopping hands its unsent rows back at once, instead of when the lease runs out."""
    if row_ids:
        with session(engine) as db:
            db.execute(update(Outbox).where(col(Outbox.id).in_(row_ids), col(Outbox.claimed_by) == owner,
                                            col(Outbox.sent_at).is_(None)).values(claimed_by=None,
                                                                                  claimed_until=None))
            db.commit()


def claim(engine: Engine, owner: str, now: datetime, *, lease: timedelta = LEASE, limit: int = 200,
          service: str | None = None) -> list[tuple[int, Outgoing, int]]:
    """Take the actions that are due for `owner` to deliver. Another instance skips them until the lease
    runs out (at once when it was held by a process of this machine that is gone), so a process killed
    mid-delivery loses nothing: its rows are taken over. Each comes with the
    number of times it was tried before."""
    with session(engine) as db:
        holders = db.exec(select(Outbox.claimed_by).distinct().where(
            col(Outbox.sent_at).is_(None), col(Outbox.claimed_by).is_not(None), col(Outbox.claimed_until) >= now))
        dead = [holder for holder in holders if holder != owner and leases.gone(holder)]
        query = (
            select(Outbox)
            .where(col(Outbox.sent_at).is_(None), col(Outbox.given_up).is_(False), Outbox.next_at <= now,
                   or_(col(Outbox.claimed_until).is_(None), col(Outbox.claimed_until) < now,
                       col(Outbox.claimed_by).in_(dead)))
            .order_by(col(Outbox.id))
            .limit(limit)
        )
        if service is not None:
            query = query.where(Outbox.service == service)
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
                _back_off(row, error, now)
                row.claimed_until = None
            db.add(row)
        db.commit()


def recently_sent(engine: Engine, service: str, since: datetime) -> list[tuple[str, datetime]]:
    """The chats this service posted into since `since`, one entry a message (a restart's rate limiter
    starts from what its predecessor sent)."""
    with session(engine) as db:
        rows = db.exec(select(Outbox.payload, Outbox.sent_at).where(
            Outbox.service == service, col(Outbox.sent_at) >= since).order_by(col(Outbox.sent_at)))
        return [(str(payload.get("chat_id") or ""), sent_at) for payload, sent_at in rows
                if payload.get("chat_id") and payload.get("kind") in ("send", "card") and sent_at is not None]


def prune(engine: Engine, now: datetime, keep: timedelta = timedelta(days=2)) -> int:
    """Forget messages sent more than `keep` ago (what was given up stays, to be looked into)."""
    with session(engine) as db:
        gone = db.execute(delete(Outbox).where(col(Outbox.sent_at) < now - keep))
        db.commit()
        return int(gone.rowcount)  # type: ignore[attr-defined]

