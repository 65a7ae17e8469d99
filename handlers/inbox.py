"""The inbox: every update a chat service sends is stored here before the service is told it arrived.

A transport stores a batch of updates (`store`) and only then acknowledges it (Telegram's offset, a
webhook's 200, Matrix's sync token in the same transaction). Processing reads from here: the core marks
an update handled (`mark_handled`) in the transaction that stores what it changed and queues what to
say, so a crash either lost nothing of it or finished it. A restart goes on with what is still waiting.

Updates of one lane (one chat) are handled in order by one process at a time: with several processes on
one database, a process holds a lane's lease (`hold_lane`) while it works on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, delete, update
from sqlmodel import Session, col, select

from handlers import leases
from storage.db import session
from storage.models import Inbox, LaneLease
from storage.prepared import Prepared
from storage.repo import upsert

LANE_LEASE = timedelta(seconds=30)
_TABLE = Inbox.__table__  # type: ignore[attr-defined]
_MARK = Prepared(update(_TABLE).where(_TABLE.c.id == bindparam("inbox_id"), _TABLE.c.handled_at.is_(None))
                 .values(handled_at=bindparam("now")))
KEEP = timedelta(days=2)  # handled updates are kept this long: Telegram redelivers unconfirmed ones for 24 h


@dataclass(frozen=True, slots=True)
class Arrival:
    """An update as a service sent it: its own id, its lane, and the payload to handle it from."""

    key: str
    lane: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stored:
    """An update in the inbox, waiting to be handled."""

    id: int
    lane: str
    payload: dict[str, Any]
    key: str = ""  # the service's own id of it, as stored


def store(db: Session, service: str, arrivals: list[Arrival], now: datetime) -> list[Stored]:
    """Store updates inside the caller's transaction; one stored before (a second delivery, or the same one
    twice in `arrivals`) is skipped. Returns the new ones, in the order given."""
    rows: dict[str, dict[str, Any]] = {}
    for a in arrivals:
        rows.setdefault(a.key[:255], {"key": a.key[:255], "lane": a.lane[:255], "payload": a.payload})
    given = list(rows.values())
    new: dict[str, int] = {}
    for start in range(0, len(given), STORE_AT_ONCE):  # one statement a chunk, whatever the service sent
        chunk = given[start:start + STORE_AT_ONCE]
        values = {"service": service, "now": now}
        for i, row in enumerate(chunk):
            values.update({f"key_{i}": row["key"], f"lane_{i}": row["lane"], f"payload_{i}": row["payload"]})
        new.update((key, row_id) for row_id, key in _written(db, chunk, values))
    return [Stored(new[row["key"]], row["lane"], row["payload"], row["key"]) for row in given if row["key"] in new]


def _written(db: Session, chunk: list[dict[str, Any]], values: dict[str, Any]) -> list[tuple[int, str]]:
    """Ids and keys of the rows the chunk's INSERT wrote. SQLite is not asked for them with RETURNING (half
    the statement's cost): the rows one INSERT writes get consecutive ids, so when every row was new they
    are the chunk's in order, and when some were stored before, the few written are looked up."""
    storing = _storing(len(chunk))
    if db.get_bind().dialect.name != "sqlite":
        return [(row_id, key) for row_id, key in storing.rows(db, values)]
    ids = storing.ids(db, values)
    if len(ids) == len(chunk):
        return list(zip(ids, (row["key"] for row in chunk), strict=True))
    return [(row_id, key) for row_id, key in _KEYS.rows(db, {"first": ids[0], "last": ids[-1]})] if ids else []


_KEYS = Prepared(select(_TABLE.c.id, _TABLE.c.key).where(_TABLE.c.id.between(bindparam("first"), bindparam("last"))))


STORE_AT_ONCE = 32  # rows in one INSERT


@functools.cache
def _storing(count: int) -> Prepared:
    """INSERT of `count` updates that skips those stored before (returning the new ones' ids and keys, but on
    SQLite: `_written`)."""
    column = _TABLE.c

    def statement(dialect: str) -> Any:
        service, now = bindparam("service", type_=column.service.type), bindparam("now", type_=column.received_at.type)
        rows = [{"service": service, "key": bindparam(f"key_{i}", type_=column.key.type),
                 "lane": bindparam(f"lane_{i}", type_=column.lane.type),
                 "payload": bindparam(f"payload_{i}", type_=column.payload.type), "received_at": now}
                for i in range(count)]
        statement = upsert(dialect)(_TABLE).values(rows).on_conflict_do_nothing(index_elements=["service", "key"])
        return statement if dialect == "sqlite" else statement.returning(_TABLE.c.id, _TABLE.c.key)

    return Prepared(statement)


def store_now(engine: Engine, service: str, arrivals: list[Arrival], now: datetime, *,
              also: Callable[[Session], None] | None = None) -> list[Stored]:
    """`store` in a transaction of its own; `also` writes in it too (a sync token with the events it covers)."""
    with session(engine) as db:
        stored = store(db, service, arrivals, now)
        if also is not None:
            also(db)
        db.commit()
        return stored


def mark_handled(db: Session, inbox_id: int, now: datetime) -> bool:
    """Inside the transaction that stores what the update changed: False if it was handled already."""
    return _MARK.count(db, {"inbox_id": inbox_id, "now": now}) > 0


def all_marked_handled(db: Session, inbox_ids: list[int], now: datetime) -> bool:
    """`mark_handled` for a group's updates in one statement: False if any was handled already."""
    return not inbox_ids or _MARK.run_many(db, [{"inbox_id": i, "now": now} for i in inbox_ids]) == len(inbox_ids)


def handled(engine: Engine, inbox_ids: list[int], now: datetime) -> None:
    """Updates that changed nothing (chatter, a second delivery, a service notice): marked together."""
    if inbox_ids:
        with session(engine) as db:
            _MARK.run_many(db, [{"inbox_id": inbox_id, "now": now} for inbox_id in inbox_ids])
            db.commit()


def waiting(engine: Engine, service: str, *, lane: str | None = None, after: int = 0,
            limit: int = 1000) -> list[Stored]:
    """Updates not handled yet, oldest first: after a restart, or what another process stored."""
    with session(engine) as db:
        query = select(Inbox).where(col(Inbox.handled_at).is_(None), Inbox.service == service, col(Inbox.id) > after)
        if lane is not None:
            query = query.where(Inbox.lane == lane)
        rows = db.exec(query.order_by(col(Inbox.id)).limit(limit)).all()
        return [Stored(row.id or 0, row.lane, row.payload, row.key) for row in rows]


def hold_lane(engine: Engine, service: str, lane: str, owner: str, now: datetime) -> bool:
    """Take (or keep) the lease on a lane's updates; False while another live process holds it."""
    with session(engine) as db:
        held = db.get(LaneLease, (service, lane), with_for_update=db.get_bind().dialect.name == "postgresql")
        if held is None:
            values = {"service": service, "lane": lane, "owner": owner, "until": now + LANE_LEASE}
            table = LaneLease.__table__  # type: ignore[attr-defined]
            taken = db.execute(upsert(db.get_bind().dialect.name)(table).on_conflict_do_nothing().values(**values))
            db.commit()
            return bool(taken.rowcount)  # type: ignore[attr-defined]
        if held.owner != owner and held.until >= now and not leases.gone(held.owner):
            db.rollback()
            return False
        held.owner, held.until = owner, now + LANE_LEASE
        db.add(held)
        db.commit()
        return True


def let_go(engine: Engine, service: str, lane: str, owner: str) -> None:
    with session(engine) as db:
        db.execute(delete(LaneLease).where(LaneLease.service == service, LaneLease.lane == lane,
                                           LaneLease.owner == owner))
        db.commit()


def prune(engine: Engine, now: datetime) -> int:
    """Forget handled updates older than `KEEP`."""
    with session(engine) as db:
        gone = db.execute(delete(Inbox).where(col(Inbox.handled_at) < now - KEEP))
        db.commit()
        return int(gone.rowcount)  # type: ignore[attr-defined]
