"""派单: dispatchers assign, merge and cancel orders and bind chats to grids; handlers return them."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col

from handlers import orders
from handlers.buttons import Verb, press_data
from handlers.lifecycle import RETURN_REASONS, Action, Capacity
from handlers.protocol import Button, Kind, Outgoing, Text
from handlers.turn import GridInfo, Turn
from storage import repo
from storage.models import Chat, Order, Person, Prompt, Team


def assign(turn: Turn, order: Order, target: str | None) -> None:
    """Assign to a person (@name) or a team (by name); without a target, offer the teams as buttons."""
    if not orders.may_act(turn, order, Action.ASSIGN):
        turn.refuse("refuse.assign.role")
        return
    if target is None:
        _offer_teams(turn, order)
        return
    person, team = _resolve_target(turn, target)
    if person is None and team is None:
        turn.refuse("assign.unknown_target", target=target)
        return
    if person is not None and team is None:
        teams = repo.teams_of(turn.db, person.id or 0)
        team = teams[0] if teams else None
    if not orders.attempt(turn, order, Action.ASSIGN, assignee_id=person.id if person else None,
                     team_id=team.id if team else None):
        return
    orders.update_card(turn, order)
    handlers = [person] if person else repo.team_members(turn.db, team.id or 0) if team else []
    buttons = ((Button(Text("btn.accept"), press_data(Verb.ACCEPT, order.id)),
                Button(Text("btn.return"), press_data(Verb.RETURN, order.id))),)
    orders.tell_chat(turn, order, "assign.done", notify=handlers, buttons=buttons,
                     team=team.name if team else None, assignee=person.name if person else None,
                     resolve_due=orders.local(order.resolve_due, turn.community.tz),
                     respond_due=orders.local(order.respond_due, turn.community.tz))
    orders.brief_privately(turn, order, handlers)  # whoever does the job needs the room and the words


def _resolve_target(turn: Turn, target: str) -> tuple[Person | None, Team | None]:
    name = target.lstrip("@")
    for mention in turn.incoming.mentions:
        if mention.name.lstrip("@") == name and mention.external_id:
            identity = repo.identity_of(turn.db, turn.incoming.service, mention.external_id)
            if identity:
                return turn.db.get(Person, identity.person_id), None
    team = repo.team_by_name(turn.db, name)
    if team is not None:
        return None, team
    person = repo.person_by_handle(turn.db, turn.incoming.service, name) or repo.person_by_name(turn.db, name)
    return person, None


def _offer_teams(turn: Turn, order: Order) -> None:
    teams = repo.teams_in(turn.db, turn.community.grid_id)
    if not teams:
        turn.refuse("assign.no_teams")
        return
    suggested = suggest_team(turn, order, teams)
    teams.sort(key=lambda team: team.id != (suggested.id if suggested else None))
    rows = tuple((Button(Text("btn.team", {"name": t.name}), press_data(Verb.ASSIGN, order.id, f"t{t.id}")),)
                 for t in teams[:8])
    turn.reply("assign.pick", buttons=rows, number=order.number,
               suggested=suggested.name if suggested else None)


def suggest_team(turn: Turn, order: Order, teams: list[Team]) -> Team | None:
    """The team for this order's category, else for its matter class (三事分流)."""
    return next((t for t in teams if order.category in (t.categories or [])), None) or next(
        (t for t in teams if t.matter == order.matter), None
    )


def assign_button(turn: Turn, order: Order, arg: str | None) -> None:
    if arg is None:
        assign(turn, order, None)
        return
    ident = int(arg[1:])  # the codec let through only t<digits> or p<digits>
    target = turn.db.get(Team, ident) if arg[0] == "t" else turn.db.get(Person, ident)
    if target is None:
        turn.refuse("assign.unknown_target", target=arg)
        return
    assign(turn, order, target.name)


def give_back(turn: Turn, order: Order, reason: str | None, words: list[str]) -> None:
    """退单: a handler hands an order back, with a reason; without one, offer the reasons."""
    if reason is None and not words:
        if not orders.may_act(turn, order, Action.RETURN):
            turn.refuse("refuse.return.role", number=order.number)
            return
        rows = tuple((Button(Text(f"reason.{code}"), press_data(Verb.RETURN, order.id, code)),)
                     for code in RETURN_REASONS)
        turn.reply("return.pick", buttons=rows, number=order.number)
        return
    code = reason if reason in RETURN_REASONS else "other"
    note = " ".join(words) or None
    if not orders.attempt(turn, order, Action.RETURN, reason=code, note=note):
        return
    orders.update_card(turn, order)
    orders.tell_chat(turn, order, "return.done", notify=orders.dispatchers_of(turn.db, order),
                     reason=code, note=note, name=turn.person.name)


def cancel(turn: Turn, order: Order, reason: str | None) -> None:
    if not orders.attempt(turn, order, Action.CANCEL, reason=reason):
        return
    orders.update_card(turn, order)
    turn.reply("cancel.done", number=order.number)


def merge(turn: Turn, order: Order, into: Order) -> None:
    """合并: `order` duplicates `into`; its reporter follows `into` from now on."""
    if into.community_id != order.community_id or into.state not in orders.OPEN_STATES:
        turn.refuse("refuse.merge.target", number=into.number)
        return
    if not orders.attempt(turn, order, Action.MERGE, into_id=into.id):
        return
    orders.follow_instead(turn.db, order, into)
    orders.update_card(turn, order)
    turn.reply("merge.done", number=order.number, into=into.number)


BIND_REQUEST = "bind_request"  # a chat admin asked to bind their chat; the grid's dispatchers decide


def bind(turn: Turn, code: str | None) -> None:
    """绑定: a dispatcher or supervisor of the grid ties this chat to it, so its reports land there.

    Authority over a grid comes from the community, never from owning a chat: a chat admin without a
    role on the grid may only ask, and the grid's dispatchers and supervisors approve by direct message.
    """
    if turn.incoming.is_direct:
        turn.reply("bind.direct")
        return
    if not code:
        turn.reply("bind.usage")
        return
    grid = next((g for g in turn.community.grids.values() if g.code == code and g.level != "unsorted"), None)
    if grid is None:
        turn.reply("bind.unknown", code=code)
        return
    if turn.granted_roles(grid) & {Capacity.DISPATCHER, Capacity.SUPERVISOR}:
        _bind_chat(turn, grid)
        return
    if not turn.incoming.sender_is_admin:
        turn.refuse("refuse.bind.role")
        return
    _ask_to_approve(turn, grid)


def _bind_chat(turn: Turn, grid: GridInfo) -> None:
    turn.chat = turn.directory.bind(turn.db, turn.chat, grid.id)
    turn.db.execute(update(Prompt).where(col(Prompt.kind).in_(("bind", BIND_REQUEST)),
                                         col(Prompt.chat_id) == turn.chat.id).values(answered_at=turn.now))
    turn.reply("bind.done", grid=grid.name, code=grid.code)


def _ask_to_approve(turn: Turn, grid: GridInfo) -> None:
    """A chat admin asks to bind their chat: each dispatcher and supervisor of the grid gets a button."""
    approvers = _approvers(turn, grid)
    if not approvers:
        turn.reply("bind.nobody", grid=grid.name)
        return
    assert turn.person.id is not None
    row = turn.db.get(Chat, turn.chat.id)
    request = Prompt(kind=BIND_REQUEST, person_id=turn.person.id, chat_id=turn.chat.id,
                     payload={"grid_id": grid.id, "chat": (row.title if row else None) or turn.incoming.chat_id},
                     created_at=turn.now)
    turn.db.add(request)
    turn.db.flush()
    assert request.id is not None
    buttons = ((Button(Text("btn.approve"), press_data(Verb.BIND, request.id, "y")),
                Button(Text("btn.decline"), press_data(Verb.BIND, request.id, "n"))),)
    for person in approvers:
        turn.out.append(Outgoing(Kind.DIRECT, Text("bind.request", {
            "name": turn.person.name, "chat": request.payload["chat"], "grid": grid.name, "code": grid.code}),
            lang=person.lang or turn.community.lang, person_id=person.id, buttons=buttons))
    turn.reply("bind.requested", grid=grid.name)


def _approvers(turn: Turn, grid: GridInfo) -> list[Person]:
    found = {p.id: p for role in ("dispatcher", "supervisor")
             for p in repo.people_with_role_over(turn.db, grid.path, role)}
    return [found[key] for key in sorted(k for k in found if k is not None)]


def answer_binding(turn: Turn, request_id: int, yes: bool) -> None:
    """A dispatcher or supervisor of the grid approves or declines a chat admin's binding request."""
    request = turn.db.get(Prompt, request_id)
    if request is None or request.kind != BIND_REQUEST or request.answered_at is not None:
        turn.refuse("prompt.gone")
        return
    grid = turn.community.grids.get(request.payload.get("grid_id", 0))
    chat = turn.db.get(Chat, request.chat_id) if request.chat_id else None
    if grid is None or chat is None:
        turn.refuse("prompt.gone")
        return
    if not turn.granted_roles(grid) & {Capacity.DISPATCHER, Capacity.SUPERVISOR}:
        turn.refuse("refuse.bind.role")
        return
    request.answered_at = turn.now
    turn.db.add(request)
    if not yes:
        turn.alert("bind.declined", grid=grid.name)
        return
    turn.db.execute(update(Chat).where(col(Chat.id) == chat.id).values(grid_id=grid.id, bound=True))
    turn.db.execute(update(Prompt).where(col(Prompt.kind) == "bind", col(Prompt.chat_id) == chat.id)
                    .values(answered_at=turn.now))
    turn.directory.forget()  # the cached chat still says unbound
    turn.alert("bind.approved", grid=grid.name)
    turn.out.append(Outgoing(Kind.SEND, Text("bind.done", {"grid": grid.name, "code": grid.code}),
                             lang=chat.lang or turn.community.lang, service=chat.service, chat_id=chat.external_id))
