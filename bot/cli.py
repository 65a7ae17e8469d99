"""The `linli` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.settings import SettingsError, load_settings

app = typer.Typer(help="邻里 Linli — the group-chat work-order bot for neighbourhoods.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
triage_app = typer.Typer(help="Classify messages (JSON lines on stdin), train and evaluate the model.")
app.add_typer(triage_app, name="triage")
console = Console()


def _settings():  # type: ignore[no-untyped-def]
    try:
        return load_settings()
    except SettingsError as error:
        console.print(f"[red]linli: bad setting {error}[/]", soft_wrap=True)
        raise typer.Exit(2) from None


def _core(**kw):  # type: ignore[no-untyped-def]
    from bot.wiring import open_core

    try:
        return open_core(_settings(), **kw)
    except SettingsError as error:
        console.print(f"[red]linli: bad setting {error}[/]", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def demo(db: Annotated[Path | None, typer.Option(help="Keep the demo's database at this path.")] = None) -> None:
    """Play a scripted neighbourhood through the real core and print the transcript and the three rates."""
    from bot.demo import run_demo

    run_demo(db, console)


@app.command("console")
def console_chat(
    speaker: Annotated[str, typer.Option("--as", help="Who speaks first.")] = "王阿姨",
    chat: Annotated[str | None, typer.Option(help="The chat to speak in.")] = None,
) -> None:
    """An interactive group chat in the terminal: speak as any member with /as NAME."""
    from bot.interactive import run_console

    settings = _settings()
    run_console(_core(), settings, speaker, chat, console)


@app.command()
def run(webhook: Annotated[str | None, typer.Option(help="Telegram webhook URL (polling without it).")] = None,
        listen: Annotated[str, typer.Option(help="Webhook listen address host:port.")] = "127.0.0.1:8443") -> None:
    """Start every configured transport (Telegram, Matrix) with the scheduler."""
    from bot.service import serve

    settings = _settings()
    try:
        serve(settings, webhook=webhook, listen=listen)
    except SettingsError as error:
        console.print(f"[red]linli: bad setting {error}[/]", soft_wrap=True)
        raise typer.Exit(2) from None


@triage_app.callback(invoke_without_command=True)
def triage_stream(ctx: typer.Context) -> None:
    """Read JSON lines {"text": …} on stdin, write one JSON line of triage per input."""
    if ctx.invoked_subcommand is not None:
        return
    from handlers.triage import triage

    out = sys.stdout
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line).get("text") or ""
        except (json.JSONDecodeError, AttributeError):
            print(f"linli triage: line {number} is not a JSON object with \"text\"", file=sys.stderr)
            out.write(json.dumps({"error": "bad input line", "line": number}) + "\n")
            continue
        out.write(json.dumps(triage(str(text)).as_json(), ensure_ascii=False) + "\n")
    out.flush()


@app.command()
def bench(
    only: Annotated[list[str] | None, typer.Option(help="Run only these benchmarks.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    messages: Annotated[int, typer.Option(help="Messages for the intake benchmark.")] = 3000,
    orders: Annotated[int, typer.Option(help="Open orders for the sweep and rates benchmarks.")] = 100_000,
) -> None:
    """Measure intake, triage, the sweep and the rates on the storage LINLI_DATABASE_URL names."""
    import os

    from bot.bench import run_benchmarks

    url = os.environ.get("LINLI_DATABASE_URL")
    try:
        results = run_benchmarks(url, only=set(only or []), messages=messages, orders=orders,
                                 console=None if as_json else console)
    except ValueError as error:
        console.print(f"[red]linli bench: {error}[/]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(results, ensure_ascii=False))


@app.command()
def stats(
    period: Annotated[str, typer.Option(help="today, week, month or all.")] = "all",
    by: Annotated[str, typer.Option(help="community, team, grid or handler.")] = "team",
) -> None:
    """The three rates (响应率 / 解决率 / 满意率) from the database."""
    from datetime import timedelta

    from handlers import stats as rates
    from storage.db import session

    if by not in ("community", "team", "grid", "handler"):
        console.print("[red]linli stats: --by must be community, team, grid or handler[/]")
        raise typer.Exit(2)
    core = _core()
    now = core.clock.now()
    since = {"today": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}.get(period)
    with session(core.engine) as db:
        rows = [*rates.rates(db, core.community.grid_id, now, since=now - since if since else None),
                *(rates.rates(db, core.community.grid_id, now, group=by, since=now - since if since else None)
                  if by != "community" else [])]
    table = Table(title=f"三率 · {core.community.config.community.name} · {period}")
    for column in ("", "新单 new", "未结 open", "超时 overdue", "已办结 done", "评价 ratings",
                   "响应率", "解决率", "满意率"):
        table.add_column(column, justify="left" if not column else "right")

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    for row in rows:
        table.add_row(row.name, str(row.reported), str(row.open), str(row.overdue), str(row.resolved),
                      str(row.ratings), pct(row.response_rate), pct(row.resolution_rate),
                      pct(row.satisfaction_rate))
    console.print(table)


if __name__ == "__main__":
    app()
