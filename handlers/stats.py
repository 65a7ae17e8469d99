"""三率: response, resolution and satisfaction rates — one definition, used by chat, CLI and web.

- 响应率 response rate = orders responded to (accepted or claimed) by their response deadline
  ÷ dispatched orders whose response is settled (responded, or the deadline has passed).
- 解决率 resolution rate = orders resolved or closed ÷ orders reported (merged and cancelled left out).
- 满意率 satisfaction rate = ratings of 3 stars or more (基本满意 and better) ÷ all ratings.
Orders count in the period they were reported; ratings in the period they were given. Orders are
credited to the team and handler holding them now, and to the grid they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Literal

from sqlalchemy import and_, case, func, or_, select
from sqlmodel import Session, col

from handlers import deadlines
from handlers.lifecycle import COUNTED_STATES, DONE_STATES, OPEN_STATES
from storage.models import Grid, Order, Person, Points, Rating, Team

Group = Literal["community", "team", "grid", "handler"]
SATISFIED_AT = 3
_COUNTED = sorted(COUNTED_STATES)
_DONE = sorted(DONE_STATES)
_OPEN = sorted(OPEN_STATES)


def percent(value: float | None) -> str:
    """A rate as every view shows it (chat, `linli stats`, web, demo): one decimal, or — with nothing to divide."""
    return "—" if value is None else f"{value:.1%}"


@dataclass(frozen=True, slots=True)
class Rates:
    key: int | None
    name: str
    reported: int
    open: int
    overdue: int
    resolved: int
    responded_on_time: int
    response_settled: int
    ratings: int
    satisfied: int
    avg_resolve_minutes: float | None

    @staticmethod
    def _share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def response_rate(self) -> float | None:
        return self._share(self.responded_on_time, self.response_settled)

    @property
    def resolution_rate(self) -> float | None:
        return self._share(self.resolved, self.reported)

    @property
    def satisfaction_rate(self) -> float | None:
        return self._share(self.satisfied, self.ratings)

    def as_json(self) -> dict:
        return {
            "key": self.key, "name": self.name, "reported": self.reported, "open": self.open,
            "overdue": self.overdue, "resolved": self.resolved, "ratings": self.ratings,
            "response_rate": self.response_rate, "resolution_rate": self.resolution_rate,
            "satisfaction_rate": self.satisfaction_rate, "avg_resolve_minutes": self.avg_resolve_minutes,
        }


def _group_column(group: Group):  # type: ignore[no-untyped-def]
    return {"community": Order.community_id, "team": Order.team_id, "grid": Order.grid_id,
            "handler": Order.assignee_id}[group]


def _rating_group_column(group: Group):  # type: ignore[no-untyped-def]
    return {"community": Order.community_id, "team": Rating.team_id, "grid": Order.grid_id,
            "handler": Rating.handler_id}[group]


def rates(
    db: Session,
    community_id: int,
    now: datetime,
    *,
    group: Group = "community",
    since: datetime | None = None,
    until: datetime | None = None,
    grid_ids: list[int] | None = None,
) -> list[Rates]:
    """The three rates for the community, or per team, grid or handler, over [since, until)."""
    key = _group_column(group)
    filters = [Order.community_id == community_id, col(Order.state).in_(_COUNTED)]
    if since is not None:
        filters.append(Order.created_at >= since)
    if until is not None:
        filters.append(Order.created_at < until)
    if grid_ids is not None:
        filters.append(col(Order.grid_id).in_(grid_ids))
    responded_on_time = and_(
        col(Order.accepted_at).is_not(None),
        or_(col(Order.respond_due).is_(None), Order.accepted_at <= Order.respond_due),
    )
    settled = and_(
        col(Order.assigned_at).is_not(None),
        or_(col(Order.accepted_at).is_not(None), Order.respond_due < now),
    )
    done = col(Order.state).in_(_DONE)
    is_open = col(Order.state).in_(_OPEN)
    late = deadlines.overdue_clause(now)
    minutes = (func.julianday(Order.resolved_at) - func.julianday(Order.created_at)) * 1440.0
    if db.get_bind().dialect.name != "sqlite":
        minutes = func.extract("epoch", Order.resolved_at - Order.created_at) / 60.0
    query = (
        select(
            key,
            func.count(),
            func.sum(case((is_open, 1), else_=0)),
            func.sum(case((late, 1), else_=0)),
            func.sum(case((done, 1), else_=0)),
            func.sum(case((responded_on_time, 1), else_=0)),
            func.sum(case((settled, 1), else_=0)),
            func.avg(case((and_(done, col(Order.resolved_at).is_not(None)), minutes), else_=None)),
        )
        .where(*filters)
        .group_by(key)
    )
    orders = {row[0]: row[1:] for row in db.execute(query)}
    ratings = _ratings(db, community_id, group, since, until, grid_ids)
    names = _names(db, group, set(orders) | set(ratings))
    result = []
    for k in sorted(set(orders) | set(ratings), key=lambda v: (v is None, v or 0)):
        n, open_, overdue, resolved, on_time, settled_n, avg = orders.get(k, (0, 0, 0, 0, 0, 0, None))
        total, satisfied = ratings.get(k, (0, 0))
        result.append(Rates(k, names.get(k, "—"), n, open_ or 0, overdue or 0, resolved or 0, on_time or 0,
                            settled_n or 0, total, satisfied or 0,
                            round(float(avg), 1) if avg is not None else None))
    return result


def _ratings(db: Session, community_id: int, group: Group, since: datetime | None, until: datetime | None,
             grid_ids: list[int] | None) -> dict:
    key = _rating_group_column(group)
    filters = [Order.community_id == community_id]
    if since is not None:
        filters.append(Rating.at >= since)
    if until is not None:
        filters.append(Rating.at < until)
    if grid_ids is not None:
        filters.append(col(Order.grid_id).in_(grid_ids))
    query = (
        select(key, func.count(), func.sum(case((Rating.score >= SATISFIED_AT, 1), else_=0)))
        .join(Order, col(Order.id) == Rating.order_id)
        .where(*filters)
        .group_by(key)
    )
    return {row[0]: (row[1], row[2]) for row in db.execute(query)}


def _names(db: Session, group: Group, keys: set) -> dict:
    ids = [k for k in keys if k is not None]
    if not ids:
        return {}
    model = {"community": Grid, "grid": Grid, "team": Team, "handler": Person}[group]
    return {row.id: row.name for row in db.exec(select(model).where(col(model.id).in_(ids))).scalars()}


def ranking(db: Session, limit: int = 10) -> list[tuple[str, int, int]]:
    """积分 ranking: (name, points, orders) best first."""
    query = (
        select(Person.name, func.sum(Points.points), func.count(func.distinct(Points.order_id)))
        .join(Person, col(Person.id) == Points.person_id)
        .group_by(Person.id, Person.name)
        .order_by(func.sum(Points.points).desc(), Person.name)
        .limit(limit)
    )
    return [(name, int(points), int(n)) for name, points, n in db.execute(query)]


# --- what the dashboards and the ledger add: calendar periods and series over time ---------------



def period_bounds(period: str, now: datetime, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """[since, until) of a calendar period in the community's time zone: 今天, 本周 (from Monday), 本月, 全部."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    since = {
        "today": midnight,
        "week": midnight - timedelta(days=local.weekday()),
        "month": midnight.replace(day=1),
    }.get(period)
    return since, None


def buckets(since: datetime, until: datetime, tz: tzinfo, max_points: int = 62) -> list[tuple[datetime, datetime]]:
    """Consecutive local days (or weeks, when there would be too many days) covering [since, until)."""
    start = since.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(days=1)
    if (until - start) / step > max_points:
        step = timedelta(days=7)
        start -= timedelta(days=start.weekday())
    spans = []
    while start < until and len(spans) < max_points:
        spans.append((max(start, since), min(start + step, until)))  # aware local times: + keeps midnight
        start += step
    return spans


def rates_series(
    db: Session,
    community_id: int,
    now: datetime,
    *,
    since: datetime,
    until: datetime,
    tz: tzinfo,
    group: Group = "team",
    grid_ids: list[int] | None = None,
) -> list[tuple[datetime, list[Rates]]]:
    """The three rates per bucket (a local day, or a week over long periods): `rates` over each span."""
    return [(start, rates(db, community_id, now, group=group, since=start, until=end, grid_ids=grid_ids))
            for start, end in buckets(since, until, tz)]
