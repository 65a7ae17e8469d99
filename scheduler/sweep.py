"""The sweep: claim the reminders that are due, mark them sent, and say what to post.

Run it as often as you like: a reminder is claimed once, so a second run does nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import col, select

from handlers import orders
from handlers.lifecycle import OPEN_STATES
from handlers.protocol import Kind, Outgoing, Text
from handlers.turn import Community, mentions_on
from storage.db import session
from storage.models import Chat, Order, Reminder

BATCH = 500


def sweep(engine: Engine, community: Community, now: datetime, *, batch: int = BATCH) -> list[Outgoing]:
    out: list[Outgoing] = []
    with session(engine) as db:
        query = (
            select(Reminder, Order)
            .join(Order, col(Order.id) == Reminder.order_id)
            .where(col(Reminder.sent_at).is_(None), col(Reminder.void).is_(False), Reminder.due_at <= now)
            .order_by(col(Reminder.due_at))
            .limit(batch)
        )
        if db.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Reminder)
        for reminder, order in db.exec(query).all():
            reminder.sent_at = now
            db.add(reminder)
            if order.state in OPEN_STATES:
                out.extend(_nag(db, community, reminder, order, now))
        db.commit()
    return out


def _nag(db, community: Community, reminder: Reminder, order: Order, now: datetime) -> list[Outgoing]:  # type: ignore[no-untyped-def]
    chat = db.get(Chat, order.chat_id) if order.chat_id else None
    if chat is None:
        return []
    due = order.respond_due if reminder.milestone == "response" else order.resolve_due
    if due is None:
        return []
    people = orders.dispatchers_of(db, order) if reminder.step == "overdue" else orders.handlers_of(db, order)
    minutes = max(0, round(abs((due - now).total_seconds()) / 60))
    lang = chat.lang or community.lang
    text = Text(f"remind.{reminder.step}", {"number": order.number, "milestone": reminder.milestone,
                                             "minutes": minutes, "names": [p.name for p in people]})
    messages = [Outgoing(Kind.SEND, text, lang=lang, service=chat.service, chat_id=chat.external_id,
                         order_id=order.id, mentions=mentions_on(db, people, chat.service))]
    if reminder.step == "overdue":
        card = Text("card", orders.card_params(db, order, community.tz, now))
        messages.append(Outgoing(Kind.UPDATE_CARD, card, lang=lang, order_id=order.id,
                                 buttons=orders.card_buttons(order)))
    return messages
