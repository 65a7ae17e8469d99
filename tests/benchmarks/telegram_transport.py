"""`linli bench`'s Telegram figure: updates per second through the Telegram transport.

A resident posts `updates` reports (`/报事 N号楼道灯不亮`) into a group on the local Bot API server
that the tests use (tests/servers/telegram_api.py) as fast as it takes them; the transport polls them
with python-telegram-bot, the core files each one, and the transport posts its card. Each report is
timed from the resident's message to the bot's card; then 20 more, one at a time, time a quiet group.
The rate limiter is lifted (Telegram itself allows a bot about 20 messages a minute in one group):
this measures the transport, not Telegram.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import SecretStr

from bot.telegram import TelegramTransport
from handlers.clock import SystemClock
from handlers.community import zero_config
from handlers.router import Linli
from storage.db import make_engine
from storage.migrate import upgrade

IDLE_REPORTS = 20


def _server_class() -> Any:
    try:
        from tests.servers.telegram_api import TelegramApiServer
    except ImportError:  # `linli bench` run from elsewhere: the server lives in the checkout's tests/
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.servers.telegram_api import TelegramApiServer
    return TelegramApiServer


def bench_telegram(database_url: str | None = None, *, updates: int = 300, timeout: float = 120.0,
                   server: Any = None) -> dict[str, Any]:
    """{"updates", "seconds", "per_s", "p50_ms", "p99_ms", "idle_ms", "parked"} for `updates` reports sent
    in one burst through the transport (p50/p99: resident's message to card, queueing included), and
    `idle_ms`, the median of 20 reports sent one at a time; on `database_url` (default a temporary SQLite
    file) and `server` (default a new local Bot API server)."""
    own = server is None
    if own:
        server = _server_class()()
        server.start()
    try:
        server.reset(bot_username="linli_bench_bot")
        return asyncio.run(_bench(server, updates, database_url, timeout))
    finally:
        server.reset()
        if own:
            server.stop()


async def _bench(server: Any, updates: int, database_url: str | None, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        core = Linli(engine, zero_config(), SystemClock())
        settings = SimpleNamespace(telegram_token=SecretStr(server.token), telegram_api_url=server.base_url,
                                   database_url=url)
        transport = TelegramTransport(core, settings, poll_timeout=1, commands=False,
                                      rate_limits={"group_messages": 0, "overall_messages": 0})
        try:
            await transport.start()
            return await _run(server, transport, updates, timeout)
        finally:
            await transport.stop()
            engine.dispose()


async def _run(server: Any, transport: TelegramTransport, updates: int, timeout: float) -> dict[str, Any]:
    resident = server.create_user("居民")
    secretary = server.create_user("书记")
    group = server.create_group("bench", members=[resident], admins=[secretary], bot_admin=True)
    said = server.user_says(secretary, group, "/帮助")
    await server.wait_for_bot_message(group, "用法", after=said, timeout=30)  # warm: connected, jieba loaded

    # a burst: every report at once, as fast as the server takes them
    sent = {server.user_says(resident, group, f"/报事 {n}号楼道灯不亮")["message_id"]: time.time()
            for n in range(1, updates + 1)}
    start = min(sent.values())
    arrived = await _cards(server, sent, time.monotonic() + timeout)
    seconds = (max(arrived.values()) if arrived else time.time()) - start
    burst = sorted((arrived[m] - sent[m]) * 1000 for m in arrived)

    # one at a time: how long a resident waits for the card when the group is quiet
    alone: list[float] = []
    for n in range(1, IDLE_REPORTS + 1):
        one = {server.user_says(resident, group, f"/报事 {n}号单元门禁坏了")["message_id"]: time.time()}
        got = await _cards(server, one, time.monotonic() + 10)
        alone += [(got[m] - one[m]) * 1000 for m in got]
    return {
        "updates": len(arrived),
        "seconds": round(seconds, 3),
        "per_s": round(len(arrived) / seconds, 1) if seconds > 0 else None,
        "p50_ms": _at(burst, 0.5),
        "p99_ms": _at(burst, 0.99),
        "idle_ms": _at(sorted(alone), 0.5),
        "parked": transport.parked,
    }


async def _cards(server: Any, sent: dict[int, float], deadline: float) -> dict[int, float]:
    """When the card answering each sent report reached the server (it notes each call's arrival)."""
    arrived: dict[int, float] = {}
    while len(arrived) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.005 if len(sent) == 1 else 0.02)
        for call in server.calls_to("sendMessage"):
            result = call.result if call.ok and isinstance(call.result, dict) else {}
            answered = (result.get("reply_to_message") or {}).get("message_id")
            if answered in sent and "已登记" in result.get("text", ""):
                arrived.setdefault(answered, call.at)
    return arrived


def _at(ordered: list[float], share: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 1) if ordered else None
