"""`linli bench`: how fast the parts that matter are, each measured on a scratch database of its own.

Each benchmark returns a dict of figures; names may be added, never renamed (other tools read them).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, insert, make_url
from sqlalchemy import text as sql
from sqlalchemy.exc import OperationalError

from bot.cli.demo import EXAMPLE
from bot.inbox import FLUSH_EVERY, InboxLanes
from bot.render import render
from bot.settings import load_community
from bot.wiring import open_storage, unreachable
from handlers import inbox, stats
from handlers.clock import ManualClock
from handlers.community import CommunityConfig
from handlers.inbox import Arrival, Stored
from handlers.protocol import Incoming
from handlers.router import Linli
from scheduler.sweep import sweep
from storage import repo
from storage.db import Checkpointer, session
from storage.models import Order, Reminder

PLACES = ["3栋2单元", "5号楼", "7幢1单元301", "12#楼", "2-1-502", "B区5栋", "北门", "地下车库"]
PROBLEMS = ["楼道灯坏了，晚上黑漆漆的", "电梯门关不上", "垃圾堆了好几天没人清理", "门口有车堵住了消防通道",
            "楼上装修从早上七点开始砸墙", "水管漏水了，麻烦来看看", "路灯不亮", "单元门禁刷不开"]
CHATTER = ["收到，谢谢", "早上好", "好的", "【通知】周六上午义诊", "哈哈哈"]


def _messages(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(PLACES)}{rng.choice(PROBLEMS)}" if i % 4 else rng.choice(CHATTER) for i in range(count)]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


JUDGE_AHEAD = os.environ.get("LINLI_TRIAGE_PROCESS", "1") != "0"  # as `linli run` would (Settings.triage_process)
ARRIVING = 16  # updates that come together in a busy moment (one getUpdates answer, webhooks meanwhile)


def _incoming(i: int, text: str) -> Incoming:
    return Incoming(service="console", chat_id="阳光小区业主群", sender_id=f"u{i % 50}", sender_name=f"居民{i % 50}",
                    text=text, message_id=f"m{i}")


class _Arriving:
    """Updates handled as a transport does it (`InboxLanes`): each round stored in the inbox (one transaction),
    then handled by the core in one transaction (group commit) with its replies queued in the outbox and
    every reply rendered; the updates that changed nothing are marked handled together every `FLUSH_EVERY`."""

    def __init__(self, engine: Engine, core: Linli) -> None:
        self.engine, self.core = engine, core
        self.quiet: list[int] = []
        self.flushed = time.perf_counter()

    def round(self, texts: list[tuple[int, str]]) -> None:
        now = self.core.clock.now()
        stored = inbox.store_now(self.engine, "console", [Arrival(f"m{i}", "chat:阳光小区业主群", {"text": text})
                                                          for i, text in texts], now)
        results = self.core.take_many([(_incoming(i, text), update.id)
                                       for (i, text), update in zip(texts, stored, strict=True)], self.core.owner)
        self.quiet += [update.id for update, queued in zip(stored, results, strict=True) if not queued]
        if time.perf_counter() - self.flushed >= FLUSH_EVERY:
            self.flush()
        for queued in results:
            for _, action in queued:
                render(action.text, action.lang)

    def flush(self) -> None:
        inbox.handled(self.engine, self.quiet, self.core.clock.now())
        self.quiet, self.flushed = [], time.perf_counter()


def bench_intake(url: str, messages: int) -> dict[str, Any]:
    """Update → inbox row → triage → stored order, event and queued reply → rendered, in rounds of `ARRIVING`
    updates as they come in a busy group; a message's latency is its round's."""
    engine = open_storage(url)
    checkpointer = Checkpointer(engine)  # as `linli run` does
    core = Linli(engine, load_community(EXAMPLE), ManualClock(), judge_ahead=JUDGE_AHEAD)
    core.ready()  # as `linli run` starts
    core.ahead_ready()  # `linli run` judges alone for its first half second; measured here is the core at work
    texts = list(enumerate(_messages(messages + 200)))
    latencies: list[float] = []
    arriving = _Arriving(engine, core)
    for start in range(0, 200, ARRIVING):  # warm caches, jieba and the first statements
        arriving.round(texts[start:min(start + ARRIVING, 200)])
    # The bare loop runs just before and just after, and the ratio is to their mean: this machine's speed
    # drifts by half within minutes, and a baseline taken at another moment measured the drift.
    baseline_before = bench_bare_sqlite(messages)
    started, judged_before = time.perf_counter(), core.judged_ahead
    for start in range(200, len(texts), ARRIVING):
        begin = time.perf_counter()
        chunk = texts[start:start + ARRIVING]
        arriving.round(chunk)
        latencies += [time.perf_counter() - begin] * len(chunk)
    elapsed = time.perf_counter() - started
    judged_ahead = (core.judged_ahead - judged_before) / messages
    baseline = (baseline_before + bench_bare_sqlite(messages)) / 2
    chatter = [(i, f"{CHATTER[i % len(CHATTER)]}{i % 7}") for i in range(len(texts), len(texts) + messages)]
    started = time.perf_counter()
    for start in range(0, len(chatter), ARRIVING):  # most of a real group: judged, nothing stored but the update
        arriving.round(chatter[start:start + ARRIVING])
    arriving.flush()
    chatter_per_s = messages / (time.perf_counter() - started)
    offset = len(texts) + len(chatter)
    stall = asyncio.run(_loop_stall(engine, core, [(offset + i, t) for i, (_, t) in enumerate(texts[:messages])]))
    offset += messages
    paced = {}
    for rate in PACED_RATES:
        stream = [(offset + i, t) for i, (_, t) in enumerate(texts[:min(messages, rate * 2)])]
        paced[str(rate)] = asyncio.run(_paced(engine, core, stream, rate))
        offset += len(stream)
    core.close()
    checkpointer.stop()
    engine.dispose()
    per_s = messages / elapsed
    return {"per_s": round(per_s, 1), "p50_ms": round(statistics.median(latencies) * 1000, 3),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3), "baseline_per_s": round(baseline, 1),
            "ratio": round(per_s / baseline, 3), "messages": messages, "chatter_per_s": round(chatter_per_s, 1),
            "request_share": 0.75,  # the mixed stream: three requests to one piece of chatter
            "arriving": ARRIVING, "loop_stall_ms": stall, "paced": paced,
            "judged_ahead": round(judged_ahead, 3)}  # share of the messages the triage process judged


PACED_RATES = (250, 500, 1000)  # updates a second, arriving evenly over eight chats


async def _paced(engine: Engine, core: Linli, texts: list[tuple[int, str]], rate: int) -> dict[str, float]:
    """Updates arriving one by one at `rate` a second over eight chats, as webhooks bring them, through what a
    transport uses: stored in the inbox (what arrives meanwhile together), handled in each chat's lane through
    the async seam (group commit forms by itself from what lanes hand in while the core is busy). How long
    from an update's arrival until it is handled and its reply queued."""
    loop = asyncio.get_running_loop()
    arrived: dict[str, float] = {}
    latencies: list[float] = []

    async def handle(batch: list[Stored]) -> None:
        updates = [(_incoming(int(update.key[1:]), update.payload["text"]), update.id) for update in batch]
        for queued in await core.take_async(updates):
            for _, action in queued:
                render(action.text, action.lang)
        latencies.extend(loop.time() - arrived[update.key] for update in batch)

    lanes = InboxLanes("console", engine, core.clock, handle, owner=core.owner, offload=core.call)
    start = loop.time() + 0.05
    receiving = []
    for n, (i, text) in enumerate(texts):
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        arrived[f"m{i}"] = due
        receiving.append(asyncio.create_task(lanes.receive([Arrival(f"m{i}", f"chat:{i % 8}", {"text": text})])))
    await asyncio.gather(*receiving)
    await lanes.idle()
    handled_in = loop.time() - start
    await lanes.stop()
    return {"p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
            "kept_up": round(len(texts) / handled_in / rate, 2)}


async def _loop_stall(engine: Engine, core: Linli, texts: list[tuple[int, str]]) -> float:
    """The event loop's worst stall while eight chats' lanes feed the same stream through the async seam: how
    much later than asked a 1 ms timer fires (the core, its storage and the model run on the worker)."""
    worst = 0.0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal worst
        loop = asyncio.get_running_loop()
        while not done.is_set():
            asked = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - asked - 0.001)

    async def lane(mine: list[tuple[int, str]]) -> None:
        for i, text in mine:
            stored = await core.call(inbox.store_now, engine, "console",
                                     [Arrival(f"m{i}", "chat:阳光小区业主群", {"text": text})], core.clock.now())
            for queued in await core.take_async([(_incoming(i, text), stored[0].id)]):
                for _, action in queued:
                    render(action.text, action.lang)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(lane(texts[n::8]) for n in range(8)))
    done.set()
    await watcher
    return round(worst * 1000, 2)


def bench_bare_sqlite(messages: int) -> float:
    """The floor: the same inserts with the bare sqlite3 module (the update, the order, its event, the reply
    queued), one transaction per message."""
    with tempfile.TemporaryDirectory() as scratch:
        db = sqlite3.connect(Path(scratch) / "bare.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript("""
            CREATE TABLE inbox (id INTEGER PRIMARY KEY, service TEXT, key TEXT, lane TEXT, payload TEXT,
                                received_at TEXT, handled_at TEXT, UNIQUE (service, key));
            CREATE TABLE delivery (id INTEGER PRIMARY KEY, service TEXT, chat TEXT, ref TEXT, at TEXT,
                                   UNIQUE (service, chat, ref));
            CREATE TABLE counter (community INTEGER PRIMARY KEY, next INTEGER);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, community INTEGER, number INTEGER, text TEXT,
                                 category TEXT, state TEXT, created_at TEXT, UNIQUE (community, number));
            CREATE TABLE event (id INTEGER PRIMARY KEY, order_id INTEGER, action TEXT, at TEXT, detail TEXT);
            CREATE TABLE outbox (id INTEGER PRIMARY KEY, service TEXT, payload TEXT, next_at TEXT, sent_at TEXT);
            INSERT INTO counter VALUES (1, 1);
        """)
        texts = _messages(messages)
        started = time.perf_counter()
        for i, text in enumerate(texts):
            now = datetime.now(UTC).isoformat()
            db.execute("BEGIN")
            db.execute("INSERT INTO inbox (service, key, lane, payload, received_at) VALUES ('bench', ?, 'g', ?, ?)",
                       (f"m{i}", json.dumps({"text": text}), now))
            db.execute("INSERT INTO delivery (service, chat, ref, at) VALUES ('bench', 'g', ?, ?)", (f"m{i}", now))
            number = db.execute("UPDATE counter SET next = next + 1 WHERE community = 1 RETURNING next").fetchone()[0]
            cursor = db.execute("INSERT INTO orders (community, number, text, category, state, created_at) "
                                "VALUES (1, ?, ?, 'facilities', 'reported', ?)", (number - 1, text, now))
            db.execute("INSERT INTO event (order_id, action, at, detail) VALUES (?, 'report', ?, '{}')",
                       (cursor.lastrowid, now))
            db.execute("INSERT INTO outbox (service, payload, next_at) VALUES ('bench', ?, ?)",
                       (json.dumps({"text": text}), now))
            db.execute("UPDATE inbox SET handled_at = ? WHERE service = 'bench' AND key = ?", (now, f"m{i}"))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
    return messages / elapsed


def bench_triage(count: int = 5000) -> dict[str, Any]:
    from handlers.triage import triage

    first_ms = _first_triage_ms()
    texts = _messages(count, seed=11)
    triage(texts[0])
    started = time.perf_counter()
    for text in texts:
        triage(text)
    elapsed = time.perf_counter() - started
    return {"per_s": round(count / elapsed, 1), "first_ms": first_ms, "messages": count}


def _first_triage_ms() -> float:
    """From a fresh interpreter's start to its first classified message (imports and models included)."""
    script = ("import time; t=time.perf_counter(); from handlers.triage import triage; "
              "triage('3栋2单元楼道灯坏了'); print((time.perf_counter()-t)*1000)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip()), 1)


def _fill_orders(engine: Engine, core: Linli, count: int, due_share: float) -> datetime:
    """`count` open orders with their reminders, a `due_share` of which are due now."""
    now = core.clock.now()
    community, grid = core.community.grid_id, core.community.grid_id
    with session(engine) as db:
        chat = repo.chat_by_external(db, "console", "阳光小区业主群")
        chat_id = chat.id if chat else None
    batch = 20_000
    with engine.begin() as connection:
        start_id = connection.execute(Order.__table__.select().with_only_columns(Order.__table__.c.id)
                                      .order_by(Order.__table__.c.id.desc()).limit(1)).scalar() or 0
    for offset in range(0, count, batch):
        orders, reminders = [], []
        for i in range(offset, min(count, offset + batch)):
            order_id = start_id + i + 1
            due = now - timedelta(minutes=1) if i < count * due_share else now + timedelta(hours=5)
            orders.append({"id": order_id, "community_id": community, "number": 1_000_000 + order_id,
                           "text": "bench", "title": "bench", "category": "facilities", "urgency": "blue",
                           "matter": "minor", "grid_id": grid, "reporter_id": 1, "state": "in_progress",
                           "chat_id": chat_id, "assignee_id": 1,
                           "level": 0, "rating_round": 0, "confidence": 1.0, "created_at": now - timedelta(hours=1),
                           "assigned_at": now - timedelta(hours=1), "accepted_at": now - timedelta(minutes=50),
                           "resolve_due": due})
            reminders.append({"order_id": order_id, "milestone": "resolution", "step": "before", "due_at": due,
                              "void": False})
        with engine.begin() as connection:
            connection.execute(insert(Order), orders)
            connection.execute(insert(Reminder), reminders)
    with engine.begin() as connection:  # fresh statistics, as autovacuum would have them in a running system
        connection.execute(sql("ANALYZE"))
    return now


def _seed_person(core: Linli) -> None:
    core.handle(Incoming(service="bench", chat_id="g", sender_id="seed", sender_name="seed", text="hi"))


def bench_sweep(url: str, orders: int, due: int = 50) -> dict[str, Any]:
    """One sweep over `orders` open orders of which `due` have a reminder due now, and an idle sweep."""
    engine = open_storage(url)
    core = Linli(engine, _quiet(load_community(EXAMPLE)), ManualClock())
    _seed_person(core)
    now = _fill_orders(engine, core, orders, due_share=due / orders)
    sweep(engine, core.community, now - timedelta(days=1))  # warm the statement cache
    started = time.perf_counter()
    queued = sweep(engine, core.community, now)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    sweep(engine, core.community, now)
    idle = time.perf_counter() - started
    engine.dispose()
    return {"orders": orders, "ms": round(elapsed * 1000, 1), "due": due, "queued": queued,
            "idle_ms": round(idle * 1000, 2)}


def _quiet(config: CommunityConfig) -> CommunityConfig:
    """No digests or quiet hours in a benchmark: it measures the reminders alone."""
    info = config.community.model_copy(update={"daily_digest": None, "weekly_ranking": None, "quiet_hours": None})
    return config.model_copy(update={"community": info})


def bench_rates(url: str, orders: int) -> dict[str, Any]:
    """The three rates over `orders` orders, per community and per team."""
    engine = open_storage(url)
    core = Linli(engine, load_community(EXAMPLE), ManualClock())
    _seed_person(core)
    now = _fill_orders(engine, core, orders, due_share=0.0)
    with session(engine) as db:
        started = time.perf_counter()
        overall = stats.rates(db, core.community.grid_id, now)
        elapsed = time.perf_counter() - started
    engine.dispose()
    return {"orders": orders, "ms": round(elapsed * 1000, 1), "counted": overall[0].reported if overall else 0}


def bench_export_ledger(url: str, orders: int) -> dict[str, Any]:
    """The XLSX ledger of `orders` orders."""
    from bot.cli.export import bench_export

    engine = open_storage(url)
    core = Linli(engine, load_community(EXAMPLE), ManualClock())
    _seed_person(core)
    _fill_orders(engine, core, orders, due_share=0.0)
    with tempfile.TemporaryDirectory(prefix="linli-bench-export-") as scratch:
        result = bench_export(engine, Path(scratch) / "ledger.xlsx")
    engine.dispose()
    return result


def bench_lateness(url: str, reminders: int = 200, every: float = 1.0) -> dict[str, Any]:
    """How late reminders reach the transport: due times spread over a few seconds of the real clock,
    the real scheduler sweeping every `every` seconds (LINLI_SWEEP_SECONDS)."""
    import asyncio

    from handlers.clock import SystemClock
    from scheduler.runner import SweepRunner

    engine = open_storage(url)
    clock = SystemClock()
    core = Linli(engine, _quiet(load_community(EXAMPLE)), clock)
    _seed_person(core)
    start = clock.now() + timedelta(seconds=1)
    spread = 5.0
    due_at = {}
    with session(engine) as db:
        chat = repo.chat_by_external(db, "console", "阳光小区业主群")
    rows = []
    for i in range(reminders):
        due = start + timedelta(seconds=spread * i / reminders)
        rows.append({"id": 5_000_000 + i, "community_id": core.community.grid_id, "number": 5_000_000 + i,
                     "text": "bench", "title": "bench", "category": "facilities", "urgency": "blue",
                     "matter": "minor", "grid_id": core.community.grid_id, "reporter_id": 1, "assignee_id": 1,
                     "chat_id": chat.id if chat else None, "state": "in_progress", "level": 0, "rating_round": 0,
                     "confidence": 1.0, "created_at": start, "assigned_at": start, "resolve_due": due})
        due_at[5_000_000 + i] = due
    with engine.begin() as connection:
        connection.execute(insert(Order), rows)
        connection.execute(insert(Reminder), [{"order_id": r["id"], "milestone": "resolution", "step": "due",
                                               "due_at": r["resolve_due"], "void": False} for r in rows])
    late: list[float] = []

    async def deliver(actions: list) -> None:  # type: ignore[type-arg]
        now = clock.now()
        late.extend((now - due_at[a.order_id]).total_seconds() for a in actions
                     if a.order_id in due_at and a.text.key == "remind.due")

    async def run() -> None:
        runner = SweepRunner(engine, core.community, clock, deliver, every=every)
        runner.start()
        deadline = time.monotonic() + spread + 10
        while len(late) < reminders and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        runner.shutdown()

    asyncio.run(run())
    engine.dispose()
    if not late:
        return {"reminders": 0, "expected": reminders, "every_s": every, "p50_s": None, "p99_s": None, "max_s": None}
    return {"reminders": len(late), "expected": reminders, "every_s": every,
            "p50_s": round(statistics.median(late), 3), "p99_s": round(_percentile(late, 0.99), 3),
            "max_s": round(max(late), 3)}


def run_benchmarks(db: str | None, *, only: set[str], messages: int = 3000, orders: int = 100_000,
                   console: Console | None = None) -> dict[str, Any]:
    """Run the chosen benchmarks, each on a fresh scratch database: a temporary SQLite file, or, with `db`,
    that (empty) SQLite file or a throw-away schema in that PostgreSQL database. Nothing else is written."""
    results: dict[str, Any] = {}
    plan: dict[str, Callable[[str], dict[str, Any]]] = {
        "intake": lambda url: bench_intake(url, messages),
        "triage": lambda url: bench_triage(),
        "sweep": lambda url: bench_sweep(url, orders),
        "rates": lambda url: bench_rates(url, orders),
        "lateness": lambda url: bench_lateness(url),
        "export": lambda url: bench_export_ledger(url, min(orders, 20_000)),
    }
    unknown = only - set(plan)
    if unknown:
        raise ValueError(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(plan)}")
    if db is not None:
        refuse_a_database_in_use(db)
    for name, run in plan.items():
        if only and name not in only:
            continue
        if console:
            console.print(f"[dim]running {name}…[/]")
        with scratch_database(db, name) as url:
            results[name] = run(url)
    results["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if console:
        _print(results, console)
    return results


def refuse_a_database_in_use(db: str) -> None:
    """`--db` must name a database without orders: a benchmark adds thousands of fake ones."""
    from sqlalchemy import inspect

    from storage.db import make_engine

    parsed = make_url(db)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return
    engine = make_engine(db)
    try:
        with engine.connect() as connection:
            table = Order.__tablename__
            has_orders = inspect(connection).has_table(table) and connection.execute(
                sql(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None
    except OperationalError as error:
        raise ValueError(f"--db: {unreachable(parsed, error)}") from None
    finally:
        engine.dispose()
    if has_orders:
        raise ValueError(f"--db {parsed.render_as_string(hide_password=True)} holds orders; "
                         "name an empty database (benchmarks write fake orders)")


@contextmanager
def scratch_database(db: str | None, name: str) -> Iterator[str]:
    """A fresh database for one benchmark, gone afterwards."""
    if db is None:
        with tempfile.TemporaryDirectory(prefix="linli-bench-") as folder:
            yield f"sqlite:///{Path(folder) / f'{name}.db'}"
        return
    parsed = make_url(db)
    if parsed.get_backend_name() == "sqlite":
        yield from _sqlite_file(Path(parsed.database or ""), db)
        return
    schema = f"linli_bench_{name}_{os.getpid()}"
    yield from _postgres_schema(db, schema)


def _sqlite_file(path: Path, db: str) -> Iterator[str]:
    """The SQLite file `db` for one benchmark, then as it was before: gone, or its old bytes back."""
    companions = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    with tempfile.TemporaryDirectory(prefix="linli-bench-keep-") as keep:
        kept = [(file, Path(keep) / file.name) for file in companions if file.exists()]
        for file, copy in kept:
            shutil.copy2(file, copy)
        try:
            yield db
        finally:
            for file in companions:
                file.unlink(missing_ok=True)
            for file, copy in kept:
                shutil.copy2(copy, file)


def _postgres_schema(db: str, schema: str) -> Iterator[str]:
    """A schema of its own in the PostgreSQL database `db`, dropped afterwards, whatever happens."""
    from storage.db import make_engine

    admin = make_engine(db)
    try:
        with admin.begin() as connection:
            connection.execute(sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            connection.execute(sql(f'CREATE SCHEMA "{schema}"'))
        scoped = make_url(db).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield scoped.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.execute(sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def _print(results: dict[str, Any], console: Console) -> None:
    table = Table(title="linli bench")
    table.add_column("benchmark")
    table.add_column("figures")
    for name, figures in results.items():
        table.add_row(name, json.dumps(figures, ensure_ascii=False))
    console.print(table)
