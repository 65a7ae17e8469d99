"""Kept for later: actions a transport could not send yet, and small memos that outlive a restart.

Nothing is lost when a send fails: the action is parked in the database and tried again later.

Transports park what they could not send and ask for what is due; a row is retried with growing
pauses and given up (kept, flagged) after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from handlers.protocol import Outgoing, from_json, to_json
from storage.db import session
from storage.models import Memo, Outbox

MAX_ATTEMPTS = 8
FIRST_PAUSE = timedelta(seconds=5)


def park(engine: Engine, action: Outgoing, error: str, now: datetime, *, service: str | None = None) -> int:
    with session(engine) as db:
        row = Outbox(service=service or action.service, payload=to_json(action), next_at=now + FIRST_PAUSE,
                     error=error[:500], created_at=now)
        db.add(row)
        db.commit()
        return row.id or 0


def due(engine: Engine, service: str, now: datetime, limit: int = 50) -> list[tuple[int, Outgoing]]:
    with session(engine) as db:
        rows = db.exec(
            select(Outbox)
            .where(Outbox.service == service, col(Outbox.sent_at).is_(None), col(Outbox.given_up).is_(False),
                   Outbox.next_at <= now)
            .order_by(col(Outbox.id))
            .limit(limit)
        ).all()
        return [(row.id or 0, from_json(row.payload)) for row in rows]


def settle(engine: Engine, row_id: int, now: datetime, error: str | None = None) -> None:
    """Record how a retry went: sent, or failed again (then wait twice as long)."""
    with session(engine) as db:
        row = db.get(Outbox, row_id)
        if row is None:
            return
        if error is None:
            row.sent_at = now
        else:
            row.attempts += 1
            row.error = error[:500]
            row.given_up = row.attempts >= MAX_ATTEMPTS
            row.next_at = now + FIRST_PAUSE * (2**row.attempts)
        db.add(row)
        db.commit()


def remember(engine: Engine, service: str, key: str, value: str) -> None:
    with session(engine) as db:
        row = db.get(Memo, (service, key)) or Memo(service=service, key=key, value=value)
        row.value = value
        db.add(row)
        db.commit()


def recall(engine: Engine, service: str, key: str) -> str | None:
    with session(engine) as db:
        row = db.get(Memo, (service, key))
        return row.value if row else None
