"""吹哨报到: a dispatcher (or a slipped deadline) blows the whistle; the level above must report in."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from handlers import orders
from handlers.lifecycle import Action, Refusal
from handlers.turn import Community, Turn
from storage import repo
from storage.models import Order, Person


def escalate(turn: Turn, order: Order, reason: str | None) -> None:
    if not orders.attempt(turn, order, Action.ESCALATE, reason=reason):
        return
    orders.update_card(turn, order)
    orders.tell_chat(turn, order, "escalate.done", notify=whistle_targets(turn.db, turn.community, order),
                     level=order.level, reason=reason,
                     report_back_due=orders.local(order.report_back_due, turn.community.tz))


def report_back(turn: Turn, order: Order) -> None:
    if not orders.attempt(turn, order, Action.REPORT_BACK):
        return
    orders.update_card(turn, order)
    orders.tell_chat(turn, order, "report_back.done", name=turn.person.name, level=order.level)


def whistle_targets(db: Session, community: Community, order: Order) -> list[Person]:
    """Who must report in: the supervisors over the order's grid."""
    return repo.people_with_role_over(db, community.grid(order.grid_id).path, "supervisor")


def climb(db: Session, community: Community, order: Order, now: datetime, reason: str) -> bool:
    """The sweep escalates an order whose deadline (or whose report-back) slipped; False at the top."""
    try:
        orders.carry_out(db, community, order, Action.ESCALATE, orders.SYSTEM, now, reason=reason)
    except Refusal:
        return False
    return True
