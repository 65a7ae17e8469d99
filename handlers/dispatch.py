"""派单: dispatchers assign, merge and cancel orders and bind chats to grids; handlers return them."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col

from handlers import orders
from handlers.lifecycle import RETURN_REASONS, Action, Capacity
from handlers.protocol import Button, Text
from handlers.turn import Turn
from storage import repo
from storage.models import Order, Person, Prompt, Team


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
    buttons = ((Button(Text("btn.accept"), f"acc:{order.id}"), Button(Text("btn.return"), f"ret:{order.id}")),)
    orders.tell_chat(turn, order, "assign.done", notify=handlers, buttons=buttons,
                     team=team.name if team else None, assignee=person.name if person else None,
                     resolve_due=orders.local(order.resolve_due, turn.community.tz),
                     respond_due=orders.local(order.respond_due, turn.community.tz))


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
    rows = tuple((Button(Text("btn.team", {"name": t.name}), f"asg:{order.id}:t{t.id}"),) for t in teams[:8])
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
    kind, ident = arg[0], int(arg[1:]) if arg[1:].isdigit() else 0
    target = turn.db.get(Team, ident) if kind == "t" else turn.db.get(Person, ident)
    if target is None:
        turn.refuse("assign.unknown_target", target=arg)
        return
    assign(turn, order, target.name)


def give_back(turn: Turn, order: Order, reason: str | None, words: list[str]) -> None:
    """退单: a handler hands an order back, with a reason; without one, offer the reasons."""
    if reason is None and not words:
        if not orders.may_act(turn, order, Action.RETURN):
            turn.refuse("refuse.return.role")
            return
        rows = tuple((Button(Text(f"reason.{code}"), f"ret:{order.id}:{code}"),) for code in RETURN_REASONS)
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


def bind(turn: Turn, code: str | None) -> None:
    """绑定: a dispatcher ties this chat to a grid, so its reports land there."""
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
    actor = turn.actor(grid)
    # A chat admin may bind their own chat once, as the README's zero-config has it; a bound chat is
    # re-bound only by the grid's own dispatchers. (`invite = "dispatchers"` keeps strangers' groups out.)
    first_binding_by_admin = turn.admin_may_dispatch() and not turn.chat.bound
    if not actor.roles & {Capacity.DISPATCHER, Capacity.SUPERVISOR} and not first_binding_by_admin:
        turn.refuse("refuse.bind.role")
        return
    turn.chat = turn.directory.bind(turn.db, turn.chat, grid.id or turn.chat.grid_id)
    turn.db.execute(update(Prompt).where(col(Prompt.kind) == "bind", col(Prompt.chat_id) == turn.chat.id)
                    .values(answered_at=turn.now))
    turn.reply("bind.done", grid=grid.name, code=grid.code)
