"""Repositories: the queries the use cases need, in one place."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from storage.models import (
    Chat,
    Counter,
    Delivery,
    Event,
    Follower,
    Grid,
    Identity,
    MessageLink,
    Order,
    Person,
    Photo,
    Rating,
    Reminder,
    RoleGrant,
    Team,
    TeamMember,
)
from storage.prepared import Prepared


def upsert(dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    return sqlite_insert if dialect == "sqlite" else postgresql_insert


def record_delivery(db: Session, service: str, chat: str, message_ref: str, now: datetime) -> bool:
    """Remember a delivered message; False if it was handled before. One statement on both backends."""
    values = {"service": service, "chat": chat, "message_ref": message_ref, "at": now}
    return _RECORDING.count(db, values) > 0


def record_deliveries(db: Session, messages: list[tuple[str, str, str]], now: datetime) -> bool:
    """`record_delivery` for a group's (service, chat, message_ref) in one statement: False if any of them
    was handled before (or is in the group twice)."""
    rows = [{"service": service, "chat": chat, "message_ref": ref, "at": now} for service, chat, ref in messages]
    return not rows or _RECORDING.run_many(db, rows) == len(rows)


def _recording(dialect: str) -> Any:
    table = Delivery.__table__  # type: ignore[attr-defined]
    return (upsert(dialect)(table).values(service=bindparam("service"), chat=bindparam("chat"),
                                          message_ref=bindparam("message_ref"), at=bindparam("at"))
            .on_conflict_do_nothing(index_elements=["service", "chat", "message_ref"]))


_RECORDING = Prepared(_recording)


def was_delivered(db: Session, service: str, chat: str, message_ref: str) -> bool:
    return db.exec(select(Delivery.id).where(Delivery.service == service, Delivery.chat == chat,
                                             Delivery.message_ref == message_ref)).first() is not None


def grid_by_code(db: Session, code: str) -> Grid | None:
    return db.exec(select(Grid).where(Grid.code == code)).first()


def grids_below(db: Session, path: str) -> list[Grid]:
    """The grid with `path` and every grid under it."""
    return list(db.exec(select(Grid).where(col(Grid.path).startswith(path))))


def chat_by_external(db: Session, service: str, external_id: str) -> Chat | None:
    return db.exec(select(Chat).where(Chat.service == service, Chat.external_id == external_id)).first()


def identity_of(db: Session, service: str, external_id: str) -> Identity | None:
    return db.exec(
        select(Identity).where(Identity.service == service, Identity.external_id == external_id)
    ).first()


def identities(db: Session, person_ids: Iterable[int], service: str) -> dict[int, Identity]:
    ids = set(person_ids)
    if not ids:
        return {}
    rows = db.exec(
        select(Identity).where(col(Identity.person_id).in_(ids), Identity.service == service)
    )
    return {row.person_id: row for row in rows}


def people(db: Session, person_ids: Iterable[int]) -> dict[int, Person]:
    ids = set(person_ids)
    if not ids:
        return {}
    return {p.id: p for p in db.exec(select(Person).where(col(Person.id).in_(ids))) if p.id}


def person_by_name(db: Session, name: str) -> Person | None:
    return db.exec(select(Person).where(Person.name == name).order_by(col(Person.id))).first()


def person_by_handle(db: Session, service: str, handle: str) -> Person | None:
    identity = db.exec(
        select(Identity).where(Identity.service == service, Identity.handle == handle)
    ).first()
    return db.get(Person, identity.person_id) if identity else None


def team_by_name(db: Session, name: str) -> Team | None:
    return db.exec(select(Team).where((Team.name == name) | (Team.code == name))).first()


def teams_of(db: Session, person_id: int) -> list[Team]:
    return list(
        db.exec(select(Team).join(TeamMember).where(TeamMember.person_id == person_id).order_by(Team.id))
    )


def team_members(db: Session, team_id: int) -> list[Person]:
    return list(
        db.exec(
            select(Person)
            .join(TeamMember)
            .where(TeamMember.team_id == team_id)
            .order_by(col(TeamMember.leader).desc(), col(Person.id))
        )
    )


def teams_in(db: Session, community_id: int) -> list[Team]:
    grid_ids = select(Grid.id).where(Grid.community_id == community_id)
    return list(db.exec(select(Team).where(col(Team.grid_id).in_(grid_ids)).order_by(Team.id)))


def role_grid_ids(db: Session, person_id: int, role: str) -> set[int]:
    rows = db.exec(select(RoleGrant.grid_id).where(RoleGrant.person_id == person_id, RoleGrant.role == role))
    return set(rows)


def ancestor_ids(path: str) -> set[int]:
    """The ids in a grid path "/1/4/9/": the grid itself and every grid above it."""
    return {int(part) for part in path.strip("/").split("/") if part}


def people_with_role_over(db: Session, path: str, role: str) -> list[Person]:
    """Everyone holding `role` on the grid with `path` or any grid above it."""
    ancestors = ancestor_ids(path)
    return list(
        db.exec(
            select(Person)
            .join(RoleGrant)
            .where(RoleGrant.role == role, col(RoleGrant.grid_id).in_(ancestors))
            .distinct()
            .order_by(col(Person.id))
        )
    )


# The hot path runs prepared statements on the session's connection: the same transaction, without the
# ORM's per-statement work (storage/prepared.py: inserts there, the counter here).
_COUNTER = Counter.__table__  # type: ignore[attr-defined]
_TAKE_NUMBER = Prepared(update(_COUNTER).where(_COUNTER.c.community_id == bindparam("community"))
                        .values(next_number=_COUNTER.c.next_number + 1).returning(_COUNTER.c.next_number))
_FIRST_NUMBER = Prepared(lambda dialect: upsert(dialect)(_COUNTER)
                         .values(community_id=bindparam("community"), next_number=1).on_conflict_do_nothing())


def next_number(db: Session, community_id: int) -> int:
    """Take the community's next order number; the row lock serialises concurrent takers."""
    taken = _TAKE_NUMBER.scalar(db, {"community": community_id})
    if taken is None:  # the first order: make the row (another process may make it meanwhile), then take
        _FIRST_NUMBER.run(db, {"community": community_id})
        return next_number(db, community_id)
    return taken - 1


def order_by_number(db: Session, community_id: int, number: int) -> Order | None:
    return db.exec(select(Order).where(Order.community_id == community_id, Order.number == number)).first()


def order_for_message(db: Session, service: str, chat: str, message_ref: str) -> Order | None:
    link = db.exec(
        select(MessageLink.order_id).where(
            MessageLink.service == service, MessageLink.chat == chat, MessageLink.message_ref == message_ref
        )
    ).first()
    return db.get(Order, link) if link else None


def card_links(db: Session, order_id: int) -> list[MessageLink]:
    return list(db.exec(select(MessageLink).where(MessageLink.order_id == order_id, MessageLink.is_card)))


def follower_ids(db: Session, order_id: int) -> frozenset[int]:
    return frozenset(db.exec(select(Follower.person_id).where(Follower.order_id == order_id)))


WORK_ACTIONS = ("assign", "accept", "claim", "done")


def worker_ids(db: Session, order: Order) -> frozenset[int]:
    """Everyone who worked on the order: who dispatched it, accepted or claimed it, or finished it."""
    rows = db.exec(select(Event.actor_id).where(Event.order_id == order.id, col(Event.action).in_(WORK_ACTIONS),
                                                col(Event.actor_id).is_not(None)))
    return frozenset(row for row in rows if row is not None) | (
        frozenset({order.assignee_id}) if order.assignee_id else frozenset())


def rater_ids(db: Session, order: Order) -> frozenset[int]:
    rows = db.exec(
        select(Rating.person_id).where(Rating.order_id == order.id, Rating.rating_round == order.rating_round)
    )
    return frozenset(rows)


def add_event(
    db: Session,
    order: Order,
    action: str,
    actor_id: int | None,
    from_state: str | None,
    now: datetime,
    *,
    chat_id: int | None = None,
    message_ref: str | None = None,
    detail: dict | None = None,
) -> Event:
    event = Event(
        order_id=order.id or 0,
        action=action,
        actor_id=actor_id,
        from_state=from_state,
        to_state=order.state,
        at=now,
        chat_id=chat_id,
        message_ref=message_ref,
        detail=detail or {},
    )
    db.add(event)
    return event


def events_of(db: Session, order_id: int) -> list[Event]:
    return list(db.exec(select(Event).where(Event.order_id == order_id).order_by(col(Event.id))))


def photos_of(db: Session, order_id: int) -> list[Photo]:
    return list(db.exec(select(Photo).where(Photo.order_id == order_id).order_by(col(Photo.id))))


def open_orders(db: Session, grid_ids: Sequence[int], states: Iterable[str], limit: int = 50) -> list[Order]:
    return list(
        db.exec(
            select(Order)
            .where(col(Order.grid_id).in_(grid_ids), col(Order.state).in_(list(states)))
            .order_by(col(Order.created_at), col(Order.id))  # ties (a busy minute) in the order filed
            .limit(limit)
        )
    )


def orders_of_person(db: Session, person_id: int, states: Iterable[str], limit: int = 30) -> list[Order]:
    mine = (Order.reporter_id == person_id) | (Order.assignee_id == person_id)
    return list(
        db.exec(
            select(Order).where(mine, col(Order.state).in_(list(states))).order_by(col(Order.id)).limit(limit)
        )
    )


def void_reminders(db: Session, order_id: int, milestones: Iterable[str] | None = None) -> None:
    query = update(Reminder).where(col(Reminder.order_id) == order_id, col(Reminder.sent_at).is_(None))
    if milestones is not None:
        query = query.where(col(Reminder.milestone).in_(list(milestones)))
    db.execute(query.values(void=True))


def count_orders(db: Session) -> int:
    return db.exec(select(func.count()).select_from(Order)).one()
