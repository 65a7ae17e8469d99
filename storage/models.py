"""SQLModel tables. Times are aware UTC; rendering converts to the community's time zone.

Every schema change goes through an Alembic migration in `storage/migrations/versions`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Grid(SQLModel, table=True):
    """A node of the grid tree: street → community → estate → building (and an unsorted grid)."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=64)
    name: str = Field(max_length=128)
    level: str = Field(max_length=16)  # street, community, estate, building, unsorted
    parent_id: int | None = Field(default=None, foreign_key="grid.id")
    community_id: int | None = Field(default=None, foreign_key="grid.id", index=True)
    path: str = Field(default="/", max_length=512, index=True)  # "/1/4/9/": ids from the root


class Chat(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("service", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=16)
    external_id: str = Field(max_length=255)
    title: str | None = Field(default=None, max_length=255)
    grid_id: int = Field(foreign_key="grid.id", index=True)
    bound: bool = False  # False while the chat sits in the unsorted grid waiting to be bound
    is_direct: bool = False
    lang: str | None = Field(default=None, max_length=8)


class Person(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, index=True)
    lang: str | None = Field(default=None, max_length=8)
    party_member: bool = False
    phone: str | None = Field(default=None, max_length=32)


class Identity(SQLModel, table=True):
    """A person's account on one chat service."""

    __table_args__ = (UniqueConstraint("service", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    service: str = Field(max_length=16)
    external_id: str = Field(max_length=255)
    handle: str | None = Field(default=None, max_length=128)  # @username where the service has one
    direct_chat: str | None = Field(default=None, max_length=255)  # where direct messages go


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=64)
    name: str = Field(max_length=128)
    kind: str = Field(max_length=16)  # grid_workers, property, department, volunteers
    grid_id: int = Field(foreign_key="grid.id", index=True)
    matter: str | None = Field(default=None, max_length=16)  # default team for this matter class
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class TeamMember(SQLModel, table=True):
    team_id: int = Field(foreign_key="team.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True, index=True)
    leader: bool = False


class RoleGrant(SQLModel, table=True):
    """A dispatcher or supervisor role over a grid and everything below it."""

    __table_args__ = (UniqueConstraint("person_id", "role", "grid_id"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    role: str = Field(max_length=16)
    grid_id: int = Field(foreign_key="grid.id")


class Counter(SQLModel, table=True):
    """The next human order number of a community."""

    community_id: int = Field(foreign_key="grid.id", primary_key=True)
    next_number: int = 1


class Order(SQLModel, table=True):
    __tablename__ = "work_order"
    __table_args__ = (
        UniqueConstraint("community_id", "number"),
        Index("ix_order_grid_state", "grid_id", "state"),
        Index("ix_order_team_state", "team_id", "state"),
        Index("ix_order_grid_category", "grid_id", "category", "id"),  # the duplicate finder walks it backwards
        Index("ix_order_reporter", "reporter_id", "chat_id"),  # a person's report of a moment ago, to add to
    )

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="grid.id")
    number: int
    text: str
    title: str = Field(max_length=64)
    category: str = Field(max_length=32)
    urgency: str = Field(max_length=8)
    matter: str = Field(max_length=8)
    building: str | None = Field(default=None, max_length=32)
    unit: str | None = Field(default=None, max_length=32)
    room: str | None = Field(default=None, max_length=32)
    grid_id: int = Field(foreign_key="grid.id")
    chat_id: int | None = Field(default=None, foreign_key="chat.id")
    reporter_id: int = Field(foreign_key="person.id")  # looked up by ix_order_reporter (reporter_id, chat_id)
    team_id: int | None = Field(default=None, foreign_key="team.id")
    assignee_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    state: str = Field(default="reported", max_length=16, index=True)
    level: int = 0
    rating_round: int = 0  # raised on each reopen, so a reopened order is rated afresh
    confidence: float = 1.0
    merged_into_id: int | None = Field(default=None, foreign_key="work_order.id")
    created_at: datetime = Field(index=True)
    assigned_at: datetime | None = None
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    escalated_at: datetime | None = None
    reported_back_at: datetime | None = None
    arrived_at: datetime | None = None
    planned_at: datetime | None = None
    paused_at: datetime | None = None  # waiting on the resident: the clocks stand still
    respond_due: datetime | None = None
    on_scene_due: datetime | None = None
    plan_due: datetime | None = None
    resolve_due: datetime | None = None
    report_back_due: datetime | None = None


class Follower(SQLModel, table=True):
    order_id: int = Field(foreign_key="work_order.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True)


class Event(SQLModel, table=True):
    """The immutable history of an order: who did what, when, from which chat message."""

    __table_args__ = (Index("ix_event_actor_at", "actor_id", "at"),)  # what a person did a moment ago

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_order.id", index=True)
    action: str = Field(max_length=16)
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    from_state: str | None = Field(default=None, max_length=16)
    to_state: str = Field(max_length=16)
    at: datetime
    chat_id: int | None = Field(default=None, foreign_key="chat.id")
    message_ref: str | None = Field(default=None, max_length=255)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Photo(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_order.id", index=True)
    event_id: int | None = Field(default=None, foreign_key="event.id")
    service: str = Field(max_length=16)
    ref: str = Field(max_length=1024)
    purpose: str = Field(max_length=16)  # report, completion
    at: datetime


class Rating(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("order_id", "person_id", "rating_round"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_order.id", index=True)
    person_id: int = Field(foreign_key="person.id")
    rating_round: int = 0
    score: int
    comment: str | None = None
    team_id: int | None = Field(default=None, foreign_key="team.id")
    handler_id: int | None = Field(default=None, foreign_key="person.id")
    at: datetime


class Reminder(SQLModel, table=True):
    """A nag due at a time: sent once by whichever sweep claims it first."""

    __table_args__ = (Index("ix_reminder_due", "sent_at", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_order.id", index=True)
    milestone: str = Field(max_length=16)  # response, resolution
    step: str = Field(max_length=16)  # before, due, overdue
    due_at: datetime
    sent_at: datetime | None = None
    void: bool = False


class Delivery(SQLModel, table=True):
    """Messages already handled, so a redelivered message is handled once."""

    __table_args__ = (UniqueConstraint("service", "chat", "message_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=16)
    chat: str = Field(max_length=255)
    message_ref: str = Field(max_length=255)
    at: datetime


class MessageLink(SQLModel, table=True):
    """A message the bot posted about an order: replies to it act on that order; cards get edited."""

    __table_args__ = (Index("ix_link_message", "service", "chat", "message_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_order.id", index=True)
    service: str = Field(max_length=16)
    chat: str = Field(max_length=255)
    message_ref: str = Field(max_length=255)
    is_card: bool = False


class Points(SQLModel, table=True):
    """积分 earned by volunteers and party members for finished, well-rated orders."""

    __table_args__ = (UniqueConstraint("person_id", "order_id", "reason"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    order_id: int = Field(foreign_key="work_order.id")
    points: int
    reason: str = Field(max_length=32)
    at: datetime


class Prompt(SQLModel, table=True):
    """A question the bot is waiting on (confirm a report, pick a team): kept here, not in memory."""

    __table_args__ = (Index("ix_prompt_person", "person_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    person_id: int = Field(foreign_key="person.id")
    chat_id: int | None = Field(default=None, foreign_key="chat.id")
    order_id: int | None = Field(default=None, foreign_key="work_order.id")
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    answered_at: datetime | None = None


class Memo(SQLModel, table=True):
    """Small things kept across restarts: a Matrix sync token, the community the roster last applied."""

    service: str = Field(max_length=16, primary_key=True)
    key: str = Field(max_length=64, primary_key=True)
    value: str


class Inbox(SQLModel, table=True):
    """Updates as a chat service sent them, stored before the service is told they arrived.

    Each is handled once (its `handled_at` is set in the transaction that stores what it changed), in
    the order received within its lane (one chat), so a restart finishes what a crash interrupted."""

    __table_args__ = (UniqueConstraint("service", "key"), Index("ix_inbox_waiting", "handled_at", "service", "lane"))

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=16)
    key: str = Field(max_length=255)  # the service's own id of the update: a second delivery finds it
    lane: str = Field(max_length=255)  # the chat it belongs to: updates of one lane are handled in order
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime
    handled_at: datetime | None = None


class LaneLease(SQLModel, table=True):
    """Which process handles a lane's updates now, when several `linli run` share one database."""

    service: str = Field(max_length=16, primary_key=True)
    lane: str = Field(max_length=255, primary_key=True)
    owner: str = Field(max_length=64)
    until: datetime


class Outbox(SQLModel, table=True):
    """Actions a transport could not send yet: kept here and tried again, so nothing is lost."""

    __table_args__ = (Index("ix_outbox_due", "sent_at", "next_at"),)

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=16)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    next_at: datetime
    error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    given_up: bool = False
    claimed_by: str | None = Field(default=None, max_length=64)  # the instance delivering it now
    claimed_until: datetime | None = None  # after this, another instance may take it over


class Digest(SQLModel, table=True):
    """A digest sent (or being sent) for one target and period: the row makes it once only."""

    __table_args__ = (UniqueConstraint("kind", "target", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # daily, weekly, calendar (the holiday calendar runs out)
    target: str = Field(max_length=255)  # "chat:12" or "person:5"
    period: str = Field(max_length=16)  # 2026-11-23 or 2026-W48; calendar: its last known day
    at: datetime


class WebToken(SQLModel, table=True):
    """A login for `linli web`, issued to one person; only the token's SHA-256 digest is kept."""

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    digest: str = Field(unique=True, max_length=64)
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Example(SQLModel, table=True):
    """A labelled message for training triage: a dispatcher's correction of an order."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: int | None = Field(default=None, foreign_key="work_order.id", index=True)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="correction", max_length=16)
    at: datetime
