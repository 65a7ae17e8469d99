"""The order lifecycle: one transition table, one permission table, pure functions.

`transition(order, action, actor, now, …)` checks both tables and returns the changes to make and
the event to record; it touches no database and reads no clock, so every rule is testable alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    REPORTED = "reported"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    MERGED = "merged"
    CANCELLED = "cancelled"


# The state sets, defined here only. States are StrEnums, so these serve SQL `in_` as they are.
OPEN_STATES = frozenset({State.REPORTED, State.ASSIGNED, State.IN_PROGRESS, State.REOPENED})
DONE_STATES = frozenset({State.RESOLVED, State.CLOSED})  # finished: counts for the resolution rate
COUNTED_STATES = OPEN_STATES | DONE_STATES  # what the rates count: merged and cancelled orders are left out
FINAL_STATES = frozenset({State.CLOSED, State.MERGED, State.CANCELLED})


class Action(StrEnum):
    REPORT = "report"
    ASSIGN = "assign"
    ACCEPT = "accept"
    RETURN = "return"
    CLAIM = "claim"
    DONE = "done"
    RATE = "rate"
    MERGE = "merge"
    CANCEL = "cancel"
    ESCALATE = "escalate"
    FOLLOW = "follow"
    REPORT_BACK = "report_back"  # 报到: the escalation's target acknowledges
    ARRIVE = "arrive"  # 到场: someone is on the scene
    PLAN = "plan"  # 方案: a plan for a complex order
    WAIT = "wait"  # 等待: waiting on the resident; the clocks stand still
    RESUME = "resume"  # 继续: the wait is over
    CORRECT = "correct"  # 修改: a dispatcher corrects the category, urgency, matter or place


class Capacity(StrEnum):
    """How an actor stands to one order: a role in its grid, or a relation to the order."""

    ANYONE = "anyone"
    REPORTER = "reporter"
    FOLLOWER = "follower"
    ASSIGNEE = "assignee"
    TEAM_MEMBER = "team_member"  # member of the team the order is assigned to
    HANDLER = "handler"  # member of any team
    VOLUNTEER = "volunteer"  # member of a volunteer team
    DISPATCHER = "dispatcher"
    SUPERVISOR = "supervisor"


# action → {from state: to state}. None as the target keeps the state.
TRANSITIONS: dict[Action, dict[State, State | None]] = {
    Action.ASSIGN: {
        State.REPORTED: State.ASSIGNED,
        State.ASSIGNED: State.ASSIGNED,
        State.IN_PROGRESS: State.ASSIGNED,
        State.REOPENED: State.ASSIGNED,
    },
    Action.ACCEPT: {State.ASSIGNED: State.IN_PROGRESS},
    Action.RETURN: {State.ASSIGNED: State.REPORTED, State.IN_PROGRESS: State.ASSIGNED},
    Action.CLAIM: {State.REPORTED: State.IN_PROGRESS, State.REOPENED: State.IN_PROGRESS},
    Action.DONE: {State.IN_PROGRESS: State.RESOLVED},
    # A low score goes to REOPENED instead; followers may still rate a closed order.
    Action.RATE: {State.RESOLVED: State.CLOSED, State.CLOSED: State.CLOSED},
    Action.MERGE: dict.fromkeys(OPEN_STATES, State.MERGED),
    Action.CANCEL: dict.fromkeys(OPEN_STATES, State.CANCELLED),
    Action.ESCALATE: dict.fromkeys(OPEN_STATES),
    Action.REPORT_BACK: dict.fromkeys(OPEN_STATES),
    Action.FOLLOW: dict.fromkeys(OPEN_STATES),  # following a finished order would buy a vote on it
    Action.ARRIVE: {State.IN_PROGRESS: None},
    Action.PLAN: {State.ASSIGNED: None, State.IN_PROGRESS: None},
    Action.WAIT: {State.IN_PROGRESS: None},
    Action.RESUME: {State.IN_PROGRESS: None},
    Action.CORRECT: dict.fromkeys(OPEN_STATES | {State.RESOLVED, State.CLOSED}),
}

# action → who may do it. Cancel by a reporter is limited further below (before work starts).
PERMISSIONS: dict[Action, frozenset[Capacity]] = {
    Action.REPORT: frozenset({Capacity.ANYONE}),
    Action.ASSIGN: frozenset({Capacity.DISPATCHER, Capacity.SUPERVISOR}),
    Action.ACCEPT: frozenset({Capacity.ASSIGNEE, Capacity.TEAM_MEMBER}),
    Action.RETURN: frozenset({Capacity.ASSIGNEE, Capacity.TEAM_MEMBER}),
    Action.CLAIM: frozenset({Capacity.VOLUNTEER, Capacity.HANDLER}),
    Action.DONE: frozenset({Capacity.ASSIGNEE}),
    Action.RATE: frozenset({Capacity.REPORTER, Capacity.FOLLOWER}),
    Action.MERGE: frozenset({Capacity.DISPATCHER, Capacity.SUPERVISOR}),
    Action.CANCEL: frozenset({Capacity.REPORTER, Capacity.DISPATCHER, Capacity.SUPERVISOR}),
    Action.ESCALATE: frozenset({Capacity.DISPATCHER, Capacity.SUPERVISOR}),
    Action.REPORT_BACK: frozenset({Capacity.SUPERVISOR, Capacity.TEAM_MEMBER, Capacity.DISPATCHER}),
    Action.FOLLOW: frozenset({Capacity.ANYONE}),
    Action.ARRIVE: frozenset({Capacity.ASSIGNEE, Capacity.TEAM_MEMBER}),
    Action.PLAN: frozenset({Capacity.ASSIGNEE, Capacity.TEAM_MEMBER, Capacity.DISPATCHER}),
    Action.WAIT: frozenset({Capacity.ASSIGNEE, Capacity.TEAM_MEMBER}),
    Action.RESUME: frozenset({Capacity.ASSIGNEE, Capacity.TEAM_MEMBER, Capacity.REPORTER, Capacity.DISPATCHER}),
    Action.CORRECT: frozenset({Capacity.DISPATCHER, Capacity.SUPERVISOR}),
}

class Source(StrEnum):
    """Where a staff role comes from."""

    CHAT_ADMIN = "chat_admin"  # an admin of a chat (Telegram admin, Matrix power ≥ 50), when admins dispatch
    DISPATCHER = "dispatcher"  # `dispatcher_of` a grid in linli.toml
    SUPERVISOR = "supervisor"  # `supervisor_of` a grid, or the one-time owner code


class Reach(StrEnum):
    """Where a role's word counts."""

    OWN_CHAT = "own_chat"  # the orders reported in the chat where the speaker holds it
    GRID_SUBTREE = "grid_subtree"  # the orders of the grid it was given on, and of every grid below


# The scope of authority, the third axis of PERMISSIONS (role × action × where): owning a chat reaches
# that chat's orders only; the community's grants reach a grid and everything below it.
AUTHORITY: dict[Source, tuple[Capacity, Reach]] = {
    Source.CHAT_ADMIN: (Capacity.DISPATCHER, Reach.OWN_CHAT),
    Source.DISPATCHER: (Capacity.DISPATCHER, Reach.GRID_SUBTREE),
    Source.SUPERVISOR: (Capacity.SUPERVISOR, Reach.GRID_SUBTREE),
}


def reaches(reach: Reach, *, held_in_chat: int | None = None, order_chat: int | None = None,
            granted_on: frozenset[str] = frozenset(), order_grid_path: str = "") -> bool:
    """Whether a role held in `held_in_chat`, or granted on grids with the paths `granted_on`, reaches an
    order of `order_chat` in the grid at `order_grid_path`."""
    if reach is Reach.OWN_CHAT:
        return held_in_chat is not None and held_in_chat == order_chat
    return any(order_grid_path.startswith(path) for path in granted_on)


RETURN_REASONS = ("not_mine", "need_info", "no_access", "too_big", "other")
REOPEN_AT_OR_BELOW = 2
MAX_LEVEL = 3  # grid → community → street


class Refusal(Exception):
    """A transition that may not happen; `key` names the text that explains why."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True, slots=True)
class OrderView:
    """What the rules need to know about an order."""

    id: int
    state: State
    reporter_id: int
    assignee_id: int | None = None
    team_id: int | None = None
    level: int = 0
    rating_round: int = 0
    follower_ids: frozenset[int] = frozenset()
    rater_ids: frozenset[int] = frozenset()  # who rated in the current round
    worker_ids: frozenset[int] = frozenset()  # who dispatched, accepted, claimed or finished it
    paused: bool = False
    arrived: bool = False


@dataclass(frozen=True, slots=True)
class Actor:
    person_id: int
    roles: frozenset[Capacity] = frozenset()  # DISPATCHER / SUPERVISOR for the order's grid
    team_ids: frozenset[int] = frozenset()
    volunteer: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """What a transition does: fields to set on the order and the event to record."""

    action: Action
    from_state: State
    to_state: State
    fields: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


def capacities(order: OrderView, actor: Actor) -> set[Capacity]:
    held = {Capacity.ANYONE, *actor.roles}
    if actor.person_id == order.reporter_id:
        held.add(Capacity.REPORTER)
    if actor.person_id in order.follower_ids:
        held.add(Capacity.FOLLOWER)
    if order.assignee_id is not None and actor.person_id == order.assignee_id:
        held.add(Capacity.ASSIGNEE)
    if order.team_id is not None and order.team_id in actor.team_ids:
        held.add(Capacity.TEAM_MEMBER)
    if actor.team_ids:
        held.add(Capacity.HANDLER)
    if actor.volunteer:
        held.add(Capacity.VOLUNTEER)
    return held


def may(order: OrderView, actor: Actor, action: Action) -> bool:
    return bool(capacities(order, actor) & PERMISSIONS[action])


def transition(
    order: OrderView,
    action: Action,
    actor: Actor,
    now: datetime,
    *,
    assignee_id: int | None = None,
    team_id: int | None = None,
    reason: str | None = None,
    score: int | None = None,
    photos: tuple[str, ...] = (),
    into_id: int | None = None,
    labels: dict[str, str | None] | None = None,
) -> Change:
    """Check `action` on `order` by `actor` and describe its effect."""
    allowed = TRANSITIONS[action]
    if order.state not in allowed:
        raise Refusal(f"refuse.{action.value}.state", state=order.state.value)
    if not may(order, actor, action):
        raise Refusal(f"refuse.{action.value}.role")
    target = allowed[order.state] or order.state
    fields: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    held = capacities(order, actor)

    match action:
        case Action.ASSIGN:
            if assignee_id is None and team_id is None:
                raise Refusal("refuse.assign.target")
            fields = {"assignee_id": assignee_id, "team_id": team_id, "assigned_at": now}
            detail = {"assignee_id": assignee_id, "team_id": team_id}
        case Action.ACCEPT:
            fields = {"assignee_id": actor.person_id, "accepted_at": now}
        case Action.RETURN:
            if reason is None:
                raise Refusal("refuse.return.reason")
            fields = {"assignee_id": None}
            if target is State.REPORTED:
                fields["team_id"] = None
            detail = {"reason": reason}
        case Action.CLAIM:
            fields = {"assignee_id": actor.person_id, "team_id": _claim_team(actor), "accepted_at": now}
            fields["assigned_at"] = now
        case Action.DONE:
            if not photos:
                raise Refusal("refuse.done.photo")
            fields = {"resolved_at": now, "paused_at": None}
            detail = {"photos": list(photos)}
        case Action.RATE:
            if score is None or not 1 <= score <= 5:
                raise Refusal("refuse.rate.score")
            if actor.person_id in order.rater_ids:
                raise Refusal("refuse.rate.twice")
            if actor.person_id in order.worker_ids or held & {Capacity.ASSIGNEE, Capacity.TEAM_MEMBER}:
                raise Refusal("refuse.rate.worker")  # nobody marks their own work
            if score <= REOPEN_AT_OR_BELOW:
                target = State.REOPENED
                fields = {"resolved_at": None, "rating_round": order.rating_round + 1}
            elif order.state is State.RESOLVED:
                fields = {"closed_at": now}
            detail = {"score": score}
        case Action.MERGE:
            if into_id is None or into_id == order.id:
                raise Refusal("refuse.merge.target")
            fields = {"merged_into_id": into_id, "closed_at": now}
            detail = {"into_id": into_id}
        case Action.CANCEL:
            staff = held & {Capacity.DISPATCHER, Capacity.SUPERVISOR}
            if not staff and order.state not in (State.REPORTED, State.ASSIGNED):
                raise Refusal("refuse.cancel.started")
            if staff and Capacity.REPORTER not in held and not reason:
                raise Refusal("refuse.cancel.reason")
            fields = {"closed_at": now}
            detail = {"reason": reason} if reason else {}
        case Action.ESCALATE:
            if order.level >= MAX_LEVEL:
                raise Refusal("refuse.escalate.top")
            fields = {"level": order.level + 1, "escalated_at": now, "reported_back_at": None}
            detail = {"level": order.level + 1, "reason": reason} if reason else {"level": order.level + 1}
        case Action.REPORT_BACK:
            if order.level == 0:
                raise Refusal("refuse.report_back.none")
            fields = {"reported_back_at": now}
        case Action.FOLLOW:
            if Capacity.REPORTER in held or Capacity.FOLLOWER in held:
                raise Refusal("refuse.follow.already")
        case Action.ARRIVE:
            if order.arrived:
                raise Refusal("refuse.arrive.already")
            fields = {"arrived_at": now}
        case Action.PLAN:
            if not reason:
                raise Refusal("refuse.plan.text")
            fields = {"planned_at": now}
            detail = {"plan": reason}
        case Action.WAIT:
            if order.paused:
                raise Refusal("refuse.wait.already")
            if not reason:
                raise Refusal("refuse.wait.reason")
            detail = {"reason": reason}
        case Action.RESUME:
            if not order.paused:
                raise Refusal("refuse.resume.not_waiting")
        case Action.CORRECT:
            if not labels:
                raise Refusal("refuse.correct.nothing")
            fields = dict(labels)
            detail = {"labels": dict(labels)}
    return Change(action, order.state, target, fields, detail)


def _claim_team(actor: Actor) -> int | None:
    return min(actor.team_ids) if actor.team_ids else None
