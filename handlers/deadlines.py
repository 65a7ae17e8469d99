"""Deadlines as rows: when an order is dispatched its milestones and their reminders are written down.

The scheduler only wakes the sweep (`scheduler/sweep.py`), which claims the rows that are due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from handlers.community import SlaPolicy
from storage import repo
from storage.models import Order, Reminder

MILESTONES = ("response", "resolution")
MIN_GRACE = timedelta(minutes=1)


def start(db: Session, order: Order, policy: SlaPolicy, now: datetime, *, responded: bool = False) -> None:
    """Start the clock at dispatch: set the deadlines and write their reminders."""
    assert order.id is not None
    repo.void_reminders(db, order.id)
    respond, resolve = policy.deadlines(order.urgency, order.matter)
    order.respond_due = None if responded else now + respond
    order.resolve_due = now + resolve
    milestones = [("resolution", order.resolve_due)]
    if order.respond_due is not None:
        milestones.append(("response", order.respond_due))
    for milestone, due in milestones:
        span = due - now
        grace = max(MIN_GRACE, span * 0.1)
        steps = [("due", due), ("overdue", due + grace)]
        if milestone == "resolution":
            steps.insert(0, ("before", now + span * policy.remind_at))
        for step, at in steps:
            db.add(Reminder(order_id=order.id, milestone=milestone, step=step, due_at=at))


def met(db: Session, order: Order, milestone: str) -> None:
    """A milestone was reached: its remaining reminders are void."""
    assert order.id is not None
    repo.void_reminders(db, order.id, [milestone])


def stop(db: Session, order: Order) -> None:
    """The order left the open states, or went back to the dispatcher: no more nagging."""
    assert order.id is not None
    repo.void_reminders(db, order.id)
