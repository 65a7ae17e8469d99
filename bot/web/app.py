"""`linli web`: the supervisors' dashboard, the order pages, the JSON API and Open311, in one FastAPI app.

Everything a page needs (styles, the chart script) is served from `bot/web/static`: no CDN, so it works
on a street office's intranet. Pages with personal data need a login token (`linli web token NAME`);
the token's link sets a cookie, API clients send `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import AfterValidator
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bot.render import name
from bot.web import dashboard
from bot.web.access import Viewer, person_for_token, viewer_for
from handlers import stats
from handlers.clock import Clock
from handlers.turn import Community
from storage import repo
from storage.db import session
from storage.models import Grid, Order, Photo

HERE = Path(__file__).resolve().parent
COOKIE = "linli_token"
SECURITY_HEADERS = {
    # Only Linli's own files: no CDN, no inline script, nothing framed.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# Order numbers and photo ids are INTEGER columns: 32-bit on PostgreSQL, and an int past 2**63-1 makes the
# SQLite driver raise OverflowError. A larger number names no row, so the parameter refuses it (422).
MAX_ID = 2**31 - 1
# Dates outside these years are typos or probes; near year 1 or 9999 the day arithmetic (the day after `to`,
# 90 days before `end_date`, the shift to UTC) leaves what datetime can hold.
YEARS = range(2000, 2101)
# Codes and lists of them: no control characters (PostgreSQL refuses NUL in text, a 500 there).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Moment = TypeVar("Moment", bound=date)  # a date or a datetime


def sane_year(moment: Moment) -> Moment:
    if moment.year not in YEARS:
        raise ValueError(f"year must be between {YEARS[0]} and {YEARS[-1]}")
    return moment


Day = Annotated[date, AfterValidator(sane_year)]
Instant = Annotated[datetime, AfterValidator(sane_year)]
OrderNumber = Annotated[int, PathParam(ge=1, le=MAX_ID, description="工单号", examples=[4])]
PhotoId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


class HideTokens(logging.Filter):
    """Keep login tokens out of uvicorn's access log: `/login?token=…` is logged as `/login?token=…`."""

    _TOKEN = re.compile(r"token=[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("token=" in str(arg) for arg in record.args):
            record.args = tuple(self._TOKEN.sub("token=…", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    access = logging.getLogger("uvicorn.access")  # configured by uvicorn by now
    if not any(isinstance(f, HideTokens) for f in access.filters):
        access.addFilter(HideTokens())
    yield


class Refused(Exception):
    """401 (no or bad token) or 403 (not yours to see), answered as a page or as JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def create_app(engine: Engine, community: Community, clock: Clock, *, public: bool = False,
               media: Path | None = None) -> FastAPI:
    """The web app for `community`. With `public`, the 公示 page and Open311 need no token. Photos are served
    only from `media` (by default Linli's folder: `dashboard.media_root`)."""
    from bot.web import api, open311

    app = FastAPI(title="邻里 Linli 开放接口", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", lifespan=_lifespan,
                  description="Orders and the three rates (响应率 / 解决率 / 满意率) of a Linli community. "
                              "Send `Authorization: Bearer TOKEN` with a token from `linli web token NAME`.")
    app.state.engine, app.state.community, app.state.clock, app.state.public = engine, community, clock, public
    app.state.media = (media or dashboard.media_root(engine.url)).resolve()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["pct"] = stats.percent
    templates.env.filters["local"] = lambda moment, fmt="%Y-%m-%d %H:%M": dashboard.local(moment, community.tz, fmt)
    templates.env.globals["name"] = lambda kind, code: name(kind, code, "zh")
    templates.env.globals["community_name"] = community.config.community.name
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        if request.url.path not in ("/openapi.json",) and not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> Response:
        if request.url.path.startswith("/open311/"):  # GeoReport's error format
            return JSONResponse([{"code": error.status, "description": error.message}], status_code=error.status)
        if _wants_json(request):
            return JSONResponse({"detail": error.message}, status_code=error.status)
        return templates.TemplateResponse(request, "error.html", {"status": error.status, "message": error.message,
                                                                  "viewer": None}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        if _wants_json(request):  # FastAPI's own 422, which the OpenAPI document describes
            return await request_validation_exception_handler(request, error)
        names = "、".join(dict.fromkeys(str(e["loc"][-1]) for e in error.errors()))
        return templates.TemplateResponse(request, "error.html", {"status": 422, "message": f"链接里的 {names} 不对。",
                                                                  "viewer": None}, status_code=422)

    app.include_router(api.router)
    app.include_router(open311.router)
    _pages(app, templates)
    return app


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/open311/")) or "application/json" in request.headers.get("accept", "")


# --- dependencies ------------------------------------------------------------------------------
def db_session(request: Request) -> Iterator[Session]:
    with session(request.app.state.engine) as db:
        yield db


Db = Annotated[Session, Depends(db_session)]


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def optional_viewer(request: Request, db: Db) -> Viewer | None:
    """The logged-in viewer; None without a token; Refused for a bad token or a person with no grids."""
    token = token_of(request)
    if not token:
        return None
    person = person_for_token(db, token, request.app.state.clock.now())
    if person is None:
        raise Refused(401, "登录链接无效或已被收回，请向管理员重新申请（linli web token 姓名）。")
    viewer = viewer_for(db, person, request.app.state.community.grid_id)
    if viewer is None:
        raise Refused(403, f"{person.name} 没有书记、网格长或督办权限，不能查看工单。")
    return viewer


def current_viewer(viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Viewer:
    if viewer is None:
        raise Refused(401, "请用 linli web token 姓名 生成的登录链接登录。")
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
OptionalViewer = Annotated[Viewer | None, Depends(optional_viewer)]


def order_in_scope(db: Session, request: Request, viewer: Viewer | None, number: int) -> Order:
    """The community's order #number, if the viewer (or the public, with None) may see it."""
    order = repo.order_by_number(db, request.app.state.community.grid_id, number)
    if order is None:
        raise Refused(404, f"没有 #{number} 号工单。")
    if viewer is not None and not viewer.sees(order.grid_id):
        raise Refused(403, f"#{number} 不在您负责的网格内。")
    return order


# --- pages -------------------------------------------------------------------------------------
def _pages(app: FastAPI, templates: Jinja2Templates) -> None:
    community: Community = app.state.community

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, db: Db, viewer: CurrentViewer, period: str | None = None,
             start: Annotated[Day | None, Query(alias="from")] = None,
             end: Annotated[Day | None, Query(alias="to")] = None) -> Response:
        now = app.state.clock.now()
        win = dashboard.window(period, start, end, now, community.tz)
        grid_ids = viewer.grid_filter()
        tables = dashboard.rate_tables(db, community.grid_id, now, win, grid_ids)
        open_now = dashboard.open_in_scope(db, community.grid_id, grid_ids)
        tiles = dashboard.board(db, community.grid_id, now, open_now, viewer.grid_ids)
        chart = dashboard.series(db, community.grid_id, now, win, community.tz, grid_ids)
        bars = {"grids": [t.grid.name for t in tiles],
                "counts": {u: [t.counts[u] for t in tiles] for u in dashboard.URGENCIES},
                "overdue": [t.overdue for t in tiles]}
        context = {
            "viewer": viewer, "window": win, "periods": dashboard.PERIODS, "now": now,
            "overall": tables["community"][0] if tables["community"] else None, "tables": tables,
            "ranking": dashboard.ranked(tables["team"]), "handlers": dashboard.ranked(tables["handler"]),
            "points": stats.ranking(db), "tiles": tiles,
            "open_orders": dashboard.open_orders(db, now, open_now),
            "chart_json": _script_json(chart), "bars_json": _script_json(bars),
            "metrics": dashboard.METRICS,
        }
        return templates.TemplateResponse(request, "dashboard.html", context)

    @app.get("/orders/{number}", response_class=HTMLResponse, include_in_schema=False)
    def order_view(request: Request, number: OrderNumber, db: Db, viewer: CurrentViewer) -> Response:
        order = order_in_scope(db, request, viewer, number)
        page = dashboard.order_page(db, order, app.state.clock.now(), community.tz, app.state.media)
        return templates.TemplateResponse(request, "order.html", {"viewer": viewer, **page})

    @app.get("/orders/{number}/photos/{photo_id}", include_in_schema=False)
    def order_photo(request: Request, number: OrderNumber, photo_id: PhotoId, db: Db,
                    viewer: CurrentViewer) -> Response:
        order = order_in_scope(db, request, viewer, number)
        photo = db.get(Photo, photo_id)
        path = (dashboard.photo_file(photo, app.state.media)
                if photo is not None and photo.order_id == order.id else None)
        if path is None:
            raise Refused(404, "这张照片不在本机上。")
        return FileResponse(path)

    @app.get("/login", include_in_schema=False)
    def login(request: Request, token: str, db: Db) -> Response:
        person = person_for_token(db, token, app.state.clock.now())
        if person is None:
            raise Refused(401, "登录链接无效或已被收回，请向管理员重新申请（linli web token 姓名）。")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, max_age=int(timedelta(days=30).total_seconds()), httponly=True,
                            samesite="lax", secure=request.url.scheme == "https")
        return response

    @app.get("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/bye", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/bye", response_class=HTMLResponse, include_in_schema=False)
    def bye(request: Request) -> Response:
        return templates.TemplateResponse(request, "error.html", {"status": 200, "message": "已退出登录。",
                                                                  "viewer": None})

    @app.get("/public", response_class=HTMLResponse, include_in_schema=False)
    def public_page(request: Request, db: Db) -> Response:
        if not app.state.public:
            raise Refused(404, "本社区没有开启公示页。")
        now = app.state.clock.now()
        since, _ = stats.period_bounds("week", now, community.tz)
        assert since is not None
        finished = list(db.exec(
            select(Order).where(Order.community_id == community.grid_id, col(Order.state).in_(dashboard.DONE),
                                col(Order.resolved_at) >= since).order_by(col(Order.resolved_at).desc())
        ))
        grids = {g.id: g for g in db.exec(select(Grid).where(Grid.community_id == community.grid_id))}
        rows = [{"number": o.number, "category": name("category", o.category, "zh"),
                 "place": dashboard.public_place(grids.get(o.grid_id), o.building),
                 "reported": dashboard.local(o.created_at, community.tz, "%m-%d %H:%M"),
                 "resolved": dashboard.local(o.resolved_at, community.tz, "%m-%d %H:%M")} for o in finished]
        overall = stats.rates(db, community.grid_id, now, since=since)
        return templates.TemplateResponse(request, "public.html", {
            "viewer": None, "rows": rows, "overall": overall[0] if overall else None,
            "since": dashboard.local(since, community.tz, "%Y-%m-%d"),
        })

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request, viewer: OptionalViewer) -> Response:
        return templates.TemplateResponse(request, "docs.html", {"viewer": viewer, "spec": app.openapi(),
                                                                 "operations": _operations(app.openapi())})


def _script_json(data: Any) -> str:
    """JSON for a <script type="application/json"> block: no "</script>" can close it early."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAPI operations as rows for the offline docs page."""
    rows = []
    for path, methods in spec.get("paths", {}).items():
        for method, operation in methods.items():
            rows.append({"method": method.upper(), "path": path, "summary": operation.get("summary", ""),
                         "description": operation.get("description", ""),
                         "parameters": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                                         "description": p.get("description", ""),
                                         "type": _type_of(p.get("schema", {}))}
                                        for p in operation.get("parameters", [])],
                         "tag": (operation.get("tags") or [""])[0]})
    return rows


def _type_of(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type_of(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    kind = schema.get("type", "")
    if "enum" in schema:
        return " | ".join(map(str, schema["enum"]))
    return f"{kind} ({schema['format']})" if schema.get("format") else kind
