"""The state machine and the permission table, as pure functions with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.lifecycle import (
    TRANSITIONS,
    Action,
    Actor,
    Capacity,
    OrderView,
    Refusal,
    State,
    transition,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
REPORTER, FOLLOWER, ASSIGNEE, TEAMMATE, OTHER_HANDLER, VOLUNTEER, DISPATCHER, SUPERVISOR, RESIDENT = range(1, 10)
TEAM, OTHER_TEAM, VOLUNTEERS = 100, 200, 300

ACTORS = {
    "resident": Actor(RESIDENT),
    "reporter": Actor(REPORTER),
    "follower": Actor(FOLLOWER),
    "assignee": Actor(ASSIGNEE, team_ids=frozenset({TEAM})),
    "teammate": Actor(TEAMMATE, team_ids=frozenset({TEAM})),
    "other handler": Actor(OTHER_HANDLER, team_ids=frozenset({OTHER_TEAM})),
    "volunteer": Actor(VOLUNTEER, team_ids=frozenset({VOLUNTEERS}), volunteer=True),
    "dispatcher": Actor(DISPATCHER, roles=frozenset({Capacity.DISPATCHER})),
    "supervisor": Actor(SUPERVISOR, roles=frozenset({Capacity.SUPERVISOR})),
}

# Who may do what, written out by hand: each role × each action. Read across a row.
#                    resident reporter follower assignee teammate other  volunteer dispatcher supervisor
ALLOWED = {
    Action.ASSIGN:      (0,      0,       0,       0,       0,       0,      0,        1,         1),
    Action.ACCEPT:      (0,      0,       0,       1,       1,       0,      0,        0,         0),
    Action.RETURN:      (0,      0,       0,       1,       1,       0,      0,        0,         0),
    Action.CLAIM:       (0,      0,       0,       1,       1,       1,      1,        0,         0),
    Action.DONE:        (0,      0,       0,       1,       0,       0,      0,        0,         0),
    Action.RATE:        (0,      1,       1,       0,       0,       0,      0,        0,         0),
    Action.MERGE:       (0,      0,       0,       0,       0,       0,      0,        1,         1),
    Action.CANCEL:      (0,      1,       0,       0,       0,       0,      0,        1,         1),
    Action.ESCALATE:    (0,      0,       0,       0,       0,       0,      0,        1,         1),
    Action.REPORT_BACK: (0,      0,       0,       1,       1,       0,      0,        1,         1),
    Action.FOLLOW:      (1,      0,       0,       1,       1,       1,      1,        1,         1),
    Action.ARRIVE:      (0,      0,       0,       1,       1,       0,      0,        0,         0),
    Action.PLAN:        (0,      0,       0,       1,       1,       0,      0,        1,         0),
    Action.WAIT:        (0,      0,       0,       1,       1,       0,      0,        0,         0),
    Action.RESUME:      (0,      1,       0,       1,       1,       0,      0,        1,         0),
    Action.CORRECT:     (0,      0,       0,       0,       0,       0,      0,        1,         1),
}
# The state in which each action is tried, so that only the permission decides.
TRIED_IN = {
    Action.ASSIGN: State.REPORTED, Action.ACCEPT: State.ASSIGNED, Action.RETURN: State.ASSIGNED,
    Action.CLAIM: State.REPORTED, Action.DONE: State.IN_PROGRESS, Action.RATE: State.RESOLVED,
    Action.MERGE: State.REPORTED, Action.CANCEL: State.REPORTED, Action.ESCALATE: State.ASSIGNED,
    Action.REPORT_BACK: State.ASSIGNED, Action.FOLLOW: State.ASSIGNED, Action.ARRIVE: State.IN_PROGRESS,
    Action.PLAN: State.IN_PROGRESS, Action.WAIT: State.IN_PROGRESS, Action.RESUME: State.IN_PROGRESS,
    Action.CORRECT: State.ASSIGNED,
}
PARAMS = {
    Action.ASSIGN: {"team_id": TEAM}, Action.RETURN: {"reason": "not_mine"}, Action.DONE: {"photos": ("p",)},
    Action.RATE: {"score": 5}, Action.MERGE: {"into_id": 99}, Action.CANCEL: {"reason": "dup"},
    Action.PLAN: {"reason": "先排查线路"}, Action.WAIT: {"reason": "家里没人"},
    Action.CORRECT: {"labels": {"urgency": "red"}},
}


def order(state: State, **kw) -> OrderView:  # type: ignore[no-untyped-def]
    defaults = {"id": 1, "state": state, "reporter_id": REPORTER, "assignee_id": ASSIGNEE, "team_id": TEAM,
                "follower_ids": frozenset({FOLLOWER}), "level": 1 if state is State.ASSIGNED else 0}
    if state is State.REPORTED:
        defaults.update(assignee_id=None, team_id=None)
    return OrderView(**{**defaults, **kw})


@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize("who", list(ACTORS))
def test_permission_table(action: Action, who: str) -> None:
    expected = ALLOWED[action][list(ACTORS).index(who)]
    target = order(TRIED_IN[action], paused=action is Action.RESUME)
    try:
        transition(target, action, ACTORS[who], NOW, **PARAMS.get(action, {}))
        allowed = True
    except Refusal as refusal:
        assert refusal.key.endswith((".role", ".already")), refusal.key
        allowed = False
    assert allowed == bool(expected), f"{who} {'may' if expected else 'may not'} {action.value}"


def test_the_happy_path_sets_times() -> None:
    dispatcher, handler, reporter = ACTORS["dispatcher"], ACTORS["assignee"], ACTORS["reporter"]
    change = transition(order(State.REPORTED), Action.ASSIGN, dispatcher, NOW, assignee_id=ASSIGNEE, team_id=TEAM)
    assert (change.to_state, change.fields["assigned_at"]) == (State.ASSIGNED, NOW)
    change = transition(order(State.ASSIGNED), Action.ACCEPT, handler, NOW)
    assert change.to_state is State.IN_PROGRESS and change.fields["accepted_at"] == NOW
    change = transition(order(State.IN_PROGRESS), Action.DONE, handler, NOW, photos=("a.jpg",))
    assert change.to_state is State.RESOLVED and change.detail == {"photos": ["a.jpg"]}
    change = transition(order(State.RESOLVED), Action.RATE, reporter, NOW, score=4)
    assert change.to_state is State.CLOSED and change.fields["closed_at"] == NOW


@pytest.mark.parametrize("score, state", [(1, State.REOPENED), (2, State.REOPENED), (3, State.CLOSED)])
def test_rating_two_or_less_reopens(score: int, state: State) -> None:
    change = transition(order(State.RESOLVED), Action.RATE, ACTORS["reporter"], NOW, score=score)
    assert change.to_state is state


def test_return_goes_one_step_back() -> None:
    handler = ACTORS["assignee"]
    back = transition(order(State.ASSIGNED), Action.RETURN, handler, NOW, reason="need_info")
    assert back.to_state is State.REPORTED and back.fields == {"assignee_id": None, "team_id": None}
    back = transition(order(State.IN_PROGRESS), Action.RETURN, handler, NOW, reason="no_access")
    assert back.to_state is State.ASSIGNED and back.fields == {"assignee_id": None}


def test_every_action_is_refused_outside_its_states() -> None:
    everyone = Actor(7, roles=frozenset({Capacity.DISPATCHER, Capacity.SUPERVISOR}), team_ids=frozenset({TEAM}))
    for action, allowed in TRANSITIONS.items():
        for state in set(State) - set(allowed):
            with pytest.raises(Refusal) as refused:
                transition(order(state, assignee_id=7), action, everyone, NOW, **PARAMS.get(action, {}))
            assert refused.value.key == f"refuse.{action.value}.state"


@pytest.mark.parametrize(
    "action, params, key",
    [
        (Action.DONE, {}, "refuse.done.photo"),
        (Action.RATE, {"score": 0}, "refuse.rate.score"),
        (Action.RATE, {"score": 6}, "refuse.rate.score"),
        (Action.RETURN, {}, "refuse.return.reason"),
        (Action.ASSIGN, {}, "refuse.assign.target"),
        (Action.MERGE, {"into_id": 1}, "refuse.merge.target"),
    ],
)
def test_missing_or_wrong_arguments(action: Action, params: dict, key: str) -> None:
    state = {Action.DONE: State.IN_PROGRESS, Action.RATE: State.RESOLVED, Action.RETURN: State.ASSIGNED}.get(
        action, State.REPORTED)
    who = {Action.DONE: "assignee", Action.RATE: "reporter", Action.RETURN: "assignee"}.get(action, "dispatcher")
    with pytest.raises(Refusal) as refused:
        transition(order(state), action, ACTORS[who], NOW, **params)
    assert refused.value.key == key


def test_rating_twice_in_one_round_is_refused() -> None:
    rated = order(State.CLOSED, rater_ids=frozenset({REPORTER}))
    with pytest.raises(Refusal, match=r"refuse\.rate\.twice"):
        transition(rated, Action.RATE, ACTORS["reporter"], NOW, score=5)


def test_a_reporter_cannot_cancel_once_work_started() -> None:
    with pytest.raises(Refusal, match=r"refuse\.cancel\.started"):
        transition(order(State.IN_PROGRESS), Action.CANCEL, ACTORS["reporter"], NOW)
    assert transition(order(State.IN_PROGRESS), Action.CANCEL, ACTORS["dispatcher"], NOW,
                      reason="duplicate").to_state is State.CANCELLED


def test_escalation_climbs_to_the_top_and_stops() -> None:
    dispatcher = ACTORS["dispatcher"]
    for level in range(3):
        change = transition(order(State.ASSIGNED, level=level), Action.ESCALATE, dispatcher, NOW)
        assert change.fields["level"] == level + 1
    with pytest.raises(Refusal, match=r"refuse\.escalate\.top"):
        transition(order(State.ASSIGNED, level=3), Action.ESCALATE, dispatcher, NOW)


@pytest.mark.parametrize(("source", "where", "reached"), [
    ("chat_admin", "own chat", True), ("chat_admin", "another chat, same grid", False),
    ("chat_admin", "the grid below", False), ("dispatcher", "own chat", True),
    ("dispatcher", "another chat, same grid", True), ("dispatcher", "the grid below", True),
    ("dispatcher", "a sibling grid", False), ("supervisor", "a sibling grid", False),
    ("supervisor", "the grid below", True),
])
def test_the_reach_of_each_kind_of_authority(source: str, where: str, reached: bool) -> None:
    """Owning a chat reaches its own orders; the community's grants reach a grid and what lies below."""
    from handlers.lifecycle import AUTHORITY, Source, reaches

    order_chat, order_grid = {"own chat": (7, "/1/4/"), "another chat, same grid": (8, "/1/4/"),
                              "the grid below": (8, "/1/4/9/"), "a sibling grid": (8, "/1/5/")}[where]
    _, reach = AUTHORITY[Source(source)]
    assert reaches(reach, held_in_chat=7, order_chat=order_chat, granted_on=frozenset({"/1/4/"}),
                   order_grid_path=order_grid) is reached
