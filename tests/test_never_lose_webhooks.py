"""Beyond one machine, on PostgreSQL: several `linli run` behind one load balancer, each update handled once.

Two `linli run --webhook URL --listen HOST:PORT` processes share one real PostgreSQL (tests/servers/postgres.py)
and one webhook address: a small round-robin proxy in this test, which the local Bot API server
(tests/servers/telegram_api.py) POSTs every update to, one at a time, as Telegram does. Either process may
receive any update and either may handle it; one chat's updates must still be handled in the order they were
sent, and each exactly once. Midway through, one process is SIGKILLed (a power cut, the OOM killer) the moment
it has acknowledged an update, before it could handle it: what it had received, the chats it was working on
and the cards it had still to post fall to the other one.

What counts is what people see in their groups (one "已登记" card per report, in its own group) and what the
database holds (one work order per report, numbered in each group in the order the reports were sent). Every
wait is a condition with a generous bound; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web

from tests.environment import without_linli_settings
from tests.never_lose import (
    CARD,
    IN_FLIGHT,
    LAST_GASP,
    LINLI,
    PROBLEMS,
    accepted,
    cards_in,
    reused_numbers,
)
from tests.servers.postgres import free_port, to_psycopg_dsn
from tests.servers.telegram_api import BotMessage, Chat, TelegramApiServer, User, WaitTimeout

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HOOK_PATH = "/telegram/hook"
GROUPS, PER_GROUP = 8, 10  # 10 cards a group: within one process's send budget of 20 a minute a group
START_WAIT = 45.0  # seconds `linli run` may take to set its webhook (it loads the triage model first)
SETTLE_WAIT = 90.0  # seconds the survivor may take to handle every update and post every card
MARKER = re.compile(r"LB(\d)S(\d\d)")  # group and sequence number of each report; the card's title shows it


@dataclass(frozen=True)
class Report:
    group_index: int
    seq: int
    group: Chat
    person: User

    @property
    def marker(self) -> str:
        return f"LB{self.group_index}S{self.seq:02d}"

    @property
    def text(self) -> str:
        """Every report names a building of its own, so none reads like an earlier one ("same problem?")."""
        k = self.group_index * PER_GROUP + self.seq
        return f"/报事 {self.marker} 第{self.seq + 1}条 {k + 1}栋{k % 4 + 1}单元{PROBLEMS[k % len(PROBLEMS)]}"


# --- the load balancer ---------------------------------------------------------------------------------


@dataclass
class Forward:
    update_id: int | None
    backend: str
    status: int | None  # None: the backend could not be reached, or dropped the request
    error: str | None
    at: float = field(default_factory=time.time)


class RoundRobin:
    """A webhook address in front of several backends: each POST (body and secret header) goes to the next
    backend in turn, to the one after it when that refuses the connection; the backend's status is passed
    back, 502 when none could take it (Telegram then sends the update again)."""

    def __init__(self, backends: dict[str, int]) -> None:
        self.backends = list(backends.items())  # name → port on 127.0.0.1
        self.forwards: list[Forward] = []
        # called with the backend's name after it took an update (200), before Telegram hears so
        self.on_taken: Callable[[str], Awaitable[None]] | None = None
        self._turn = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application()
        app.router.add_post(HOOK_PATH, self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        update_id = _update_id(body)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        if SECRET_HEADER in request.headers:
            headers[SECRET_HEADER] = request.headers[SECRET_HEADER]
        first, self._turn = self._turn, self._turn + 1
        for step in range(len(self.backends)):
            name, port = self.backends[(first + step) % len(self.backends)]
            try:
                async with self._session.post(f"http://127.0.0.1:{port}{HOOK_PATH}", data=body,
                                              headers=headers) as response:
                    await response.read()
                    self.forwards.append(Forward(update_id, name, response.status, None))
                if response.status == 200 and self.on_taken is not None:
                    await self.on_taken(name)
                return web.Response(status=response.status)
            except aiohttp.ClientConnectorError as error:  # refused: nobody listens there; try the next one
                self.forwards.append(Forward(update_id, name, None, f"refused: {error}"))
            except (aiohttp.ClientError, TimeoutError) as error:  # it took the request and died: Telegram retries
                self.forwards.append(Forward(update_id, name, None, f"failed: {error!r}"))
                return web.Response(status=502)
        return web.Response(status=502)

    def accepted_by(self, name: str) -> int:
        return sum(f.backend == name and f.status == 200 for f in self.forwards)

    def refused_by(self, name: str) -> int:
        return sum(f.backend == name and f.error is not None and f.error.startswith("refused") for f in self.forwards)


def _update_id(body: bytes) -> int | None:
    found = re.search(rb'"update_id"\s*:\s*(\d+)', body)
    return int(found.group(1)) if found else None


# --- the processes -------------------------------------------------------------------------------------


class LinliRun:
    """One `linli run` taking webhooks on its own port, on the shared PostgreSQL database."""

    def __init__(self, name: str, tg: TelegramApiServer, database_url: str, tmp_path: Path) -> None:
        self.name, self.tg, self.database_url = name, tg, database_url
        self.port = free_port()
        self.log = tmp_path / f"run-{name}.log"
        self.cwd = tmp_path
        self.process: subprocess.Popen[bytes] | None = None
        self.killed: tuple[float, float] | None = None  # (signal sent, process reaped), as time.time()

    def start(self, webhook: str) -> None:
        env = {**without_linli_settings(), "LINLI_DATABASE_URL": self.database_url,
               "LINLI_TELEGRAM_TOKEN": self.tg.token, "LINLI_TELEGRAM_API_URL": self.tg.base_url,
               "LINLI_SWEEP_SECONDS": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(LINLI), "run", "--webhook", webhook, "--listen", f"127.0.0.1:{self.port}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"linli run {self.name} exited by itself with {self.process.returncode}:\n"
                                 f"{self.log_tail()}")

    async def kill(self) -> None:
        """SIGKILL, and reap it at once (as its supervisor would): no handler runs, nothing is flushed."""
        process = self.process
        assert process is not None and process.poll() is None and self.killed is None
        sent = time.time()
        self.killed = (sent, sent)
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 30)
        self.killed = (sent, time.time())

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 40)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 30)

    def log_tail(self, lines: int = 40) -> str:
        """The log's last lines, without the frames of its tracebacks (the whole log stays in tmp_path)."""
        if not self.log.exists():
            return "(no log)"
        kept = [line for line in self.log.read_text(errors="replace").splitlines() if not line.startswith(" ")]
        return "\n".join(kept[-lines:])


# --- reading the world ---------------------------------------------------------------------------------


def orders_in(database_url: str) -> list[tuple[int, int, str, str | None]]:
    """(id, number, text, Telegram chat id) of every work order."""
    with psycopg.connect(to_psycopg_dsn(database_url), connect_timeout=10) as db:
        return db.execute("SELECT o.id, o.number, o.text, c.external_id FROM work_order o "
                          "LEFT JOIN chat c ON c.id = o.chat_id ORDER BY o.id").fetchall()


def unfinished(database_url: str) -> tuple[int, int]:
    """Updates in the inbox not handled yet, and outbox rows neither sent nor given up."""
    with psycopg.connect(to_psycopg_dsn(database_url), connect_timeout=10) as db:
        (waiting,) = db.execute("SELECT count(*) FROM inbox WHERE handled_at IS NULL").fetchone()  # type: ignore[misc]
        (unsent,) = db.execute(  # type: ignore[misc]
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND NOT given_up").fetchone()
        return int(waiting), int(unsent)


def inbox_rows(database_url: str) -> list[tuple[int, str, str, Any, Any]]:
    """(id, key, lane, received_at, handled_at) of every stored update, oldest first."""
    with psycopg.connect(to_psycopg_dsn(database_url), connect_timeout=10) as db:
        return db.execute("SELECT id, key, lane, received_at, handled_at FROM inbox ORDER BY id").fetchall()


def trail(reports: list[Report], group_index: int, tg: TelegramApiServer, proxy: RoundRobin,
          rows: list[tuple[int, str, str, Any, Any]]) -> str:
    """For a group's reports, in the order sent: its update, which process took it from the proxy, its inbox
    row, and when it was stored and handled, so an out-of-order run can be read from the test's output."""
    update_of = {MARKER.search(u["message"].get("text", "")).group(0): u["update_id"]  # type: ignore[union-attr]
                 for u in tg.updates if MARKER.search(u.get("message", {}).get("text", ""))}
    row_of = {int(key): (row_id, received, handled) for row_id, key, _, received, handled in rows if key.isdigit()}
    lines = []
    for report in sorted((r for r in reports if r.group_index == group_index), key=lambda r: r.seq):
        update_id = update_of.get(report.marker)
        taken = [f.backend for f in proxy.forwards if f.update_id == update_id and f.status == 200]
        row_id, received, handled = row_of.get(update_id or -1, (None, None, None))
        lines.append(f"  {report.marker} update {update_id} taken by {taken} inbox id {row_id} "
                     f"stored {received and received.time()} handled {handled and handled.time()}")
    return "\n".join(lines)



def markers_of(message: BotMessage) -> list[str]:
    return [match.group(0) for match in MARKER.finditer(message.text or "")]



async def eventually(probe: Callable[[], Awaitable[Any]], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Await `probe` until it returns something true; WaitTimeout after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what} not met within {timeout:.0f}s")
        await asyncio.sleep(every)


def judge(reports: list[Report], cards: list[BotMessage], orders: list[tuple[int, int, str, str | None]],
          forgiven: Callable[[BotMessage], bool], disorder: list[int] | None = None) -> list[str]:
    """What an operator would complain about: reports lost, filed twice, carded wrong, or handled out of
    order within their group."""
    expected = {report.marker: report for report in reports}
    problems = []
    stored: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
    for order_id, number, text, chat in orders:
        for match in MARKER.finditer(text):
            stored[match.group(0)].append((order_id, number, chat))
    lost = sorted(m for m in expected if not stored.get(m))
    doubled = {m: [(i, n) for i, n, _ in stored[m]] for m in sorted(expected) if len(stored.get(m, [])) > 1}
    misfiled = sorted(m for m in expected if any(chat != str(expected[m].group.id) for *_, chat in stored.get(m, [])))
    strays = sorted(set(stored) - set(expected))
    if lost:
        problems.append(f"LOST: {len(lost)} of {len(expected)} reports never became a work order: {lost}")
    if doubled:
        problems.append(f"DOUBLED: {len(doubled)} reports became more than one work order (id, #): {doubled}")
    if misfiled:
        problems.append(f"{len(misfiled)} work orders are filed in another chat: {misfiled}")
    if strays:
        problems.append(f"work orders for no report at all: {strays}")
    if len(orders) != len(expected):
        problems.append(f"{len(orders)} work orders in the database for {len(expected)} reports")
    # in each group, the orders were made in the order the reports were sent: ids and numbers increase
    for g in sorted({report.group_index for report in reports}):
        mine = sorted((r for r in reports if r.group_index == g and len(stored.get(r.marker, [])) == 1),
                      key=lambda r: r.seq)
        ids = [(r.marker, stored[r.marker][0][0], stored[r.marker][0][1]) for r in mine]
        if any(a[1] >= b[1] or a[2] >= b[2] for a, b in itertools.pairwise(ids)):
            problems.append(f"OUT OF ORDER in group {g}: (report, order id, #) in the order sent: {ids}")
            if disorder is not None:
                disorder.append(g)
    # the groups: one card per report, in the report's own group, every number once
    shown: dict[str, list[BotMessage]] = defaultdict(list)
    for card in cards:
        for marker in markers_of(card):
            shown[marker].append(card)
    uncarded = sorted(m for m in expected if not shown.get(m))
    twice = {m: len(shown[m]) for m in sorted(expected)
             if any(not forgiven(c) for c in sorted(shown.get(m, []), key=lambda c: c.message_id)[:-1])}
    elsewhere = sorted(m for m in expected if any(c.chat_id != expected[m].group.id for c in shown.get(m, [])))
    if uncarded:
        problems.append(f"LOST: {len(uncarded)} of {len(expected)} reports got no {CARD} card: {uncarded}")
    if twice:
        problems.append(f"DOUBLED: reports with more than one card (not just one in flight at the kill): {twice}")
    if elsewhere:
        problems.append(f"{len(elsewhere)} cards were posted in another group: {elsewhere}")
    if reused := reused_numbers(cards, markers_of):
        problems.append(f"order numbers shown on the cards of different reports: {reused}")
    return problems


# --- the test ------------------------------------------------------------------------------------------


async def test_two_processes_behind_a_load_balancer_handle_each_update_once_in_order(
        tg: TelegramApiServer, postgres_url: str, tmp_path: Path) -> None:
    """8 groups, 10 numbered /报事 each, sent round by round through a round-robin proxy to two `linli run`
    on one PostgreSQL; process A is SIGKILLed after about half of them. In the end every report is exactly
    one work order with exactly one card in its own group, and each group's orders follow the order sent."""
    groups, reports = [], []
    for g in range(GROUPS):
        residents = [tg.create_user(f"{g + 1}号楼住户{n}") for n in range(2)]
        group = tg.create_group(f"阳光小区{g + 1}号楼群", members=residents, bot_admin=True)
        groups.append(group)
        reports.extend(Report(g, s, group, residents[s % 2]) for s in range(PER_GROUP))
    rounds = sorted(reports, key=lambda r: (r.seq, r.group_index))  # one report a group, round after round
    first_half, second_half = rounds[: len(rounds) // 2], rounds[len(rounds) // 2:]

    a, b = (LinliRun(name, tg, postgres_url, tmp_path) for name in "AB")
    proxy = RoundRobin({"A": a.port, "B": b.port})
    problems: list[str] = []
    before_kill: dict[str, int] = {}
    settled_after = 0.0
    await proxy.start()
    try:
        def webhooks_set(count: int, process: LinliRun) -> Callable[[], bool]:
            def probe() -> bool:
                process.check_alive()
                return len(tg.calls_to("setWebhook")) >= count

            return probe

        a.start(proxy.url)
        await tg.wait_until(webhooks_set(1, a), timeout=START_WAIT, what="A setting its webhook")
        b.start(proxy.url)  # A made the schema and the shared webhook secret; B finds both
        await tg.wait_until(webhooks_set(2, b), timeout=START_WAIT, what="B setting its webhook")
        hooks = tg.calls_to("setWebhook")
        assert all(c.ok and c.params.get("url") == proxy.url for c in hooks), [(c.params, c.error) for c in hooks]
        assert hooks[0].params.get("secret_token") == hooks[1].params.get("secret_token"), "one secret for both"

        async def kill_a_midway(backend: str) -> None:
            """The worst moment: A has just stored an update and acknowledged it, and is about to handle it."""
            taken = proxy.accepted_by("A") + proxy.accepted_by("B")
            if backend == "A" and a.killed is None and taken >= len(first_half) // 2:
                before_kill.update(A=proxy.accepted_by("A"), B=proxy.accepted_by("B"))
                await a.kill()

        proxy.on_taken = kill_a_midway
        sending = time.monotonic()
        for report in first_half:
            tg.user_says(report.person, report.group, report.text)

        def a_killed() -> bool:
            if a.killed is None:
                a.check_alive()
            b.check_alive()
            return a.killed is not None

        await tg.wait_until(a_killed, timeout=30, what="A killed midway through the first half")
        for report in second_half:
            tg.user_says(report.person, report.group, report.text)

        async def settled() -> bool:
            """Nothing more can happen: every update acknowledged, handled, and what it said sent (or given
            up). Once so, no card can still come, nor a second one; a lost report need not wait out the bound."""
            b.check_alive()
            return not tg.pending_updates and await asyncio.to_thread(unfinished, postgres_url) == (0, 0)

        with contextlib.suppress(WaitTimeout):  # judged below, with the details
            await eventually(settled, timeout=SETTLE_WAIT, what="every update handled and every card sent")
        settled_after = time.monotonic() - sending
        b.check_alive()
        waiting, unsent = await asyncio.to_thread(unfinished, postgres_url)
        assert a.killed is not None
        killed_at, reaped_at = a.killed
        sent = accepted(tg)

        def forgiven(card: BotMessage) -> bool:
            at = sent.get((card.chat_id, card.message_id))
            return at is not None and killed_at - IN_FLIGHT <= at <= reaped_at + LAST_GASP

        orders = await asyncio.to_thread(orders_in, postgres_url)
        disorder: list[int] = []
        problems = judge(reports, cards_in(tg, groups), orders, forgiven, disorder)
        if waiting or unsent:
            problems.append(f"still {waiting} updates unhandled in the inbox and {unsent} outbox rows unsent")
        if problems:  # what else the bot said in the groups, and how each out-of-order group's updates went
            said = [(groups.index(g), m.text) for g in groups for m in tg.bot_messages(g)
                    if CARD not in (m.text or "") and "/绑定" not in (m.text or "")]  # not zero-config's hint
            if said:
                problems.append(f"other bot messages in the groups: {said}")
            rows = await asyncio.to_thread(inbox_rows, postgres_url)
            when = datetime.fromtimestamp
            killed = f"A killed at {when(killed_at).time()}, reaped at {when(reaped_at).time()}"
            problems.extend(f"group {g}'s updates ({killed}):\n{trail(reports, g, tg, proxy, rows)}" for g in disorder)
    finally:
        for process in (a, b):
            await process.stop()
        await proxy.stop()
    assert before_kill["A"] > 0 and before_kill["B"] > 0, f"the proxy did not use both processes: {before_kill}"
    assert proxy.refused_by("A") > 0, "after the kill the proxy never fell back from A to B"
    assert not problems, "\n".join([
        *problems, f"(updates taken before the kill: {before_kill}; forwards: {len(proxy.forwards)}; "
        f"settled {settled_after:.0f} s after the first report; whole logs in {tmp_path})",
        f"--- A (killed) ---\n{a.log_tail()}", f"--- B ---\n{b.log_tail()}"])
