"""The sweep: claim the reminders that are due, act on them, and queue what to post in the outbox.

Everything a sweep decides — reminders marked sent, escalations, the messages to post — is stored in
one transaction, so a sweep run twice does nothing the second time, and two instances on one
PostgreSQL never take the same row (`FOR UPDATE SKIP LOCKED`). Delivering the queued messages is
`deliver_due`'s job: it leases them, so a process killed mid-delivery loses nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from handlers import escalation, orders, outbox
from handlers.buttons import Verb, press_data
from handlers.community import parse_duration
from handlers.deadlines import DUE_FIELD
from handlers.lifecycle import OPEN_STATES
from handlers.privacy import shield
from handlers.protocol import Button, Kind, Outgoing, Text
from handlers.turn import Community, mentions_on
from handlers.workdays import quiet_until
from scheduler import digests
from storage.db import session
from storage.models import Chat, Order, Person, Reminder

BATCH = 500


def sweep(engine: Engine, community: Community, now: datetime, *, batch: int = BATCH) -> int:
    """Act on every reminder that is due and queue the messages; returns how many were queued."""
    with session(engine) as db, db.no_autoflush:  # one flush at the end, not one per look-up
        queued = _reminders(db, community, now, batch) + digests.queue(db, community, now)
        outbox.put(db, shield(queued), now)
        db.commit()
    return len(queued)


def _reminders(db: Session, community: Community, now: datetime, batch: int) -> list[Outgoing]:
    query = (
        select(Reminder, Order)
        .join(Order, col(Order.id) == Reminder.order_id)
        .where(col(Reminder.sent_at).is_(None), col(Reminder.void).is_(False), Reminder.due_at <= now)
        .order_by(col(Reminder.due_at))
        .limit(batch)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Reminder)
    stale_before = now - parse_duration(community.config.sla.catch_up_after).clock_time()
    quiet = community.config.community.quiet()
    out: list[Outgoing] = []
    cards: dict[int, Outgoing] = {}  # one card edit per order, however many of its reminders fell due
    missed: dict[int, list[tuple[Reminder, Order]]] = defaultdict(list)
    seen = _Seen(db)
    for reminder, order in db.exec(query).all():
        if reminder.milestone == "visit":
            reminder.sent_at = now
            out.extend(_visit(community, order))
            continue
        if order.state not in OPEN_STATES:
            reminder.void = True
            continue
        resume_at = quiet_until(now, quiet, community.tz) if order.urgency != "red" else None
        if resume_at is not None:
            reminder.due_at = resume_at  # quiet hours: the nag waits for the morning
            continue
        reminder.sent_at = now
        stale = reminder.due_at < stale_before
        messages = _act(seen, community, reminder, order, now)
        cards.update((m.order_id or 0, m) for m in messages if m.kind is Kind.UPDATE_CARD)
        if stale and order.chat_id:
            missed[order.chat_id].append((reminder, order))  # after downtime: one summary per chat
        else:
            out.extend(m for m in messages if m.kind is not Kind.UPDATE_CARD)
    out.extend(_catch_up(db, community, missed, now))
    return out + list(cards.values())


def _visit(community: Community, order: Order) -> list[Outgoing]:
    """回访 by direct message: did the fix hold?"""
    if order.state != "closed":
        return []
    buttons = ((Button(Text("btn.visit_ok"), press_data(Verb.VISIT, order.id, "ok")),
                Button(Text("btn.visit_bad"), press_data(Verb.VISIT, order.id, "bad"))),)
    return [Outgoing(Kind.DIRECT, Text("visit.ask", {"number": order.number, "title": order.title}),
                     lang=community.lang, person_id=order.reporter_id, order_id=order.id, buttons=buttons)]


class _Seen:
    """Look-ups one sweep repeats for many reminders: chats and mentions, made once each."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.chats: dict[int, Chat | None] = {}
        self.names: dict[tuple[str, tuple[int, ...]], tuple] = {}

    def chat(self, chat_id: int | None) -> Chat | None:
        if chat_id is None:
            return None
        if chat_id not in self.chats:
            self.chats[chat_id] = self.db.get(Chat, chat_id)
        return self.chats[chat_id]

    def mentions(self, people: list[Person], service: str) -> tuple:
        key = (service, tuple(p.id or 0 for p in people))
        if key not in self.names:
            self.names[key] = mentions_on(self.db, people, service)
        return self.names[key]


def _act(seen: _Seen, community: Community, reminder: Reminder, order: Order, now: datetime) -> list[Outgoing]:
    """What one reminder does: nag the handler, tell the dispatchers, or blow the whistle."""
    db = seen.db
    chat = seen.chat(order.chat_id)
    if chat is None:
        return []
    lang = chat.lang or community.lang
    due = getattr(order, DUE_FIELD[reminder.milestone])
    if due is None:
        return []
    step = reminder.step
    if step == "escalate":
        if not escalation.climb(db, community, order, now, reason=f"auto:{reminder.milestone}"):
            return []
        people = escalation.whistle_targets(db, community, order)
        key, params = "escalate.auto", {"level": order.level, "milestone": reminder.milestone,
                                        "report_back_due": orders.local(order.report_back_due, community.tz)}
    elif reminder.milestone == "report_back":
        people = escalation.whistle_targets(db, community, order)
        key, params = "remind.report_back", {"level": order.level}
    elif step == "overdue":
        people = orders.dispatchers_of(db, order)
        key, params = "remind.overdue", {}
    else:
        people = orders.handlers_of(db, order)
        key, params = f"remind.{step}", {}
    minutes = max(0, round(abs((due - now).total_seconds()) / 60))
    text = Text(key, {"number": order.number, "milestone": reminder.milestone, "minutes": minutes,
                      "names": [p.name for p in people], **params})
    messages = [Outgoing(Kind.SEND, text, lang=lang, service=chat.service, chat_id=chat.external_id,
                         order_id=order.id, mentions=seen.mentions(people, chat.service))]
    messages.append(_card(db, community, order, lang, now))  # its 红黄蓝 warning moves with the clock
    return messages


def _card(db: Session, community: Community, order: Order, lang: str, now: datetime) -> Outgoing:
    return orders.card_update(db, order, orders.card_text(db, order, community.tz, now), lang)


def _catch_up(db: Session, community: Community, missed: dict[int, list[tuple[Reminder, Order]]],
              now: datetime) -> list[Outgoing]:
    """After downtime: one message per chat with what is late, instead of a flood of stale nags."""
    out = []
    for chat_id, items in missed.items():
        chat = db.get(Chat, chat_id)
        if chat is None:
            continue
        late = {order.number: order for _, order in items if order.state in OPEN_STATES}
        if not late:
            continue
        lines = [{"number": n, "title": orders.title_for(o, details=False), "warning": orders.warning(o, now),
                  "overdue": orders.is_overdue(o, now)} for n, o in sorted(late.items())]
        people: dict[int, Person] = {}
        for order in late.values():
            for person in orders.handlers_of(db, order) + orders.dispatchers_of(db, order):
                people[person.id or 0] = person
        names = [p.name for p in people.values()]
        out.append(Outgoing(Kind.SEND, Text("remind.catch_up", {"items": lines, "names": names}),
                            lang=chat.lang or community.lang, service=chat.service, chat_id=chat.external_id,
                            mentions=mentions_on(db, list(people.values()), chat.service)))
    return out


Deliver = Callable[[list[Outgoing]], Awaitable[None]]
Offload = Callable[..., Awaitable[Any]]  # runs storage work somewhere and awaits it
T = TypeVar("T")


def sweep_and_take(engine: Engine, community: Community, now: datetime, owner: str = "local") -> list[Outgoing]:
    """One sweep and everything then due from the outbox, marked sent: for a caller that delivers in-process."""
    sweep(engine, community, now)
    taken = outbox.claim(engine, owner, now)
    outbox.settle(engine, [row_id for row_id, _, _ in taken], now)
    return [action for _, action, _ in taken]


async def inline(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Storage work right here: for callers without a worker thread (tests, one-off tools)."""
    return work(*args, **kwargs)


async def deliver_due(engine: Engine, owner: str, now: datetime, deliver: Deliver, *,
                      lease: timedelta = outbox.LEASE, offload: Offload = inline) -> int:
    """Lease the queued actions that are due, hand them to the transports, and mark them sent.
    `offload` runs the storage work (the core's worker thread in `linli run`)."""
    taken = await offload(outbox.claim, engine, owner, now, lease=lease)
    if not taken:
        return 0
    ids = [row_id for row_id, _, _ in taken]
    with outbox.retrying(taken) as handed:
        try:
            await deliver([action for _, action, _ in taken])
        except Exception as error:
            await offload(outbox.settle, engine, [i for i in ids if i not in handed.adopted], now, error=repr(error))
            raise
    # rows a transport adopted are marked sent or parked by it, one by one, when they go (or cannot)
    await offload(outbox.settle, engine, [i for i in ids if i not in handed.adopted], now)
    return len(taken)
