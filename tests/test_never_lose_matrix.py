"""`linli run` on Matrix, killed with SIGKILL in the middle of bursts of reports: no report lost, none doubled.

Four zero-config rooms on the session's Synapse; residents file ~80 reports (`/报事 <marker> …`, a unique
marker each) in bursts; `linli run` is SIGKILLed at seeded-random points inside five of the bursts and
started again on the same SQLite file each time. In the end every marker must be in exactly one "已登记"
card in its own room, and in exactly one row of `work_order`.

A control run without kills checks the test itself: when it fails, the harness is wrong, not the product.
Every wait is a condition with a deadline; the seed is LINLI_KILL_SEED (printed in every failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import sqlite3
import string
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.environment import without_linli_settings
from tests.servers.synapse import SynapseServer

SEED = int(os.environ.get("LINLI_KILL_SEED", "20250611"))
ROOMS = 4
REPORTS = 80
BURSTS = 8
KILLS = 5
STEP_WAIT = 45.0  # seconds one expected step may take (a start, a card, an answer)
FINAL_WAIT = 120.0  # seconds for every report to have its card after the last start
STARTED = "matrix transport started"  # bot/service.py logs it once the transport has caught up
HELP = "邻里助手 · 用法"

PROBLEMS = ("楼道灯坏了，晚上很黑", "下水道堵了，污水往外冒", "垃圾三天没人清运", "门禁刷不开",
            "楼顶水箱漏水", "路灯不亮", "外墙瓷砖松动", "消防通道被电动车堵住", "绿化带杂草太高",
            "单元门闭门器坏了", "楼梯扶手松了", "小区广场噪音很大", "地下车库积水", "水管爆了在漏水",
            "快递柜屏幕坏了", "窨井盖松动有响声")


@dataclass(frozen=True)
class Report:
    marker: str
    room: int
    text: str


def plan(rng: random.Random) -> list[Report]:
    """REPORTS reports, spread evenly over the rooms in a seeded order, each with its own marker.

    Markers are letters only, so neither the place parser nor the privacy mask touches them, and of one
    length, so no marker is part of another."""
    rooms = [n % ROOMS for n in range(REPORTS)]
    rng.shuffle(rooms)
    markers: list[str] = []
    while len(markers) < REPORTS:
        if (marker := "Zq" + "".join(rng.choices(string.ascii_lowercase, k=5))) not in markers:
            markers.append(marker)
    return [Report(marker, room, f"/报事 {marker} {rng.randint(1, 30)}栋{rng.choice(PROBLEMS)}")
            for marker, room in zip(markers, rooms, strict=True)]


# --- the homeserver, spoken to over plain HTTP ------------------------------------------------------------
class Homeserver:
    def __init__(self, server: SynapseServer) -> None:
        self.server = server
        self.http = httpx.AsyncClient(base_url=server.url, timeout=30)

    async def user(self, prefix: str, name: str) -> tuple[str, str, str]:
        """A new account: (user id, access token, password)."""
        username, password = self.server.unique_name(prefix), secrets.token_hex(8)
        user_id, token = await asyncio.to_thread(self.server.register, username, password, False, name)
        return user_id, token, password

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def create_room(self, token: str, name: str, invite: list[str]) -> str:
        body = {"name": name, "preset": "private_chat", "invite": invite}
        return (await self.call("POST", "/_matrix/client/v3/createRoom", token, json=body))["room_id"]

    async def join(self, token: str, room: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/join/{quote(room)}", token, json={})

    async def say(self, token: str, room: str, text: str, txn: str) -> None:
        """One message; the transaction id makes a retried send the same event."""
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{quote(txn)}"
        await self.call("PUT", path, token, json={"msgtype": "m.text", "body": text})

    async def history(self, token: str, room: str) -> list[dict[str, Any]]:
        """Every event of the room, oldest first, paged back from now."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"dir": "b", "limit": 500}
        while True:
            page = await self.call("GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages", token, params=params)
            found.extend(page.get("chunk", []))
            if not page.get("chunk") or not page.get("end"):
                return list(reversed(found))
            params["from"] = page["end"]

    async def close(self) -> None:
        await self.http.aclose()


def is_card(event: dict[str, Any], bot_id: str) -> bool:
    """A message of the bot announcing a newly filed order (an edit of a card is not a new card)."""
    content = event.get("content") or {}
    return (event.get("sender") == bot_id and event.get("type") == "m.room.message"
            and (content.get("m.relates_to") or {}).get("rel_type") != "m.replace"
            and "已登记" in content.get("body", "") and "#" in content.get("body", ""))


class Watcher:
    """A member of every room who keeps syncing, so the test sees what the bot says as it says it."""

    def __init__(self, home: Homeserver, token: str, bot_id: str) -> None:
        self.home, self.token, self.bot_id = home, token, bot_id
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.changed = asyncio.Event()
        self.limited = False
        self._task = asyncio.create_task(self._sync())

    async def _sync(self) -> None:
        # a timeline long enough that nothing is left out between two syncs (the final check reads
        # the rooms' whole history anyway)
        sync_filter = json.dumps({"room": {"timeline": {"limit": 1000}, "state": {"lazy_load_members": True},
                                           "ephemeral": {"types": []}, "account_data": {"types": []}},
                                  "presence": {"types": []}, "account_data": {"types": []}})
        since: str | None = None
        while True:
            params = {"timeout": "1000", "filter": sync_filter} | ({"since": since} if since else {})
            try:
                data = await self.home.call("GET", "/_matrix/client/v3/sync", self.token, params=params)
            except (httpx.HTTPError, AssertionError):
                await asyncio.sleep(0.2)  # a pause before asking again; the deadlines bound every wait
                continue
            for room, info in data.get("rooms", {}).get("join", {}).items():
                timeline = info.get("timeline", {})
                self.events[room].extend(timeline.get("events", []))
                self.limited |= bool(timeline.get("limited")) and since is not None
            since = data["next_batch"]
            self.changed.set()

    async def until(self, found: Callable[[], Any], what: Callable[[], str] | str,
                    timeout: float = STEP_WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := found()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"not within {timeout:.0f}s: {what() if callable(what) else what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return value

    def bot_said(self, room: str, fragment: str) -> bool:
        return any(e.get("sender") == self.bot_id and fragment in (e.get("content") or {}).get("body", "")
                   for e in self.events[room])

    def carded(self, markers: list[Report], rooms: list[str]) -> int:
        """How many of these reports have at least one card in their room so far."""
        return sum(1 for report in markers
                   if any(is_card(e, self.bot_id) and report.marker in e["content"]["body"]
                          for e in self.events[rooms[report.room]]))

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def outbox_idle(db_path: Path) -> bool:
    """Nothing waits in the outbox to be sent or tried again (False while that cannot be read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)) as db:
            (pending,) = db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND NOT given_up").fetchone()
    except sqlite3.Error:
        return False
    return pending == 0


# --- `linli run`, started and killed --------------------------------------------------------------------
@dataclass
class Linli:
    tmp: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log_path = self.tmp / f"run-{len(self.logs)}.log"
        self.logs.append(log_path)
        linli = Path(sys.executable).with_name("linli")
        with log_path.open("wb") as log:
            self.process = subprocess.Popen([str(linli), "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.tmp, start_new_session=True)

    def started(self) -> bool:
        return STARTED in self.logs[-1].read_text(errors="replace")

    def gone(self) -> str | None:
        """Why the current process is no longer running, or None while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        return f"`linli run` exited with {self.process.returncode}:\n{self.tail()}"

    async def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would: no handler runs, nothing is flushed."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait, 30)

    async def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL when it does not stop. Never raises."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        try:
            return await asyncio.to_thread(process.wait, 40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 10)
            return None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                         for path in self.logs[-2:] if path.exists())


# --- the scenario ---------------------------------------------------------------------------------------
async def reports_through_kills(server: SynapseServer, tmp_path: Path, *, kills: int) -> None:
    rng = random.Random(SEED)
    reports = plan(rng)
    bursts = [reports[n * REPORTS // BURSTS:(n + 1) * REPORTS // BURSTS] for n in range(BURSTS)]
    killed_bursts = set(rng.sample(range(BURSTS), kills))
    seed = f"LINLI_KILL_SEED={SEED}"

    home = Homeserver(server)
    bot_id, _, bot_password = await home.user("linli", "邻里助手")
    bot_name = bot_id.removeprefix("@").split(":")[0]
    residents = [await home.user("resident", f"居民{n + 1}") for n in range(ROOMS)]
    watcher_id, watcher_token, _ = await home.user("watcher", "观察员")
    db_path = tmp_path / "run.db"
    env = {**without_linli_settings(), "LINLI_DATABASE_URL": f"sqlite:///{db_path}",
           "LINLI_MATRIX_HOMESERVER": server.url, "LINLI_MATRIX_USER": bot_name,
           "LINLI_MATRIX_PASSWORD": bot_password, "LINLI_SWEEP_SECONDS": "1"}
    linli = Linli(tmp_path, env)
    watcher = Watcher(home, watcher_token, bot_id)
    try:
        linli.start()
        await watcher.until(lambda: linli.started() or linli.gone(), "`linli run` starting")
        assert not linli.gone(), linli.gone()

        # zero-config: each resident makes a room and invites the bot, which joins and greets
        rooms = [await home.create_room(token, f"阳光小区{n + 1}号楼群", [bot_id, watcher_id])
                 for n, (_, token, _) in enumerate(residents)]
        for room in rooms:
            await home.join(watcher_token, room)
        for room in rooms:
            await watcher.until(lambda room=room: watcher.bot_said(room, "大家好"),
                                lambda: f"the bot greeting the room\n{linli.tail()}")

        async def send(burst: list[Report], sent: list[int]) -> None:
            for report in burst:
                await home.say(residents[report.room][1], rooms[report.room], report.text, report.marker)
                sent[0] += 1
                watcher.changed.set()  # the kill point may be this message

        kill_log: list[str] = []
        for number, burst in enumerate(bursts):
            sent = [0]
            sending = asyncio.create_task(send(burst, sent))
            try:
                if number in killed_bursts:
                    # kill once `after_sent` messages of the burst are out and `after_cards` of its cards seen:
                    # the bot is then between filing, answering and storing its sync token
                    after_sent = rng.randint(1, len(burst))
                    after_cards = rng.randint(0, after_sent - 1)
                    with contextlib.suppress(TimeoutError):  # a bot that stalls is killed all the same
                        await watcher.until(lambda burst=burst, sent=sent, s=after_sent, c=after_cards:
                                            sent[0] >= s and watcher.carded(burst, rooms) >= c,
                                            "the kill point", timeout=STEP_WAIT)
                    assert not linli.gone(), linli.gone()
                    await linli.kill()
                    kill_log.append(f"burst {number}: after {sent[0]} sent, "
                                    f"{watcher.carded(burst, rooms)} of its {len(burst)} carded")
                    linli.start()
                    await watcher.until(lambda: linli.started() or linli.gone(), "`linli run` starting again")
                    assert not linli.gone(), linli.gone()
                await sending
            finally:
                if not sending.done():
                    sending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sending

        # after the last start, one question per room: the bot answers a room in the order it was asked, so
        # once every room has its answer, a card still missing could only come from the outbox
        for n, room in enumerate(rooms):
            await home.say(residents[n][1], room, "/帮助", f"help-{n}")
        for room in rooms:
            await watcher.until(lambda room=room: watcher.bot_said(room, HELP) or linli.gone(),
                                lambda: f"the bot answering /帮助 ({seed})\n{linli.tail()}", timeout=FINAL_WAIT)
            assert not linli.gone(), linli.gone()
        waited = time.monotonic()
        try:
            await watcher.until(lambda: watcher.carded(reports, rooms) == REPORTS or outbox_idle(db_path)
                                or linli.gone(), "every report carded", timeout=FINAL_WAIT)
            ended = "every report carded" if watcher.carded(reports, rooms) == REPORTS else "the outbox empty"
        except TimeoutError:
            ended = "the deadline"
        ended += f" after {time.monotonic() - waited:.1f}s"
        assert not linli.gone(), linli.gone()
        code = await linli.stop()

        # what the residents saw, read back from the rooms' whole history
        cards: dict[str, list[tuple[int, str]]] = defaultdict(list)  # marker -> [(room, body)]
        for n, room in enumerate(rooms):
            for event in await home.history(watcher_token, room):
                if is_card(event, bot_id):
                    body = event["content"]["body"]
                    for report in reports:
                        if report.marker in body:
                            cards[report.marker].append((n, body))
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            filed = list(db.execute("SELECT number, text FROM work_order"))
        texts = [text for _, text in filed]
        rows = {report.marker: sum(report.marker in text for text in texts) for report in reports}
        lost = [(r.marker, [f"#{n}" for n, text in filed if r.marker in text]) for r in reports if not cards[r.marker]]
        doubled = {r.marker: len(cards[r.marker]) for r in reports if len(cards[r.marker]) > 1}
        elsewhere = [r.marker for r in reports if any(room != r.room for room, _ in cards[r.marker])]
        db_lost = [m for m, count in rows.items() if count == 0]
        db_doubled = {m: count for m, count in rows.items() if count > 1}
        numbers = [body.split("#", 1)[1].split()[0] for found in cards.values() for _, body in found]
        summary = (f"{seed}; kills: {kill_log}; the final wait ended with {ended}\n"
                   f"cards: {len(lost)} of {REPORTS} reports lost (with their orders) {lost}, "
                   f"{len(doubled)} doubled {doubled}, "
                   f"{len(elsewhere)} in another room {elsewhere}\n"
                   f"work_order: {len(texts)} rows for {REPORTS} reports; {len(db_lost)} missing {db_lost}, "
                   f"{len(db_doubled)} doubled {db_doubled}\n{linli.tail()}")
        assert not (lost or doubled or elsewhere or db_lost or db_doubled), summary
        assert len(texts) == REPORTS, summary
        assert len(numbers) == len(set(numbers)) == REPORTS, summary  # one "#N" per card, no number twice
        assert code == 0, f"`linli run` did not stop cleanly on SIGTERM ({code}):\n{linli.tail()}"
    finally:
        await linli.stop()
        await watcher.close()
        await home.close()


@pytest.mark.timeout(240)
async def test_kill_9_of_linli_run_on_matrix_loses_and_doubles_nothing(synapse_server: SynapseServer,
                                                                        tmp_path: Path) -> None:
    await reports_through_kills(synapse_server, tmp_path, kills=KILLS)


@pytest.mark.timeout(240)
async def test_the_same_reports_without_kills_are_each_filed_once(synapse_server: SynapseServer,
                                                                  tmp_path: Path) -> None:
    """The control: the same scenario with no kill passes, so a failure above is the product's."""
    await reports_through_kills(synapse_server, tmp_path, kills=0)
