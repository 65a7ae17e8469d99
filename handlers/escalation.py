"""吹哨报到: a dispatcher blows the whistle; the level above (or a department) must report in."""

from __future__ import annotations

from handlers import orders
from handlers.lifecycle import Action
from handlers.turn import Turn
from storage import repo
from storage.models import Order


def escalate(turn: Turn, order: Order, reason: str | None) -> None:
    if not orders.attempt(turn, order, Action.ESCALATE, reason=reason):
        return
    orders.update_card(turn, order)
    supervisors = repo.people_with_role_over(turn.db, turn.community.grid(order.grid_id).path, "supervisor")
    orders.tell_chat(turn, order, "escalate.done", notify=supervisors, level=order.level, reason=reason)


def report_back(turn: Turn, order: Order) -> None:
    if not orders.attempt(turn, order, Action.REPORT_BACK):
        return
    orders.update_card(turn, order)
    orders.tell_chat(turn, order, "report_back.done", name=turn.person.name, level=order.level)
