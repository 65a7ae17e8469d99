"""Open311 GeoReport v2, read side: a city platform pulls Linli's orders in the format it already knows.

service_code is the category; status is open or closed; the address is the grid and the building
(never the unit or room); the description is the order's short title with phone and ID numbers masked.
No reporter, handler or comment leaves through here. Without `linli web --public` a token is needed,
and a token shows only its holder's grids.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from sqlmodel import Session, col, select

from bot.web import dashboard
from bot.web.app import MAX_ID, PRINTABLE, Db, Instant, OptionalViewer, Refused
from handlers import orders
from handlers.triage.normalize import mask_private
from storage.models import Grid, Order, Team

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])
DEFAULT_DAYS = 90  # GeoReport: without dates, the last 90 days
MAX_REQUESTS = 1000
CLOSED = ("resolved", "closed", "merged", "cancelled")
GROUPS = {"major": "大事", "minor": "小事", "private": "私事"}
LIST_CHARS = 1000  # a comma-separated list: at most ~500 values, well within a database's bind-parameter limit
DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also passes ① (int() refuses it) and ２


def _scope(request: Request, viewer: Any) -> list[int] | None:
    if viewer is not None:
        return viewer.grid_filter()
    if request.app.state.public:
        return None
    raise Refused(401, "Open311 needs a token (Authorization: Bearer TOKEN) unless the community is public.")


def _w3c(moment: datetime | None, tz: tzinfo) -> str | None:
    return moment.astimezone(tz).isoformat(timespec="seconds") if moment else None


def request_of(order: Order, grids: dict[int, Grid], teams: dict[int, str], tz: tzinfo) -> dict[str, Any]:
    milestones = [m for m in (order.created_at, order.assigned_at, order.accepted_at, order.resolved_at,
                              order.closed_at, order.escalated_at) if m is not None]
    return {
        "service_request_id": str(order.number),
        "status": "closed" if order.state in CLOSED else "open",
        "status_notes": dashboard.names_of("state").get(order.state, order.state),
        "service_name": dashboard.names_of("category").get(order.category, order.category),
        "service_code": order.category,
        "description": mask_private(orders.title_for(order, details=False)),  # a 私事 is never described
        "agency_responsible": teams.get(order.team_id or 0),
        "service_notice": None,
        "requested_datetime": _w3c(order.created_at, tz),
        "updated_datetime": _w3c(max(milestones), tz),
        "expected_datetime": _w3c(order.resolve_due, tz) if order.state not in CLOSED else None,
        "address": dashboard.public_place(grids.get(order.grid_id), order.building),
        "address_id": None,
        "zipcode": None,
        "lat": None,
        "long": None,
        "media_url": None,
    }


def _lookups(db: Session, community_id: int) -> tuple[dict[int, Grid], dict[int, str]]:
    grids = {g.id: g for g in db.exec(select(Grid).where(Grid.community_id == community_id)) if g.id}
    teams = {t.id: t.name for t in db.exec(select(Team)) if t.id}
    return grids, teams


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def order_number(text: str) -> int | None:
    """`text` as an order number, if it can be one: ASCII digits, within the INTEGER column."""
    if DIGITS.fullmatch(text) and 1 <= (number := int(text)) <= MAX_ID:
        return number
    return None


@router.get("/services.json", summary="Service list: Linli's categories")
def services(request: Request, viewer: OptionalViewer) -> list[dict[str, Any]]:
    _scope(request, viewer)
    names = dashboard.names_of("category")
    return [{"service_code": code, "service_name": label, "description": f"{label}（邻里 Linli 工单分类 {code}）",
             "metadata": False, "type": "realtime", "keywords": code, "group": "邻里"}
            for code, label in names.items()]


@router.get("/requests.json", summary="Service requests: Linli's orders, without personal data")
def requests(
    request: Request, db: Db, viewer: OptionalViewer,
    service_request_id: Annotated[str | None, Query(description="comma-separated order numbers",
                                                    max_length=LIST_CHARS, pattern=PRINTABLE)] = None,
    service_code: Annotated[str | None, Query(description="comma-separated categories",
                                              max_length=LIST_CHARS, pattern=PRINTABLE)] = None,
    start_date: Annotated[Instant | None, Query(description="requested on or after (W3C datetime, 2000–2100)")] = None,
    end_date: Annotated[Instant | None, Query(description="requested before (W3C datetime, 2000–2100)")] = None,
    status: Annotated[str | None, Query(description="open, closed or both, comma-separated", max_length=64)] = None,
    jurisdiction_id: Annotated[str | None, Query(description="ignored: one jurisdiction per server",
                                                 max_length=255)] = None,
) -> list[dict[str, Any]]:
    community = request.app.state.community
    grid_ids = _scope(request, viewer)
    query = select(Order).where(Order.community_id == community.grid_id)
    if grid_ids is not None:
        query = query.where(col(Order.grid_id).in_(grid_ids))
    if ids := _split(service_request_id):  # ids override the dates; one that is no order number matches nothing
        query = query.where(col(Order.number).in_([n for n in map(order_number, ids) if n is not None]))
    else:
        now = request.app.state.clock.now()
        start = _aware(start_date, community.tz) or _aware(end_date, community.tz) or now
        if start_date is None:
            start -= timedelta(days=DEFAULT_DAYS)
        query = query.where(Order.created_at >= start)
        if end_date is not None:
            query = query.where(Order.created_at < _aware(end_date, community.tz))
    if codes := _split(service_code):
        query = query.where(col(Order.category).in_(codes))
    wanted = set(_split(status)) & {"open", "closed"}
    if wanted == {"open"}:
        query = query.where(col(Order.state).not_in(CLOSED))
    elif wanted == {"closed"}:
        query = query.where(col(Order.state).in_(CLOSED))
    rows = db.exec(query.order_by(col(Order.created_at).desc()).limit(MAX_REQUESTS))
    grids, teams = _lookups(db, community.grid_id)
    return [request_of(order, grids, teams, community.tz) for order in rows]


@router.get("/requests/{request_id}.json", summary="One service request")
def one_request(request: Request, request_id: Annotated[str, PathParam(max_length=64, examples=["4"])], db: Db,
                viewer: OptionalViewer) -> list[dict[str, Any]]:
    community = request.app.state.community
    grid_ids = _scope(request, viewer)
    order = None
    if (number := order_number(request_id)) is not None:  # anything else names no order: 404, as GeoReport has it
        order = db.exec(select(Order).where(Order.community_id == community.grid_id,
                                            Order.number == number)).first()
    if order is None or (grid_ids is not None and order.grid_id not in grid_ids):
        raise Refused(404, f"service request {request_id} not found")
    grids, teams = _lookups(db, community.grid_id)
    return [request_of(order, grids, teams, community.tz)]


def _aware(moment: datetime | None, tz: tzinfo) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(UTC)
