"""Moving orders through the lifecycle and showing them: the steps every use case shares."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlmodel import Session

from handlers import deadlines
from handlers.buttons import Verb, press_data
from handlers.directory import ChatInfo
from handlers.lifecycle import OPEN_STATES, Action, Actor, Capacity, Change, OrderView, Refusal, State, may, transition
from handlers.protocol import Button, Kind, Outgoing, Text
from handlers.triage.normalize import mask_private
from handlers.turn import Community, Turn
from storage import repo
from storage.models import Chat, Follower, Grid, Order, Person, Team

TITLE_CHARS = 24


def view(db: Session, order: Order) -> OrderView:
    assert order.id is not None
    return OrderView(
        id=order.id,
        state=State(order.state),
        reporter_id=order.reporter_id,
        assignee_id=order.assignee_id,
        team_id=order.team_id,
        level=order.level,
        rating_round=order.rating_round,
        follower_ids=repo.follower_ids(db, order.id),
        rater_ids=repo.rater_ids(db, order),
        worker_ids=repo.worker_ids(db, order),
        paused=order.paused_at is not None,
        arrived=order.arrived_at is not None,
    )


def may_act(turn: Turn, order: Order, action: Action) -> bool:
    actor = turn.actor(turn.community.grid(order.grid_id), order_chat_id=order.chat_id)
    return may(view(turn.db, order), actor, action)


def apply(turn: Turn, order: Order, action: Action, *, note: str | None = None, **params: Any) -> Change:
    """Check and carry out `action` on `order` for the speaker, store it with its event."""
    actor = turn.actor(turn.community.grid(order.grid_id), order_chat_id=order.chat_id)
    return carry_out(turn.db, turn.community, order, action, actor, turn.now, note=note,
                     chat_id=turn.chat.id, message_ref=turn.incoming.message_id, **params)


# The scheduler acts as the system: it may blow the whistle on an order that slipped.
SYSTEM = Actor(person_id=0, roles=frozenset({Capacity.SUPERVISOR}))


def carry_out(db: Session, community: Community, order: Order, action: Action, actor: Actor, now: datetime, *,
              note: str | None = None, chat_id: int | None = None, message_ref: str | None = None,
              **params: Any) -> Change:
    """Check `action` against both tables, change the order, move its clocks, and record the event."""
    change = transition(view(db, order), action, actor, now, **params)
    left_to_resolve = order.resolve_due - order.resolved_at if order.resolve_due and order.resolved_at else None
    for name, value in change.fields.items():
        setattr(order, name, value)
    order.state = change.to_state.value
    _follow_deadlines(db, community, now, order, change, left_to_resolve)
    db.add(order)
    detail = {**change.detail, "note": note} if note else change.detail
    repo.add_event(db, order, action.value, actor.person_id or None, change.from_state.value, now,
                   chat_id=chat_id, message_ref=message_ref, detail=detail)
    db.flush()
    return change


def attempt(turn: Turn, order: Order, action: Action, **params: Any) -> bool:
    """`apply`, answering the speaker politely when the rules say no."""
    try:
        apply(turn, order, action, **params)
    except Refusal as refusal:
        turn.refuse(refusal.key, number=order.number, **refusal.params)
        return False
    return True


def _follow_deadlines(db: Session, community: Community, now: datetime, order: Order, change: Change,
                      left_to_resolve: timedelta | None) -> None:
    """Start, meet, pause and stop the clocks as the order moves."""
    policy, calendar = community.config.sla, community.calendar
    reopened = change.from_state is State.REOPENED
    match change.action:
        case Action.ASSIGN:
            deadlines.start(db, order, policy, now, calendar, keep_resolution=reopened)
        case Action.CLAIM:
            deadlines.start(db, order, policy, now, calendar, responded=True, keep_resolution=reopened)
        case Action.ACCEPT:
            deadlines.met(db, order, "response")
        case Action.ARRIVE:
            deadlines.met(db, order, "on_scene")
        case Action.PLAN:
            deadlines.met(db, order, "plan")
        case Action.WAIT:
            deadlines.pause(db, order, now)
        case Action.RESUME:
            deadlines.resume(db, order, policy, now)
        case Action.ESCALATE:
            deadlines.report_back_clock(db, order, policy, now, calendar)
        case Action.REPORT_BACK:
            deadlines.met(db, order, "report_back")
        case Action.RETURN if change.to_state is State.REPORTED:
            deadlines.stop(db, order)
        case Action.RATE if change.to_state is State.REOPENED:
            deadlines.stop(db, order)
            # The resident was not satisfied: the clock goes on from where it stood at 办结.
            order.resolve_due = now + left_to_resolve if left_to_resolve is not None else None
        case Action.RATE if change.from_state is State.RESOLVED:
            deadlines.stop(db, order)
            deadlines.visit(db, order, community.config.follow_up_visit, now, calendar)
        case Action.DONE | Action.MERGE | Action.CANCEL | Action.RATE:
            deadlines.stop(db, order)


def local(moment: datetime | None, tz: ZoneInfo) -> str | None:
    return moment.astimezone(tz).strftime("%m-%d %H:%M") if moment else None


PRIVATE_TITLE = "私事"  # what a group sees of a private matter: that it exists, never its text or room


class Titled(Protocol):
    """An order, or the few columns of one read for a question about it."""

    @property
    def title(self) -> str: ...

    @property
    def matter(self) -> str: ...


def title_for(order: Titled, *, details: bool) -> str:
    """The order's title where `details` may be shown, else only 私事 for a private matter."""
    return order.title if details or order.matter != "private" else PRIVATE_TITLE


def place_for(order: Order, *, details: bool) -> str:
    """Where the order is; a private matter shows no unit or room unless `details` may be shown."""
    if details or order.matter != "private":
        return place_label(order)
    return ""


def concerns(turn: Turn, order: Order) -> bool:
    """Whether the order is the speaker's business beyond its own chat: they reported, follow or hold it,
    or they have a role over its grid."""
    person = turn.person.id
    if person in (order.reporter_id, order.assignee_id) or person in repo.follower_ids(turn.db, order.id or 0):
        return True
    if order.team_id is not None and order.team_id in {t.id for t in repo.teams_of(turn.db, person)}:
        return True
    return bool(turn.granted_roles(turn.community.grid(order.grid_id)))


def may_see_private(db: Session, order: Order, person_id: int) -> bool:
    """A private matter's details are for its reporter, its handler and team, and the grid's dispatchers
    and supervisors: nobody else, in no list, prompt or digest."""
    if person_id in (order.reporter_id, order.assignee_id):
        return True
    if order.team_id is not None and order.team_id in {t.id for t in repo.teams_of(db, person_id)}:
        return True
    grid = db.get(Grid, order.grid_id)
    return grid is not None and bool(
        {p.id for role in ("dispatcher", "supervisor") for p in repo.people_with_role_over(db, grid.path, role)}
        & {person_id})


def brief_privately(turn: Turn, order: Order, people: list[Person]) -> None:
    """A private matter's details (text, room) by direct message: the group card shows only that it exists."""
    if order.matter != "private":
        return
    card = card_text(turn.db, order, turn.community.tz, turn.now, in_group=False)
    for person in people:
        if person.id is not None:
            turn.out.append(Outgoing(Kind.DIRECT, card, lang=person.lang or turn.community.lang,
                                     person_id=person.id, order_id=order.id))


def place_label(order: Order) -> str:
    parts = [f"{order.building}栋" if order.building else "", f"{order.unit}单元" if order.unit else ""]
    return "".join(parts) + (order.room or "")


open_deadlines = deadlines.open_deadlines


def warning(order: Order, now: datetime) -> str:
    """红黄蓝 warning: red when late (or red by nature), yellow past half its time (or yellow), else blue."""
    if order.state not in OPEN_STATES:
        return order.urgency
    dues = open_deadlines(order)
    if order.urgency == "red" or any(due < now for due in dues):
        return "red"
    started = order.assigned_at or order.created_at
    if order.urgency == "yellow" or any(now >= started + (due - started) / 2 for due in dues if due > started):
        return "yellow"
    return "blue"


is_overdue = deadlines.is_overdue


def card_params(db: Session, order: Order, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    team = db.get(Team, order.team_id) if order.team_id else None
    assignee = db.get(Person, order.assignee_id) if order.assignee_id else None
    unmet = order.state in OPEN_STATES
    return {
        "number": order.number,
        "title": order.title,
        "category": order.category,
        "urgency": order.urgency,
        "matter": order.matter,
        "place": place_label(order),
        "state": order.state,
        "team": team.name if team else None,
        "assignee": assignee.name if assignee else None,
        "respond_due": local(order.respond_due, tz) if order.state == State.ASSIGNED else None,
        "on_scene_due": local(order.on_scene_due, tz) if unmet and not order.arrived_at else None,
        "plan_due": local(order.plan_due, tz) if unmet and not order.planned_at else None,
        "resolve_due": local(order.resolve_due, tz) if unmet else None,
        "level": order.level,
        "overdue": is_overdue(order, now),
        "warning": warning(order, now),
        "paused": order.paused_at is not None and unmet,
    }


def card_buttons(order: Order) -> tuple[tuple[Button, ...], ...]:
    """The buttons that fit the order's state; who may press them is checked on the press."""
    n = order.id

    def button(key: str, data: str) -> Button:
        return Button(Text(key), data)

    match State(order.state):
        case State.REPORTED | State.REOPENED:
            return ((button("btn.assign", press_data(Verb.ASSIGN, n)), button("btn.claim", press_data(Verb.CLAIM, n)),
                     button("btn.cancel", press_data(Verb.CANCEL, n))),)
        case State.ASSIGNED:
            return ((button("btn.accept", press_data(Verb.ACCEPT, n)),
                     button("btn.return", press_data(Verb.RETURN, n))),)
        case State.IN_PROGRESS:
            return ((button("btn.done", press_data(Verb.DONE, n)),
                     button("btn.return", press_data(Verb.RETURN, n))),)
        case State.RESOLVED:
            return (tuple(Button(Text("btn.star", {"score": s}), press_data(Verb.RATE, n, s)) for s in range(1, 6)),)
    return ()


def where_it_lives(turn: Turn, order: Order) -> Chat | ChatInfo:
    """The chat an order was reported in (or this one, if it has none)."""
    if order.chat_id is None or order.chat_id == turn.chat.id:
        return turn.chat
    return turn.db.get(Chat, order.chat_id) or turn.chat


def card_text(db: Session, order: Order, tz: ZoneInfo, now: datetime, *, filed: bool = False,
              in_group: bool = True) -> Text:
    """The order's card. A private matter (私事) shows a group only that it exists and who has it."""
    params = card_params(db, order, tz, now)
    if in_group and order.matter == "private":
        params.update(title="", place=f"{order.building}栋" if order.building else "", private=True)
    return Text("card.filed" if filed else "card", params)


def post_card(turn: Turn, order: Order, *, filed: bool = False) -> None:
    """Post the order's card where the order lives (or here, if it lives nowhere else)."""
    chat = where_it_lives(turn, order)
    in_group = not chat.is_direct
    turn.out.append(
        Outgoing(
            Kind.CARD,
            card_text(turn.db, order, turn.community.tz, turn.now, filed=filed, in_group=in_group),
            lang=turn.lang if not in_group and chat.id == turn.chat.id else turn.chat_lang,
            service=chat.service,
            chat_id=chat.external_id,
            order_id=order.id,
            reply_to=turn.incoming.message_id if chat.id == turn.chat.id else None,
            buttons=card_buttons(order),
        )
    )
    if in_group and order.matter == "private" and filed:
        # The details go to the reporter alone, where the service allows a direct message.
        turn.out.append(Outgoing(Kind.DIRECT, card_text(turn.db, order, turn.community.tz, turn.now,
                                                        filed=True, in_group=False),
                                 lang=turn.lang, person_id=order.reporter_id, order_id=order.id))


def update_card(turn: Turn, order: Order) -> None:
    home = turn.chat if order.chat_id == turn.chat.id else None  # most often: no lookup
    turn.out.append(card_update(turn.db, order, card_text(turn.db, order, turn.community.tz, turn.now),
                                turn.chat_lang, home=home))


def card_update(db: Session, order: Order, card: Text, lang: str, *, home: Chat | ChatInfo | None = None) -> Outgoing:
    """Edit the order's cards where they stand, through the service of its chat (one outbox row, one
    transport). It goes in its chat's lane, so it never overtakes the card. `home`: that chat, if known."""
    if home is None and order.chat_id:
        home = db.get(Chat, order.chat_id)
    return Outgoing(Kind.UPDATE_CARD, card, lang=lang, service=home.service if home else "",
                    chat_id=home.external_id if home else "", order_id=order.id, buttons=card_buttons(order))


def tell_chat(
    turn: Turn,
    order: Order,
    key: str,
    *,
    notify: list[Person] | None = None,
    buttons: tuple[tuple[Button, ...], ...] = (),
    photo: str | None = None,
    **params: Any,
) -> None:
    """Say something about an order in its chat, naming the people who need to act."""
    chat = where_it_lives(turn, order)
    people = [p for p in (notify or []) if p is not None]
    turn.out.append(
        Outgoing(
            Kind.SEND,
            Text(key, {"number": order.number, "names": [p.name for p in people], **params}),
            lang=turn.chat_lang,
            service=chat.service,
            chat_id=chat.external_id,
            order_id=order.id,
            reply_to=turn.incoming.message_id if chat.id == turn.chat.id else None,
            buttons=buttons,
            photo=photo,
            mentions=turn.mentions(people),
        )
    )


def title_of(text: str) -> str:
    line = mask_private(text).strip().splitlines()[0] if text.strip() else ""
    return line[:TITLE_CHARS] + ("…" if len(line) > TITLE_CHARS else "")


def dispatchers_of(db: Session, order: Order) -> list[Person]:
    grid = db.get(Grid, order.grid_id)
    assert grid is not None
    return repo.people_with_role_over(db, grid.path, "dispatcher")


def handlers_of(db: Session, order: Order) -> list[Person]:
    """Who should act on the order now: its assignee, or else its team."""
    if order.assignee_id:
        person = db.get(Person, order.assignee_id)
        return [person] if person else []
    if order.team_id:
        return repo.team_members(db, order.team_id)
    return []


def interested(db: Session, order: Order) -> list[Person]:
    """The reporter and followers: told about progress, asked to rate."""
    ids = [order.reporter_id, *sorted(repo.follower_ids(db, order.id or 0))]
    found = repo.people(db, ids)
    return [found[i] for i in ids if i in found]


def follow_instead(db: Session, order: Order, into: Order) -> None:
    """After a merge, everyone waiting on `order` follows `into`."""
    followers = repo.follower_ids(db, into.id or 0)
    for person_id in {order.reporter_id, *repo.follower_ids(db, order.id or 0)}:
        if person_id != into.reporter_id and person_id not in followers:
            db.add(Follower(order_id=into.id or 0, person_id=person_id))
