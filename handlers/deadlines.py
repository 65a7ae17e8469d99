"""Deadlines as rows: when an order is dispatched its milestones and their reminders are written down.

The scheduler only wakes the sweep (`scheduler/sweep.py`), which claims the rows that are due. Each
milestone gets a ladder: the handler is nudged at shares of the span and at the deadline, the
dispatchers hear when it is overdue, and past a further limit the order is escalated (吹哨).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col

from handlers.community import SlaPolicy, parse_duration
from handlers.lifecycle import OPEN_STATES
from handlers.workdays import WorkCalendar
from storage import repo
from storage.models import Order, Reminder

DUE_FIELD = {"response": "respond_due", "on_scene": "on_scene_due", "plan": "plan_due",
             "resolution": "resolve_due", "report_back": "report_back_due"}
MET_FIELD = {"response": "accepted_at", "on_scene": "arrived_at", "plan": "planned_at", "resolution": "resolved_at",
             "report_back": "reported_back_at"}
ESCALATING = ("plan", "resolution")  # milestones whose slipping blows the whistle
MIN_GRACE = timedelta(minutes=1)
NUDGE_FROM = timedelta(minutes=20)  # shorter spans get no early nudges: they would only be noise


def open_deadlines(order: Order) -> list[datetime]:
    """The deadlines of the milestones this order has not reached yet (none once it is finished)."""
    if order.state not in OPEN_STATES:
        return []
    return [due for milestone, field in DUE_FIELD.items()
            if (due := getattr(order, field)) is not None and getattr(order, MET_FIELD[milestone]) is None]


def is_overdue(order: Order, now: datetime) -> bool:
    """超时: an open order with a milestone (respond, on the scene, plan, resolve, report back) it has not
    reached by its deadline. The one meaning, in chat lists, cards, digests, rates, the web and the ledger."""
    return any(due < now for due in open_deadlines(order))


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    """`is_overdue` as SQL, for counting many orders at once."""
    missed = [and_(getattr(Order, DUE_FIELD[m]) < now, col(getattr(Order, MET_FIELD[m])).is_(None)) for m in DUE_FIELD]
    return and_(col(Order.state).in_(sorted(OPEN_STATES)), or_(*missed))


def start(db: Session, order: Order, policy: SlaPolicy, now: datetime, calendar: WorkCalendar, *,
          responded: bool = False, keep_resolution: bool = False) -> None:
    """Start the clocks at dispatch: set each milestone's deadline and write its reminders."""
    stop(db, order)
    kept = order.resolve_due if keep_resolution else None
    for milestone, field in DUE_FIELD.items():
        if milestone != "report_back":
            setattr(order, field, None)
    for milestone, span in policy.rule(order.urgency, order.matter).spans().items():
        if milestone == "response" and responded:
            continue
        due = kept if milestone == "resolution" and kept else span.after(now, calendar)
        setattr(order, DUE_FIELD[milestone], due)
        ladder(db, order, policy, milestone, now, due)


def ladder(db: Session, order: Order, policy: SlaPolicy, milestone: str, start: datetime, due: datetime) -> None:
    """The reminders of one milestone, from `start` to `due` and past it."""
    assert order.id is not None
    span = max(due - start, MIN_GRACE)
    steps: list[tuple[str, datetime]] = []
    if span >= NUDGE_FROM:
        steps += [("before", start + span * share) for share in policy.remind_at]
    steps.append(("due", due))
    steps.append(("overdue", due + max(MIN_GRACE, span * policy.overdue_after)))
    if milestone in ESCALATING and policy.escalate_after is not None:
        steps.append(("escalate", due + max(MIN_GRACE * 5, span * policy.escalate_after)))
    for step, at in steps:
        db.add(Reminder(order_id=order.id, milestone=milestone, step=step, due_at=at))


def report_back_clock(db: Session, order: Order, policy: SlaPolicy, now: datetime, calendar: WorkCalendar) -> None:
    """After a whistle the level above must report in (报到) in time, or it climbs again."""
    assert order.id is not None
    repo.void_reminders(db, order.id, ["report_back"])
    due = parse_duration(policy.report_back).after(now, calendar)
    order.report_back_due = due
    db.add(Reminder(order_id=order.id, milestone="report_back", step="due", due_at=due))
    db.add(Reminder(order_id=order.id, milestone="report_back", step="escalate",
                    due_at=due + max(MIN_GRACE, (due - now) * 0.5)))


def visit(db: Session, order: Order, after: str | None, now: datetime, calendar: WorkCalendar) -> None:
    """回访: some time after an order is closed its reporter is asked whether the fix held."""
    assert order.id is not None
    if after is not None:
        db.add(Reminder(order_id=order.id, milestone="visit", step="visit",
                        due_at=parse_duration(after).after(now, calendar)))


def met(db: Session, order: Order, milestone: str) -> None:
    """A milestone was reached: its remaining reminders are void."""
    assert order.id is not None
    repo.void_reminders(db, order.id, [milestone])


def stop(db: Session, order: Order) -> None:
    """The order left the open states, or went back to the dispatcher: no more nagging."""
    assert order.id is not None
    repo.void_reminders(db, order.id)


def pause(db: Session, order: Order, now: datetime) -> None:
    """Waiting on the resident: the clocks stand still and nobody is nagged."""
    order.paused_at = now
    stop(db, order)


def resume(db: Session, order: Order, policy: SlaPolicy, now: datetime) -> None:
    """Go on where the clocks stopped: every open deadline moves by the time spent waiting."""
    if order.paused_at is None:
        return
    waited = now - order.paused_at
    order.paused_at = None
    for milestone, field in DUE_FIELD.items():
        due = getattr(order, field)
        if due is None or getattr(order, MET_FIELD[milestone]) is not None:
            continue
        setattr(order, field, due + waited)
        ladder(db, order, policy, milestone, now, due + waited)
