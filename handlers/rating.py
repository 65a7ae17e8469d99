"""评单: the reporter and followers rate finished work; a low score reopens the order."""

from __future__ import annotations

from sqlmodel import select

from handlers import orders
from handlers.lifecycle import Action, State
from handlers.turn import Turn
from storage import repo
from storage.models import Order, Person, Points, Rating, Team, TeamMember

WELL_RATED = 4  # 积分 are earned for orders rated at least this


def rate(turn: Turn, order: Order, score: int | None, comment: str | None = None) -> None:
    rating_round = order.rating_round
    if not orders.attempt(turn, order, Action.RATE, score=score):
        return
    assert score is not None
    turn.db.add(Rating(order_id=order.id or 0, person_id=turn.person.id or 0, rating_round=rating_round,
                       score=score, comment=comment, team_id=order.team_id, handler_id=order.assignee_id,
                       at=turn.now))
    orders.update_card(turn, order)
    if order.state == State.REOPENED:
        orders.tell_chat(turn, order, "rate.reopened", notify=orders.dispatchers_of(turn.db, order),
                         score=score)
        return
    _award_points(turn, order, score)
    turn.reply("rate.thanks", number=order.number, score=score)


def visit_answer(turn: Turn, order: Order, held: bool) -> None:
    """The reporter's answer to 回访: kept as an event; a fix that did not hold goes to the dispatchers."""
    if turn.person.id != order.reporter_id:
        turn.refuse("visit.not_yours", number=order.number)
        return
    repo.add_event(turn.db, order, "visit", turn.person.id, order.state, turn.now, chat_id=turn.chat.id,
                   message_ref=turn.incoming.message_id, detail={"held": held})
    if held:
        turn.reply("visit.thanks", number=order.number)
        return
    turn.reply("visit.noted", number=order.number)
    orders.tell_chat(turn, order, "visit.failed", notify=orders.dispatchers_of(turn.db, order))


def _award_points(turn: Turn, order: Order, score: int) -> None:
    """Volunteers and party members earn 积分 for each finished, well-rated order, once."""
    if score < WELL_RATED or order.assignee_id is None:
        return
    if order.assignee_id == order.reporter_id:
        return  # reporting a problem and fixing it oneself earns nothing: 积分 are not to be farmed
    handler = turn.db.get(Person, order.assignee_id)
    if handler is None or not (handler.party_member or _is_volunteer(turn, handler)):
        return
    exists = turn.db.exec(
        select(Points.id).where(Points.person_id == handler.id, Points.order_id == order.id,
                                Points.reason == "well_rated")
    ).first()
    if exists is None:
        turn.db.add(Points(person_id=handler.id or 0, order_id=order.id or 0,
                           points=turn.community.config.points_per_order, reason="well_rated", at=turn.now))


def _is_volunteer(turn: Turn, person: Person) -> bool:
    query = select(Team.id).join(TeamMember).where(TeamMember.person_id == person.id, Team.kind == "volunteers")
    return turn.db.exec(query).first() is not None
