"""办单: handlers accept and claim orders and finish them with a photo."""

from __future__ import annotations

from handlers import orders
from handlers.buttons import Verb, press_data
from handlers.lifecycle import Action
from handlers.protocol import Button, Kind, Outgoing, Text
from handlers.turn import Turn
from storage import repo
from storage.models import Order, Photo


def accept(turn: Turn, order: Order) -> None:
    if not orders.attempt(turn, order, Action.ACCEPT):
        return
    orders.update_card(turn, order)
    # the reporter and followers were promised news of progress: this is the first
    orders.tell_chat(turn, order, "accept.done", notify=orders.interested(turn.db, order), name=turn.person.name)


def claim(turn: Turn, order: Order) -> None:
    if not orders.attempt(turn, order, Action.CLAIM):
        return
    orders.update_card(turn, order)
    orders.tell_chat(turn, order, "claim.done", notify=orders.interested(turn.db, order), name=turn.person.name,
                     resolve_due=orders.local(order.resolve_due, turn.community.tz))


def done(turn: Turn, order: Order, photos: tuple[str, ...]) -> None:
    """办结 needs a photo of the finished work; then the reporter and followers are asked to rate."""
    if not photos:
        if orders.may_act(turn, order, Action.DONE):
            turn.reply("refuse.done.photo", order_id=order.id, number=order.number)
        else:
            turn.refuse("refuse.done.role", number=order.number)
        return
    if not orders.attempt(turn, order, Action.DONE, photos=photos):
        return
    events = repo.events_of(turn.db, order.id)
    for ref in photos:
        turn.db.add(Photo(order_id=order.id, event_id=events[-1].id, service=turn.incoming.service,
                          ref=ref, purpose="completion", at=turn.now))
    orders.update_card(turn, order)
    stars = (tuple(Button(Text("btn.star", {"score": s}), press_data(Verb.RATE, order.id, s)) for s in range(1, 6)),)
    if order.matter != "private":
        orders.tell_chat(turn, order, "done.rate", notify=orders.interested(turn.db, order), buttons=stars,
                         photo=photos[0], name=turn.person.name)
        return
    # A private matter: the group hears it is done; the photo and the rating prompt go to those concerned.
    orders.tell_chat(turn, order, "done.private")
    for person in orders.interested(turn.db, order):
        turn.out.append(Outgoing(Kind.DIRECT, Text("done.rate_direct", {"number": order.number}), lang=turn.lang,
                                 person_id=person.id, order_id=order.id, buttons=stars, photo=photos[0]))


def arrive(turn: Turn, order: Order) -> None:
    if orders.attempt(turn, order, Action.ARRIVE):
        orders.update_card(turn, order)
        orders.tell_chat(turn, order, "arrive.done", name=turn.person.name)


def plan(turn: Turn, order: Order, text: str | None) -> None:
    if orders.attempt(turn, order, Action.PLAN, reason=text):
        orders.update_card(turn, order)
        orders.tell_chat(turn, order, "plan.done", notify=orders.interested(turn.db, order), plan=text)


def wait(turn: Turn, order: Order, reason: str | None) -> None:
    """Waiting on the resident (not home, no access): the clocks stand still until /继续."""
    if orders.attempt(turn, order, Action.WAIT, reason=reason):
        orders.update_card(turn, order)
        orders.tell_chat(turn, order, "wait.done", notify=orders.interested(turn.db, order), reason=reason)


def resume(turn: Turn, order: Order) -> None:
    if orders.attempt(turn, order, Action.RESUME):
        orders.update_card(turn, order)
        orders.tell_chat(turn, order, "resume.done")
