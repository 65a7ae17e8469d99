"""The `linli` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.settings import SettingsError, load_settings

app = typer.Typer(help="邻里 Linli — the group-chat work-order bot for neighbourhoods.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
triage_app = typer.Typer(help="Classify messages (JSON lines on stdin), train and evaluate the model.")
app.add_typer(triage_app, name="triage")
console = Console()
errors = Console(stderr=True)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        print(f"linli {version('linli')}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                              help="Print Linli's version and stop.")] = False) -> None:
    """邻里 Linli — the group-chat work-order bot for neighbourhoods."""


def _settings():  # type: ignore[no-untyped-def]
    try:
        return load_settings()
    except SettingsError as error:
        _bad_setting(error)


def _core(**kw):  # type: ignore[no-untyped-def]
    from bot.wiring import no_new_empty_database, open_core

    settings = _settings()
    try:
        with no_new_empty_database(settings.database_url):
            return open_core(settings, **kw)
    except SettingsError as error:
        _bad_setting(error)


def fail(message: str) -> None:
    """One line on stderr, in red where the terminal shows colour; the message is shown as it is (a path
    with "[/]" in it is no markup)."""
    errors.print(escape(message), style="red", soft_wrap=True, highlight=False)


def _bad_setting(error: SettingsError) -> NoReturn:
    fail(f"linli: bad setting {error}")
    raise typer.Exit(2) from None


@app.command()
def demo(db: Annotated[Path | None, typer.Option(help="Keep the demo's database at this path.")] = None) -> None:
    """Play a scripted neighbourhood through the real core and print the transcript and the three rates."""
    from bot.cli.demo import run_demo

    try:
        run_demo(db, console)
    except SettingsError as error:
        fail(f"linli demo: {error}")
        raise typer.Exit(2) from None


@app.command("console")
def console_chat(
    speaker: Annotated[str, typer.Option("--as", help="Who speaks first.")] = "王阿姨",
    chat: Annotated[str | None, typer.Option(help="The chat to speak in.")] = None,
) -> None:
    """An interactive group chat in the terminal: speak as any member with /as NAME."""
    from bot.console.interactive import run_console

    settings = _settings()
    run_console(_core(), settings, speaker, chat, console)


@app.command()
def run(webhook: Annotated[str | None, typer.Option(help="Telegram webhook URL (polling without it).")] = None,
        listen: Annotated[str, typer.Option(help="Webhook listen address host:port.")] = "127.0.0.1:8443") -> None:
    """Start every configured transport (Telegram, Matrix) with the scheduler."""
    from bot.service import serve
    from bot.wiring import no_new_empty_database

    settings = _settings()
    try:
        with no_new_empty_database(settings.database_url):
            serve(settings, webhook=webhook, listen=listen)
    except SettingsError as error:
        _bad_setting(error)


@app.command("owner-code")
def owner_code() -> None:
    """Print a one-time owner code: whoever sends it to the bot by direct message (/认证 CODE) becomes
    supervisor of the whole community. Any earlier code stops working; this one works for a day."""
    from handlers import ownership
    from storage.db import session

    core = _core()
    with session(core.engine) as db:
        code = ownership.issue(db, core.clock.now())
    print(code)
    name = core.community.config.community.name
    console.print(f"私聊机器人发送 /认证 {code} 即成为 {name} 的督办（24 小时内有效，仅一次）。", soft_wrap=True)


@triage_app.callback(invoke_without_command=True)
def triage_stream(ctx: typer.Context, strictness: Annotated[str, typer.Option(
        help="eager, balanced or cautious: how readily a message is filed or asked about.")] = "balanced") -> None:
    """Read JSON lines {"text": …} on stdin, write one JSON line of triage per input."""
    if ctx.invoked_subcommand is not None:
        return
    from handlers.triage import STRICTNESS, triage

    if strictness not in STRICTNESS:
        fail(f"linli triage: --strictness must be one of {', '.join(STRICTNESS)}")
        raise typer.Exit(2)
    _use_triage_model(None)
    out = sys.stdout
    bad = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        text = _text_of(line)
        if text is None:
            bad += 1
            print(f"linli triage: line {number} is not a JSON object with a \"text\" string: {line.strip()[:60]}",
                  file=sys.stderr)
            continue
        out.write(json.dumps(triage(text, strictness=strictness).as_json(), ensure_ascii=False) + "\n")
    out.flush()
    if bad:
        raise typer.Exit(1)


def _text_of(line: str) -> str | None:
    """The "text" of one JSON line, or None when the line is not an object with a text string."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    text = value.get("text") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None


@app.command()
def bench(
    only: Annotated[list[str] | None, typer.Option(help="Run only these benchmarks.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    messages: Annotated[int, typer.Option(help="Messages for the intake benchmark.")] = 3000,
    orders: Annotated[int, typer.Option(help="Open orders for the sweep and rates benchmarks.")] = 100_000,
    db: Annotated[str | None, typer.Option(help="An empty SQLite file or a PostgreSQL database to measure on "
                                                "(a scratch schema in it). Default: a temporary SQLite file.")]
    = None,
) -> None:
    """Measure intake, triage, the sweep and the rates, each on a scratch database (never LINLI_DATABASE_URL's)."""
    from bot.cli.bench import run_benchmarks
    from bot.settings import Settings

    if db is not None:
        try:
            Settings._database_url(db)
        except ValueError as error:
            fail(f"linli bench: --db {error}")
            raise typer.Exit(2) from None
    try:
        results = run_benchmarks(db, only=set(only or []), messages=messages, orders=orders,
                                 console=None if as_json else console)
    except ValueError as error:
        fail(f"linli bench: {error}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(results, ensure_ascii=False))


@app.command()
def stats(
    period: Annotated[str, typer.Option(help="today, week, month or all.")] = "all",
    by: Annotated[str, typer.Option(help="community, team, grid or handler.")] = "team",
) -> None:
    """The three rates (响应率 / 解决率 / 满意率) from the database."""
    from handlers import stats as rates
    from storage.db import session

    if by not in ("community", "team", "grid", "handler"):
        fail("linli stats: --by must be community, team, grid or handler")
        raise typer.Exit(2)
    if period not in ("today", "week", "month", "all"):
        fail("linli stats: --period must be today, week, month or all")
        raise typer.Exit(2)
    core = _core()
    now = core.clock.now()
    since, until = rates.period_bounds(period, now, core.community.tz)  # calendar periods, as in the chat
    with session(core.engine) as db:
        rows = [*rates.rates(db, core.community.grid_id, now, since=since, until=until),
                *(rates.rates(db, core.community.grid_id, now, group=by, since=since, until=until)
                  if by != "community" else [])]
    from bot.cli.terminal import rates_table

    console.print(rates_table(rows, f"三率 · {core.community.config.community.name} · {period}"))


from datetime import datetime  # noqa: E402  (typer reads the option types below at run time)


@app.command("export")
def export_ledger(
    out: Annotated[Path, typer.Argument(help="The .xlsx file to write.")],
    from_: Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"],
                                                   help="First day reported (local date).")] = None,
    to: Annotated[datetime | None, typer.Option("--to", formats=["%Y-%m-%d"],
                                                help="Last day reported, included.")] = None,
    grid: Annotated[str | None, typer.Option(help="Only this grid (code) and the grids below it.")] = None,
) -> None:
    """The 台账: orders, events and the three rates as an XLSX workbook (Excel, WPS)."""
    from datetime import time, timedelta

    from bot.cli.export import export_ledger as write_ledger
    from storage import repo
    from storage.db import session

    if out.suffix.lower() != ".xlsx":
        fail(f"linli export: {out} must end in .xlsx (the ledger is an Excel workbook)")
        raise typer.Exit(2)
    if not out.parent.is_dir():
        fail(f"linli export: no folder {out.parent} to write {out.name} in")
        raise typer.Exit(2)
    core = _core()
    tz = core.community.tz
    since = datetime.combine(from_.date(), time(), tz) if from_ else None
    until = datetime.combine(to.date() + timedelta(days=1), time(), tz) if to else None
    grid_ids = None
    if grid is not None:
        with session(core.engine) as db:
            found = repo.grid_by_code(db, grid)
            if found is None or found.community_id != core.community.grid_id:
                fail(f"linli export: no grid {grid!r} in {core.community.config.community.name}")
                raise typer.Exit(2)
            grid_ids = [g.id for g in repo.grids_below(db, found.path) if g.id is not None]
    result = write_ledger(core.engine, out, community_id=core.community.grid_id, tz=tz, now=core.clock.now(),
                          since=since, until=until, grid_ids=grid_ids, console=console)
    console.print(f"已导出 {result['orders']} 张工单、{result['events']} 条事件 → {out}（{result['ms']:.0f} ms）")


web_app = typer.Typer(help="The supervisors' web dashboard, JSON API and Open311; login tokens.")
app.add_typer(web_app, name="web")


@web_app.callback(invoke_without_command=True)
def web(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    public: Annotated[bool, typer.Option(help="Open the 公示 page and Open311 to everyone (no personal data).")]
    = False,
) -> None:
    """Serve the dashboard (log in with a link from `linli web token NAME`)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from bot.web import create_app

    core = _core()
    settings = _settings()
    console.print(f"邻里 Linli web on http://{host}:{port}/  (login links: linli web token NAME)")
    uvicorn.run(create_app(core.engine, core.community, core.clock, public=public), host=host, port=port,
                log_level=settings.log_level.lower())


@web_app.command("token")
def web_token(
    name: Annotated[str, typer.Argument(help="The person, as named in linli.toml.")],
    url: Annotated[str, typer.Option(help="Where `linli web` is reached.")] = "http://127.0.0.1:8080",
    revoke: Annotated[bool, typer.Option(help="Revoke every login token of NAME instead.")] = False,
) -> None:
    """Print a login link for NAME (a dispatcher or supervisor); the token is stored only as a digest."""
    from bot.web.access import issue_token, revoke_tokens, viewer_for
    from storage import repo
    from storage.db import session

    core = _core()
    with session(core.engine) as db:
        person = repo.person_by_name(db, name)
        if person is None:
            fail(f"linli web token: nobody is called {name!r}")
            raise typer.Exit(2)
        if revoke:
            console.print(f"已收回 {name} 的 {revoke_tokens(db, person, core.clock.now())} 个登录链接。")
            return
        viewer = viewer_for(db, person, core.community.grid_id)
        if viewer is None:
            fail(f"linli web token: {name} is no dispatcher or supervisor in "
                 f"{core.community.config.community.name}, and would see nothing")
            raise typer.Exit(2)
        token = issue_token(db, person, core.clock.now())
    console.print(f"{name}（{viewer.role_label}）可查看：" + "、".join(g.name for g in viewer.grids), soft_wrap=True)
    print(f"{url.rstrip('/')}/login?token={token}")


def _use_triage_model(path: Path | None) -> None:
    """The model `path` names, else LINLI_TRIAGE_MODEL, else the one shipped in the package."""
    from handlers.triage import ModelError, use_model

    if path is None:
        try:
            path = load_settings().triage_model
        except SettingsError:
            path = None  # a bad unrelated setting must not stop classifying; the shipped model serves
    if path is None:
        return
    try:
        use_model(path)
    except ModelError as error:
        fail(f"linli triage: {error}")
        raise typer.Exit(2) from None


@triage_app.command("train")
def triage_train(
    data: Annotated[list[Path], typer.Option("--data", help="CSV or JSON lines: text and labels. Repeatable.")],
    out: Annotated[Path, typer.Option(help="Where to write the model.")] = Path("linli-triage.npz"),
    base: Annotated[bool, typer.Option("--base/--no-base",
                                       help="Learn on top of the shipped model's training data.")] = True,
) -> None:
    """Train a community model from labelled messages, e.g. an old 台账 exported as CSV.

    Columns (English or Chinese): text/内容, is_request/是否工单, category/类别, urgency/紧急程度, matter/事项分类,
    building/楼栋, unit/单元, room/房号. Labels as codes or names: 公共设施, 红/黄/蓝, 大事/小事/私事.
    """
    import time

    from handlers.triage.dataset import DataError
    from handlers.triage.train import train

    started = time.perf_counter()
    try:
        model = train(data, out, base=base)
    except DataError as error:
        fail(f"linli triage train: {error}")
        raise typer.Exit(2) from None
    meta = model.meta
    console.print(f"已训练 {out}: {meta['own_examples']} 条自有样本"
                  + (f" + {meta['examples'] - meta['own_examples']} 条基础样本" if base else "")
                  + f", {len(model.vocabulary)} 个特征, {out.stat().st_size / 1024:.0f} KiB, "
                  f"{time.perf_counter() - started:.1f} s", soft_wrap=True)
    console.print(f"启用: LINLI_TRIAGE_MODEL={out.resolve()}  (检查: linli triage eval --data FILE --model {out})",
                  soft_wrap=True)


@triage_app.command("eval")
def triage_eval(
    data: Annotated[list[Path], typer.Option("--data", help="CSV or JSON lines with labels. Repeatable.")],
    model: Annotated[Path | None, typer.Option(help="Model file (default: LINLI_TRIAGE_MODEL, else shipped).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Request precision/recall/F1, category, urgency and matter accuracy, red recall and precision,
    building accuracy and the confusion tables, on labelled messages."""
    from handlers.triage import triage
    from handlers.triage.dataset import DataError, read_all
    from handlers.triage.evaluate import BARS, NONE, evaluate

    _use_triage_model(model)
    try:
        examples = read_all(data)
    except DataError as error:
        fail(f"linli triage eval: {error}")
        raise typer.Exit(2) from None
    report = evaluate(examples, triage)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return

    def show(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    figures = [
        ("request precision", report["request"]["precision"], None),
        ("request recall", report["request"]["recall"], None),
        ("request F1", report["request"]["f1"], "request.f1"),
        ("category accuracy", report["category_accuracy"], "category_accuracy"),
        ("urgency accuracy", report["urgency_accuracy"], "urgency_accuracy"),
        ("matter accuracy", report["matter_accuracy"], None),
        ("red recall", report["red"]["recall"], "red.recall"),
        ("red precision", report["red"]["precision"], "red.precision"),
        ("building accuracy", report["building_accuracy"], "building_accuracy"),
    ]
    summary = Table(title=f"triage · {report['messages']} messages, {report['requests']} requests")
    for column in ("figure", "value", "bar"):
        summary.add_column(column, justify="left" if column == "figure" else "right")
    for name, value, bar_key in figures:
        bar = BARS.get(bar_key) if bar_key else None
        colour = "" if bar is None or value is None else ("green" if value >= bar else "red")
        summary.add_row(name, f"[{colour}]{show(value)}[/]" if colour else show(value),
                        "" if bar is None else f"≥ {bar}")
    console.print(summary)
    for head in ("category", "urgency"):
        rows = report["confusion"][head]
        columns = sorted({seen for row in rows.values() for seen in row} | set(rows), key=lambda c: (c == NONE, c))
        short = {code: _SHORT.get(code, code[:3]) for code in columns}
        table = Table(title=f"{head}: gold (rows) × predicted (columns)",
                      caption=f"{NONE} taken for chatter" + "".join(
                          f" · {short[code]} {code}" for code in columns if short[code] != code))
        table.add_column("")
        for column in columns:
            table.add_column(short[column], justify="right")
        for gold in sorted(rows):
            table.add_row(gold, *(_cell(rows[gold].get(column, 0), gold == column) for column in columns))
        console.print(table)


_SHORT = {"utilities": "ut", "facilities": "fa", "sanitation": "sa", "noise": "no", "parking": "pa", "safety": "sf",
          "dispute": "di", "property": "pr", "assistance": "as", "services": "se", "construction": "co", "other": "ot"}


def _cell(count: int, diagonal: bool) -> str:
    if not count:
        return "[dim]·[/]"
    return f"[bold green]{count}[/]" if diagonal else f"[red]{count}[/]"


@triage_app.command("corrections")
def triage_corrections(out: Annotated[Path, typer.Argument(help="JSON lines file to write.")]) -> None:
    """Write the dispatchers' corrections (/修改) as labelled examples, ready for `linli triage train`."""
    from sqlmodel import select

    from handlers.triage.dataset import write_jsonl
    from storage.db import session
    from storage.models import Example

    core = _core()
    with session(core.engine) as db:
        examples = [row.payload for row in db.exec(select(Example).order_by(Example.id))]
    write_jsonl(examples, out)
    console.print(f"{len(examples)} corrections written to {out}; train with: "
                  f"linli triage train --data {out}")


if __name__ == "__main__":
    app()
