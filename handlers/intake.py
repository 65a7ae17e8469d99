"""点单: a resident's message becomes an order (or a follow of one, or nothing at all)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, or_, update
from sqlmodel import col, select

from handlers import orders
from handlers.buttons import Verb, press_data
from handlers.community import parse_duration
from handlers.directory import PersonInfo
from handlers.dispatch import suggest_team
from handlers.lifecycle import OPEN_STATES, Action
from handlers.protocol import Button, Kind, Outgoing, Text
from handlers.triage import Triage, triage
from handlers.triage.ahead import Asked
from handlers.triage.features import caption
from handlers.triage.normalize import fold, simplified
from handlers.triage.rules import words_of
from handlers.turn import Community, GridInfo, Turn
from storage import prepared, repo
from storage.models import Event, Follower, Order, Person, Photo, Prompt
from storage.prepared import Prepared

# "+1", "我也是", "同上", "我家也停水了": the same problem as an open order, not a new one.
FOLLOW_WORDS = re.compile(r"^\s*(\+\s*1(?!\d)|＋１|我也是|我也一样|同上|同问|我家也|一样|顶|me too|same here)", re.I)
FOLLOW_MAX_CHARS = 30
EMERGENCY = "sos"  # the kind of prompt that asks the dispatchers about a possible emergency
GROUPING_WINDOW = timedelta(minutes=2)  # a person's messages this close together are about one problem
FRAGMENT_MAX = 30  # characters: "3栋", "就在北门", "急！" add to a report; a paragraph is news of its own
FRAGMENT = "fragment"  # a prompt kind: a place or a photo said just before the report it belongs to
AMEND = "amend"  # an event: a message added to the order it belongs to
DUPLICATE_CANDIDATES = 12  # the most recent open orders like it that are compared


def asked_of(community: Community) -> Asked:
    """What triage needs of a community besides the text: its landmarks, the building numbers it knows (None
    when it lists none: then any is fine) and how strict it is."""
    config = community.config
    buildings = frozenset(grid.building for grid in config.grids if grid.building)
    return Asked(tuple(config.landmarks), buildings or None, config.triage.strictness)


def judge(turn: Turn, text: str, *, explicit: bool) -> Triage:
    """The verdict on `text`: judged ahead with the rest of its group when it was, else here."""
    asked = asked_of(turn.community)
    if turn.ahead is not None and (verdict := turn.ahead.get(text, explicit=explicit, asked=asked)) is not None:
        return verdict
    return triage(text, landmarks=asked.landmarks, buildings=asked.buildings, explicit=explicit,
                  strictness=asked.strictness)


def report(turn: Turn, text: str, *, explicit: bool) -> Order | None:
    """File `text` as an order if it is one; explicit reports always are. The order returned is to read:
    a new one is not in the session (`prepared.as_written`), so a change to it would not be stored."""
    if not words_of(caption(text.lower())) and not turn.incoming.photos:
        if explicit:
            turn.reply("report.empty")  # "/报事" alone, or "/报事 🙂": nothing to file
        return None
    verdict = judge(turn, text or "[图片]", explicit=explicit)
    if verdict.possible_emergency and not explicit:
        ask_about_emergency(turn, text)
        return None
    place = verdict.location
    could_join = verdict.is_request or not text.strip() or bool(place.building or place.unit or place.room
                                                                 or place.landmark)
    # plain chatter (most of a group) costs no query: only a request, a photo or a place can join an order
    recent = _just_reported(turn) if could_join and not (turn.incoming.is_direct or explicit) else None
    if recent is not None and _same_problem(recent, text, verdict) and (
            order := prepared.get(turn.db, Order, recent.id)) is not None:
        amend(turn, order, text, verdict)  # "电梯又坏了" / "3栋" / a photo: one problem, one order
        return order
    if not verdict.is_request and not explicit and _worth_keeping(text, verdict):
        _keep_for_a_moment(turn, text, verdict)  # "3栋" or a photo first: it joins the report that follows
    if verdict.action == "ask" and not explicit:
        ask_to_file(turn, text)
    if verdict.action != "file" and not explicit:
        return None
    return file_order(turn, text, verdict)


# --- one problem, one order: a person's consecutive messages in one chat within two minutes -------------
class Recent(NamedTuple):
    """What decides whether a message joins the order its sender just reported."""

    id: int
    category: str
    building: str | None


def _just_reported(turn: Turn) -> Recent | None:
    """The open order this person reported or added to in this chat within the grouping window, if any."""
    found = _JUST_REPORTED.first(turn.db, {"chat": turn.chat.id, "person": turn.person.id,
                                           "since": turn.now - GROUPING_WINDOW})
    return Recent(*found) if found is not None else None


# the person's newest events first (ix_event_actor_at), stopping at the first that is about an open order
_JUST_REPORTED = Prepared(
    select(Order.id, Order.category, Order.building).join(Event, col(Event.order_id) == col(Order.id))
    .where(Event.actor_id == bindparam("person"), Event.at >= bindparam("since"),
           col(Event.action).in_(("report", AMEND)), Order.chat_id == bindparam("chat"),
           Order.reporter_id == bindparam("person"), col(Order.state).in_(sorted(OPEN_STATES)))
    .order_by(col(Event.at).desc()).limit(1)
)


def _same_problem(order: Recent, text: str, verdict: Triage) -> bool:
    """A photo, a place, a few words more, or the same kind of problem at no other place: the same order."""
    if not text.strip():
        return True  # a bare photo
    place = verdict.location
    elsewhere = bool(place.building and order.building and place.building != order.building)
    if verdict.is_request:
        return verdict.category == order.category and not elsewhere
    # "3栋", "就在北门": a place; "谢谢", "收到" after a report are not part of it
    return not elsewhere and len(text.strip()) <= FRAGMENT_MAX and bool(
        place.building or place.unit or place.room or place.landmark)


def _worth_keeping(text: str, verdict: Triage) -> bool:
    place = verdict.location
    return (not text.strip()) or (len(text.strip()) <= FRAGMENT_MAX and bool(place.building or place.landmark))


def _keep_for_a_moment(turn: Turn, text: str, verdict: Triage) -> None:
    assert turn.person.id is not None
    turn.db.add(Prompt(kind=FRAGMENT, person_id=turn.person.id, chat_id=turn.chat.id, created_at=turn.now,
                       payload={"text": text, "photos": list(turn.incoming.photos)}))


def _fragments(turn: Turn) -> list[dict[str, Any]]:
    """What the person said just before (its payloads), kept to join the report it belongs to; taken once."""
    found = _FRAGMENTS.rows(turn.db, {"kind": FRAGMENT, "person": turn.person.id, "chat": turn.chat.id,
                                      "since": turn.now - GROUPING_WINDOW})
    if found:
        turn.db.execute(update(Prompt).where(col(Prompt.id).in_([row_id for row_id, _ in found]))
                        .values(answered_at=turn.now))
    return [payload for _, payload in found]


_FRAGMENTS = Prepared(  # run at every report
    select(Prompt.id, Prompt.payload)
    .where(Prompt.person_id == bindparam("person"), Prompt.kind == bindparam("kind"),
           Prompt.chat_id == bindparam("chat"), col(Prompt.answered_at).is_(None),
           Prompt.created_at >= bindparam("since"))
    .order_by(col(Prompt.id))
)


def amend(turn: Turn, order: Order, text: str, verdict: Triage) -> None:
    """Add a message to the order it belongs to: its words, the place it names, its photos."""
    place = verdict.location
    changed = {"text": f"{order.text}\n{text}".strip() if text.strip() else order.text}
    for field in ("building", "unit", "room"):
        if getattr(order, field) is None and getattr(place, field):
            changed[field] = getattr(place, field)
    prepared.update_row(turn.db, order, changed)
    event_id = prepared.insert_values(turn.db, Event, {
        "order_id": order.id, "action": AMEND, "actor_id": turn.person.id, "from_state": order.state,
        "to_state": order.state, "at": turn.now, "chat_id": turn.chat.id, "message_ref": turn.incoming.message_id,
        "detail": {"text": text, "place": place.as_dict()}})
    for ref in turn.incoming.photos:
        prepared.insert_values(turn.db, Photo, {"order_id": order.id, "event_id": event_id,
                                            "service": turn.incoming.service, "ref": ref, "purpose": "report",
                                            "at": turn.now})
    orders.update_card(turn, order)
    turn.reply("report.amended", number=order.number)


def file_order(turn: Turn, text: str, verdict: Triage) -> Order:
    """File an order and say so; the order returned is to read (see `report`)."""
    db, person = turn.db, turn.person
    assert person.id is not None and turn.chat.id is not None
    before = _fragments(turn) if not turn.incoming.is_direct else []
    if before:  # "3栋" or a photo just before: they are part of this report
        text = "\n".join([*(f.get("text", "") for f in before if f.get("text")), text]).strip()
        named = next((f for f in reversed(before) if f.get("text")), None)
        if named is not None and not verdict.location.building:
            verdict = replace(verdict, location=judge(turn, text, explicit=True).location)
    grid = _grid_for(turn, verdict)
    values = prepared.row_values(Order, {
        "community_id": turn.community.grid_id, "number": repo.next_number(db, turn.community.grid_id),
        "text": text, "title": orders.title_of(text) or "[图片]", "category": verdict.category or "other",
        "urgency": verdict.urgency or "blue", "matter": verdict.matter or "minor",
        "building": verdict.location.building, "unit": verdict.location.unit, "room": verdict.location.room,
        "grid_id": grid.id or turn.community.grid_id, "chat_id": turn.chat.id, "reporter_id": person.id,
        "confidence": verdict.confidence, "created_at": turn.now})
    # Prepared statements rather than the unit of work: filing is the hot path of every busy group.
    values["id"] = prepared.insert_values(db, Order, values)
    order = prepared.as_written(Order, values)  # read from here on, never changed in this turn
    detail = {"triage": verdict.as_json()}
    if verdict.location.landmark:
        detail["landmark"] = verdict.location.landmark
    event_id = prepared.insert_values(db, Event, {
        "order_id": order.id, "action": Action.REPORT.value, "actor_id": person.id, "from_state": None,
        "to_state": order.state, "at": turn.now, "chat_id": turn.chat.id,
        "message_ref": turn.incoming.message_id, "detail": detail})
    earlier = [ref for fragment in before for ref in fragment.get("photos", [])]
    for ref in [*earlier, *turn.incoming.photos]:
        prepared.insert_values(db, Photo, {"order_id": order.id, "event_id": event_id, "service": turn.incoming.service,
                                       "ref": ref, "purpose": "report", "at": turn.now})
    orders.post_card(turn, order, filed=True)
    if order.urgency == "red":
        orders.tell_chat(turn, order, "alert.red", notify=_on_duty(turn, order), category=order.category)
    if not turn.chat.bound and not turn.chat.is_direct:
        ask_to_bind(turn, order)
    if (same := find_duplicate(turn, order)) is not None:
        ask_if_duplicate(turn, order, same)
    return order


def _on_duty(turn: Turn, order: Order) -> list[Person]:
    """Who hears a red alert at once: the dispatchers and the team that would take it."""
    people = orders.dispatchers_of(turn.db, order)
    team = suggest_team(turn, order, repo.teams_in(turn.db, turn.community.grid_id))
    if team is not None:
        people += [p for p in repo.team_members(turn.db, team.id or 0) if p.id not in {q.id for q in people}]
    return people


def find_duplicate(turn: Turn, order: Order) -> Similar | None:
    """An open order of the same grid, category and place, reported lately, that reads alike."""
    since = turn.now - parse_duration(turn.community.config.duplicate_window).clock_time()
    statement = _SAME_PLACE if order.building else _ANY_PLACE
    words = _bigrams(order.id or 0, order.text)
    rows = statement.each(turn.db, {"grid": order.grid_id, "category": order.category, "me": order.id,
                                    "since": since, "building": order.building})  # read up to the first alike
    for other_id, text, building, number, title, matter in rows:
        same_place = bool(order.building) and order.building == building
        if _similarity(words, _bigrams(other_id, text)) >= (0.15 if same_place else 0.35):
            return Similar(other_id, number, title, matter)
    return None


class Similar(NamedTuple):
    """An open order that reads like a new one: what the reporter is asked about."""

    id: int
    number: int
    title: str
    matter: str


def _candidates(*, same_place: bool) -> Select:
    """Recent open orders of a grid and category, newest first; built once, run with bound values."""
    query = (
        select(Order.id, Order.text, Order.building, Order.number, Order.title, Order.matter)
        .where(Order.grid_id == bindparam("grid"), Order.category == bindparam("category"),
               Order.id != bindparam("me"), col(Order.state).in_(sorted(OPEN_STATES)),
               Order.created_at >= bindparam("since"))
        .order_by(col(Order.id).desc())
        .limit(DUPLICATE_CANDIDATES)
    )
    if same_place:  # another building is another problem
        query = query.where(or_(col(Order.building).is_(None), Order.building == bindparam("building")))
    return query


_ANY_PLACE = Prepared(_candidates(same_place=False))
_SAME_PLACE = Prepared(_candidates(same_place=True))


@lru_cache(maxsize=4096)
def _bigrams(order_id: int, text: str) -> frozenset[str]:
    """An order's character pairs; cached, since an order's text never changes and is compared often."""
    plain = "".join(ch for ch in simplified(fold(text[:300])).lower() if ch.isalnum())
    return frozenset(plain[i:i + 2] for i in range(len(plain) - 1))


def _similarity(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def ask_if_duplicate(turn: Turn, order: Order, same: Similar) -> None:
    """Filed already, so nothing is lost; the reporter may fold it into the earlier order."""
    prompt_id = prepared.insert_values(turn.db, Prompt, {  # a plain INSERT: asked after most reports in a busy group
        "kind": "dup", "person_id": turn.person.id, "chat_id": turn.chat.id, "order_id": order.id,
        "payload": {"into": same.id}, "created_at": turn.now})
    buttons = ((Button(Text("btn.dup_yes", {"number": same.number}), press_data(Verb.DUPLICATE, prompt_id, "y")),
                Button(Text("btn.dup_no"), press_data(Verb.DUPLICATE, prompt_id, "n"))),)
    turn.reply("dup.ask", buttons=buttons, order_id=order.id, number=order.number, same=same.number,
               title=orders.title_for(same, details=False))


def answer_duplicate(turn: Turn, prompt_id: int, yes: bool) -> None:
    prompt = turn.db.get(Prompt, prompt_id)
    if prompt is None or prompt.kind != "dup" or prompt.answered_at is not None:
        turn.refuse("prompt.gone")
        return
    order, into = turn.db.get(Order, prompt.order_id), turn.db.get(Order, prompt.payload.get("into"))
    if order is None or into is None:
        turn.refuse("prompt.gone")
        return
    if prompt.person_id != turn.person.id and not orders.may_act(turn, order, Action.MERGE):
        turn.refuse("prompt.not_yours")
        return
    prompt.answered_at = turn.now
    turn.db.add(prompt)
    if not yes:
        turn.alert("dup.kept", number=order.number)
        return
    if order.state not in OPEN_STATES or into.state not in OPEN_STATES:
        turn.refuse("prompt.gone")
        return
    # The reporter says it is the same problem: the system merges it on their word.
    orders.carry_out(turn.db, turn.community, order, Action.MERGE, orders.SYSTEM, turn.now, into_id=into.id,
                     chat_id=turn.chat.id, message_ref=turn.incoming.message_id)
    orders.follow_instead(turn.db, order, into)
    orders.update_card(turn, order)
    turn.reply("merge.done", number=order.number, into=into.number)


def ask_to_bind(turn: Turn, order: Order) -> None:
    """A chat nobody has bound yet: ask the dispatchers once, not at every report."""
    asked = turn.db.exec(
        select(Prompt.id).where(Prompt.kind == "bind", Prompt.chat_id == turn.chat.id,
                                col(Prompt.answered_at).is_(None))
    ).first()
    if asked is not None:
        return
    turn.db.add(Prompt(kind="bind", person_id=turn.person.id, chat_id=turn.chat.id, created_at=turn.now))
    orders.tell_chat(turn, order, "chat.unbound", notify=orders.dispatchers_of(turn.db, order))


def _grid_for(turn: Turn, verdict: Triage) -> GridInfo:
    """The chat's grid, or the building grid below it that the place names."""
    building = verdict.location.building
    return (building and turn.community.building_grid(building, turn.grid)) or turn.grid


def ask_to_file(turn: Turn, text: str) -> None:
    """An unsure request: a quiet question to the sender, kept in the database until answered."""
    assert turn.person.id is not None
    prompt = Prompt(kind="file", person_id=turn.person.id, chat_id=turn.chat.id,
                    payload={"text": text, "message_ref": turn.incoming.message_id}, created_at=turn.now)
    turn.db.add(prompt)
    turn.db.flush()
    buttons = ((Button(Text("btn.yes"), press_data(Verb.PROMPT, prompt.id, "y")),
                Button(Text("btn.no"), press_data(Verb.PROMPT, prompt.id, "n"))),)
    turn.reply("prompt.file", buttons=buttons)


def ask_about_emergency(turn: Turn, text: str) -> None:
    """Danger words in a message that does not read as a request: never quiet. The chat's dispatchers are
    asked (可能的紧急情况), and one tap of theirs, or of the sender, files it as a red order."""
    assert turn.person.id is not None
    prompt = Prompt(kind=EMERGENCY, person_id=turn.person.id, chat_id=turn.chat.id,
                    payload={"text": text, "message_ref": turn.incoming.message_id}, created_at=turn.now)
    turn.db.add(prompt)
    turn.db.flush()
    assert prompt.id is not None
    dispatchers = repo.people_with_role_over(turn.db, turn.grid.path, "dispatcher")
    buttons = ((Button(Text("btn.sos_yes"), press_data(Verb.EMERGENCY, prompt.id, "y")),
                Button(Text("btn.sos_no"), press_data(Verb.EMERGENCY, prompt.id, "n"))),)
    turn.out.append(Outgoing(Kind.SEND, Text("emergency.possible", {"names": [p.name for p in dispatchers]}),
                             lang=turn.chat_lang, service=turn.incoming.service, chat_id=turn.incoming.chat_id,
                             reply_to=turn.incoming.message_id, buttons=buttons, mentions=turn.mentions(dispatchers)))


def answer_emergency(turn: Turn, prompt_id: int, yes: bool) -> None:
    prompt = turn.db.get(Prompt, prompt_id)
    if prompt is None or prompt.kind != EMERGENCY or prompt.answered_at is not None:
        turn.refuse("prompt.gone")
        return
    staff = turn.granted_roles(turn.grid) or (turn.admin_may_dispatch() and prompt.chat_id == turn.chat.id)
    if prompt.person_id != turn.person.id and not staff:
        turn.refuse("emergency.not_yours")
        return
    prompt.answered_at = turn.now
    turn.db.add(prompt)
    if not yes:
        turn.alert("emergency.dismissed")
        return
    reporter = turn.db.get(Person, prompt.person_id)
    if reporter is None or reporter.id is None:
        turn.refuse("prompt.gone")
        return
    text = prompt.payload.get("text", "")
    verdict = replace(judge(turn, text, explicit=True), urgency="red")
    on_behalf = replace(turn, person=PersonInfo(reporter.id, reporter.name, reporter.lang, None))
    file_order(on_behalf, text, verdict)


def answer_prompt(turn: Turn, prompt_id: int, yes: bool) -> None:
    prompt = turn.db.get(Prompt, prompt_id)
    if prompt is None or prompt.answered_at is not None:
        turn.refuse("prompt.gone")
        return
    if prompt.person_id != turn.person.id:
        turn.refuse("prompt.not_yours")
        return
    prompt.answered_at = turn.now
    turn.db.add(prompt)
    if yes:
        text = prompt.payload.get("text", "")
        file_order(turn, text, judge(turn, text, explicit=True))
    else:
        turn.alert("prompt.dropped")


def follow(turn: Turn, order: Order) -> None:
    """The speaker has the same problem: follow the order instead of filing a new one. Only in the chat the
    order lives in: a follower may rate it, and a stranger's chat must not buy votes."""
    if order.chat_id not in (None, turn.chat.id) and not orders.concerns(turn, order):
        turn.refuse("refuse.follow.chat", number=order.number)
        return
    if not orders.attempt(turn, order, Action.FOLLOW):
        return
    turn.db.add(Follower(order_id=order.id or 0, person_id=turn.person.id or 0))
    turn.reply("follow.added", number=order.number, name=turn.person.name)


def is_follow(text: str) -> bool:
    return len(text) <= FOLLOW_MAX_CHARS and bool(FOLLOW_WORDS.match(text))


def latest_open_order(turn: Turn) -> Order | None:
    """The most recent open order of this chat: what a bare "+1" most likely answers."""
    query = (
        select(Order)
        .where(Order.chat_id == turn.chat.id, Order.state.in_(sorted(OPEN_STATES)))  # type: ignore[attr-defined]
        .order_by(Order.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    return turn.db.exec(query).first()
