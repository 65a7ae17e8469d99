"""`linli bench`'s Matrix figure: reports per second through the Matrix transport against a homeserver.

A resident (a plain matrix-nio client) sends `events` reports into a room as fast as the homeserver
takes them; the bot's transport syncs them, the core files each one, and the transport posts its card.
Each report is timed from the resident's send to the card arriving back at the resident's client.

It needs a homeserver that registers users through the shared-secret admin API (a local Synapse,
as the tests start one); the bot's rate limit is lifted with `override_ratelimit` as the README says.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx
from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, SyncResponse
from pydantic import SecretStr

from bot.matrix import MatrixTransport
from handlers.clock import SystemClock
from handlers.community import zero_config
from handlers.router import Linli
from storage.db import make_engine
from storage.migrate import upgrade

_NUMBER = re.compile(r"(\d+)号楼道灯不亮")


def register(homeserver: str, shared_secret: str, username: str, password: str, *, admin: bool = False,
             displayname: str | None = None) -> tuple[str, str]:
    """(user id, access token) of a new account, through Synapse's shared-secret registration."""
    url = homeserver.rstrip("/") + "/_synapse/admin/v1/register"
    nonce = httpx.get(url, timeout=30).raise_for_status().json()["nonce"]
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    mac.update("\x00".join([nonce, username, password, "admin" if admin else "notadmin"]).encode())
    body: dict[str, Any] = {"nonce": nonce, "username": username, "password": password, "admin": admin,
                            "mac": mac.hexdigest()}
    if displayname:
        body["displayname"] = displayname
    data = httpx.post(url, json=body, timeout=30).raise_for_status().json()
    return data["user_id"], data["access_token"]


def lift_rate_limit(homeserver: str, admin_token: str, user_id: str) -> None:
    url = f"{homeserver.rstrip('/')}/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit"
    httpx.post(url, json={"messages_per_second": 0, "burst_count": 0}, timeout=30,
               headers={"Authorization": f"Bearer {admin_token}"}).raise_for_status()


def bench_matrix(synapse_url: str, shared_secret: str, *, events: int = 200, database_url: str | None = None,
                 timeout: float = 120.0) -> dict[str, Any]:
    """{"events", "seconds", "per_s", "p50_ms", "p99_ms", "parked"} for `events` reports through the transport."""
    return asyncio.run(_bench(synapse_url, shared_secret, events, database_url, timeout))


async def _bench(homeserver: str, shared_secret: str, events: int, database_url: str | None,
                 timeout: float) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    bot_password = secrets.token_hex(8)
    bot_id, _ = await asyncio.to_thread(register, homeserver, shared_secret, f"linli_bench_{tag}", bot_password,
                                        displayname="邻里助手")
    _, admin_token = await asyncio.to_thread(register, homeserver, shared_secret, f"bench_admin_{tag}",
                                             secrets.token_hex(8), admin=True)
    resident_id, resident_token = await asyncio.to_thread(register, homeserver, shared_secret,
                                                          f"bench_resident_{tag}", secrets.token_hex(8))
    for user in (bot_id, resident_id):
        await asyncio.to_thread(lift_rate_limit, homeserver, admin_token, user)

    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        core = Linli(engine, zero_config(), SystemClock())
        settings = SimpleNamespace(matrix_homeserver=homeserver, matrix_user=bot_id, database_url=url,
                                   matrix_password=SecretStr(bot_password), matrix_token=None)
        transport = MatrixTransport(core, settings, media_dir=Path(tmp) / "media", poll_ms=1000, greet=False)
        resident = AsyncClient(homeserver, resident_id, config=AsyncClientConfig(
            max_limit_exceeded=0, max_timeouts=2, request_timeout=30, store_sync_tokens=False))
        resident.restore_login(resident_id, "", resident_token)
        try:
            await transport.start()
            return await _run(transport, resident, bot_id, events, timeout)
        finally:
            await transport.stop()
            await resident.close()
            engine.dispose()


async def _run(transport: MatrixTransport, resident: AsyncClient, bot_id: str, events: int,
               timeout: float) -> dict[str, Any]:
    created = await resident.room_create(name="bench", invite=[bot_id])
    assert isinstance(created, RoomCreateResponse), created
    room = created.room_id
    arrived: dict[int, float] = {}
    joined = asyncio.Event()

    async def watch() -> None:
        while True:
            response = await resident.sync(timeout=1000)
            if not isinstance(response, SyncResponse):
                await asyncio.sleep(0.1)
                continue
            info = response.rooms.join.get(room)
            for event in info.timeline.events if info else []:
                if event.sender != bot_id:
                    continue
                joined.set()
                found = _NUMBER.search(event.source.get("content", {}).get("body", ""))
                if found and "已登记" in event.source["content"]["body"]:
                    arrived.setdefault(int(found[1]), time.perf_counter())

    watcher = asyncio.create_task(watch())
    try:
        await resident.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "/绑定 LINLI"})
        await asyncio.wait_for(joined.wait(), 30)  # the bot is in and answering
        sent: dict[int, float] = {}
        start = time.perf_counter()
        for n in range(1, events + 1):
            sent[n] = time.perf_counter()
            await resident.room_send(room, "m.room.message",
                                     {"msgtype": "m.text", "body": f"/报事 {n}号楼道灯不亮"})
        deadline = time.monotonic() + timeout
        while len(arrived) < events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        seconds = (max(arrived.values()) if arrived else time.perf_counter()) - start
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    latencies = sorted((arrived[n] - sent[n]) * 1000 for n in arrived)
    return {
        "events": len(arrived),
        "seconds": round(seconds, 3),
        "per_s": round(len(arrived) / seconds, 1) if seconds > 0 else None,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1) if latencies else None,
        "parked": transport.parked,
    }
