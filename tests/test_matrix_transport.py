"""The Matrix transport against a real Synapse: residents, a secretary and a handler are nio clients.

Each test gets its own bot account, database and rooms on the session's homeserver; every wait is
bounded. Read a test like a chat: `await wang.say(room, "…")`, then `await zhang.expect(room, "已登记")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import signal
import struct
import subprocess
import sys
import time
import tomllib
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, RoomCreateResponse, RoomSendResponse, SyncResponse, UploadResponse
from pydantic import SecretStr
from sqlmodel import select

from bot.matrix import LoginFailed, MatrixTransport
from bot.matrix.media import MediaStore, TooLarge, find_copy
from bot.settings import Settings, SettingsError
from handlers import outbox
from handlers.clock import SystemClock
from handlers.community import CommunityConfig
from handlers.protocol import Kind, Outgoing, Text
from handlers.router import Linli
from scheduler.sweep import deliver_due
from storage.db import make_engine, session
from storage.migrate import upgrade
from storage.models import Identity, Order, Outbox, Photo
from tests.environment import without_linli_settings
from tests.servers.synapse import SynapseServer

EXAMPLE = Path(__file__).resolve().parent.parent / "linli.example.toml"
WAIT = 15.0  # seconds any single expectation may take


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes((90, 160, 220)) * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def community(matrix_ids: dict[str, str], **settings: Any) -> CommunityConfig:
    """The example neighbourhood, with Matrix accounts for the people named in `matrix_ids`."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for person in data["people"]:
        if person["name"] in matrix_ids:
            person["matrix"] = matrix_ids[person["name"]]
    data["community"].update(settings)
    return CommunityConfig.model_validate(data)


# --- people in the chat ---------------------------------------------------------------------------
class Member:
    """A person with a Matrix client that keeps syncing, so they can read what the bot says."""

    def __init__(self, name: str, client: AsyncClient, bot_id: str) -> None:
        self.name = name
        self.client = client
        self.user_id = client.user_id
        self.bot_id = bot_id
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.invites: set[str] = set()
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._sync())

    async def _sync(self) -> None:
        while True:
            try:
                response = await asyncio.wait_for(self.client.sync(timeout=500), 20)
            except (TimeoutError, OSError):
                continue
            if not isinstance(response, SyncResponse):
                await asyncio.sleep(0.2)
                continue
            for room_id, info in response.rooms.join.items():
                self.events[room_id].extend(event.source for event in info.timeline.events)
            self.invites.update(response.rooms.invite)
            self._new.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.close()

    # speaking
    async def send(self, room: str, content: dict[str, Any], kind: str = "m.room.message") -> str:
        response = await self.client.room_send(room, kind, content)
        assert isinstance(response, RoomSendResponse), response
        return response.event_id

    async def say(self, room: str, text: str, *, reply_to: str | None = None,
                  mention: Member | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if mention is not None:  # as Element writes a pill: the name in the body, a link in the HTML
            content["format"] = "org.matrix.custom.html"
            link = f'<a href="https://matrix.to/#/{mention.user_id}">{mention.name}</a>'
            content["formatted_body"] = text.replace(mention.name, link)
            content["m.mentions"] = {"user_ids": [mention.user_id]}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send(room, content)

    async def react(self, room: str, event_id: str, key: str) -> str:
        relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return await self.send(room, {"m.relates_to": relates}, "m.reaction")

    async def photo(self, room: str, data: bytes, *, reply_to: str | None = None) -> tuple[str, str]:
        uploaded, _ = await self.client.upload(io.BytesIO(data), content_type="image/png", filename="done.png",
                                               filesize=len(data))
        assert isinstance(uploaded, UploadResponse), uploaded
        content: dict[str, Any] = {"msgtype": "m.image", "body": "done.png", "url": uploaded.content_uri,
                                   "info": {"mimetype": "image/png", "size": len(data)}}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send(room, content), uploaded.content_uri

    async def join(self, room: str) -> None:
        await self.client.join(room)

    # reading
    async def wait_for(self, found: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while (value := found()) is None or value is False or value == []:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: not seen within {timeout}s: {what}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)
        return value

    def mark(self, room: str) -> int:
        return len(self.events[room])

    def bot_messages(self, room: str, after: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[room][after:] if e["sender"] == self.bot_id and e["type"] == "m.room.message"
                and (e["content"].get("m.relates_to") or {}).get("rel_type") != "m.replace"]

    def edits(self, room: str, event_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events[room] if e["sender"] == self.bot_id
                and (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
                and e["content"]["m.relates_to"]["event_id"] == event_id]

    async def expect(self, room: str, *fragments: str, after: int = 0, timeout: float = WAIT) -> dict[str, Any]:
        """The first message of the bot after `after` whose text holds every fragment."""
        def found() -> dict[str, Any] | None:
            return next((e for e in self.bot_messages(room, after)
                         if all(f in e["content"].get("body", "") for f in fragments)), None)

        return await self.wait_for(found, timeout, f"bot saying {fragments!r}; it said "
                                    f"{[e['content'].get('body') for e in self.bot_messages(room, after)]}")

    async def expect_edit(self, room: str, event_id: str, *fragments: str, timeout: float = WAIT) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.edits(room, event_id)
                         if all(f in e["content"]["m.new_content"]["body"] for f in fragments)), None)

        return await self.wait_for(found, timeout, f"an edit of {event_id} with {fragments!r}")


# --- one test's world -----------------------------------------------------------------------------
@dataclass
class Town:
    server: SynapseServer
    tmp: Path
    bot_name: str
    bot_password: str
    bot_id: str
    members: list[Member]
    transport: MatrixTransport | None = None
    core: Linli | None = None

    async def person(self, name: str) -> Member:
        username = self.server.unique_name("p")
        await asyncio.to_thread(self.server.register, username, secrets.token_hex(8), False, name)
        member = Member(name, await self.server.client(username), self.bot_id)
        self.members.append(member)
        return member

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": f"sqlite:///{self.tmp / 'linli.db'}",
                                  "matrix_homeserver": self.server.url, "matrix_user": self.bot_name,
                                  "matrix_password": SecretStr(self.bot_password)}
        return Settings(**(values | overrides))

    async def start(self, config: CommunityConfig | None = None, **options: Any) -> MatrixTransport:
        settings = self.settings()
        if self.core is None:
            engine = make_engine(settings.database_url)
            upgrade(engine)
            self.core = Linli(engine, config or community({}), SystemClock())
        options = {"media_dir": self.tmp / "media", "poll_ms": 1000} | options
        self.transport = MatrixTransport(self.core, settings, **options)
        await asyncio.wait_for(self.transport.start(), 60)  # a hang fails here, saying where
        return self.transport

    async def stop(self) -> None:
        if self.transport is not None:
            await asyncio.wait_for(self.transport.stop(), 90)
            self.transport = None

    async def room(self, owner: Member, *others: Member, name: str = "阳光小区3栋群",
                   encrypted: bool = False, creation: dict[str, Any] | None = None) -> str:
        """A room made by `owner` with `others` in it; the bot is invited and has said hello."""
        if creation is None:
            state = [{"type": "m.room.encryption", "state_key": "",
                      "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
            created = await owner.client.room_create(name=name, invite=[m.user_id for m in others] + [self.bot_id],
                                                     initial_state=state)
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id
        else:
            body = {"name": name, "invite": [m.user_id for m in others] + [self.bot_id],
                    "creation_content": creation}
            response = await asyncio.to_thread(self.server.api, "POST", "/_matrix/client/v3/createRoom",
                                               token=owner.client.access_token, json_body=body)
            assert response.status_code == 200, response.text
            room_id = response.json()["room_id"]
        for member in others:
            await member.join(room_id)
        await owner.wait_for(lambda: any(e["sender"] == self.bot_id for e in owner.events[room_id]),
                             what="the bot joining")
        return room_id

    def order(self, number: int) -> Order:
        assert self.core is not None
        with session(self.core.engine) as db:
            return db.exec(select(Order).where(Order.number == number)).one()


@contextlib.asynccontextmanager
async def town(server: SynapseServer, tmp: Path) -> AsyncIterator[Town]:
    bot_name, password = server.unique_name("linli"), secrets.token_hex(8)
    bot_id, _ = await asyncio.to_thread(server.register, bot_name, password, False, "邻里助手")
    world = Town(server, tmp, bot_name, password, bot_id, [])
    try:
        yield world
    finally:
        await world.stop()
        for member in world.members:
            await member.close()
        if world.core is not None:
            world.core.engine.dispose()


# --- the tests ------------------------------------------------------------------------------------
async def test_whole_loop_in_a_room(synapse_server: SynapseServer, tmp_path: Path) -> None:
    """点单 → 派单 → 办单 → 评单, with a reply, a photo and a reaction; the card is edited all along."""
    async with town(synapse_server, tmp_path) as t:
        zhang, liu, wang = await t.person("张书记"), await t.person("刘师傅"), await t.person("王阿姨")
        await t.start(community({"张书记": zhang.user_id, "刘师傅": liu.user_id}))
        room = await t.room(zhang, liu, wang)
        await zhang.expect(room, "/绑定")  # the greeting says how to bind

        await zhang.say(room, "/绑定 YG-A-3")
        await zhang.expect(room, "本群已绑定到 阳光小区3栋")

        await wang.say(room, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await zhang.expect(room, "已登记", "#1")
        assert "<b>🔵 #1" in card["content"]["formatted_body"]
        assert "1️⃣ 派单" in card["content"]["body"]  # the buttons, as options to react with
        card_id = card["event_id"]

        mark = zhang.mark(room)
        await zhang.say(room, "/派单 #1 物业维修组")
        told = await zhang.expect(room, "已派给 物业维修组", after=mark)
        assert liu.user_id in told["content"]["m.mentions"]["user_ids"]  # the handlers are pinged
        assert f"https://matrix.to/#/{liu.user_id}" in told["content"]["formatted_body"]
        await zhang.expect_edit(room, card_id, "状态：已派单")

        mark = zhang.mark(room)
        await liu.say(room, "/接单", reply_to=card_id)  # a reply to the card acts on its order
        await zhang.expect(room, "#1 刘师傅已接单", after=mark)
        await zhang.expect_edit(room, card_id, "状态：处理中")

        mark = zhang.mark(room)
        _, mxc = await liu.photo(room, tiny_png(), reply_to=card_id)
        rate = await zhang.expect(room, "#1 已办结（附照片）", after=mark)
        assert "1️⃣–5️⃣" in rate["content"]["body"]
        assert wang.user_id in rate["content"]["m.mentions"]["user_ids"]
        images = [e for e in zhang.bot_messages(room, mark) if e["content"].get("msgtype") == "m.image"]
        assert images and images[0]["content"]["url"] == mxc  # the bot shows the completion photo
        copy = find_copy(tmp_path / "media", mxc)
        assert copy is not None and copy.read_bytes() == tiny_png()

        mark = zhang.mark(room)
        await wang.react(room, card_id, "5️⃣")  # rating by reaction on the card
        await zhang.expect(room, "谢谢评价！#1 已关闭", after=mark)
        await zhang.expect_edit(room, card_id, "状态：已关闭")

        order = t.order(1)
        assert order.state == "closed"
        with session(t.core.engine) as db:  # type: ignore[union-attr]
            photo = db.exec(select(Photo).where(Photo.order_id == order.id)).one()
        assert photo.ref == mxc and photo.service == "matrix"


async def test_permissions_replies_and_reactions(synapse_server: SynapseServer, tmp_path: Path) -> None:
    async with town(synapse_server, tmp_path) as t:
        zhang, liu = await t.person("张书记"), await t.person("刘师傅")
        wang, li = await t.person("王阿姨"), await t.person("李姐")
        await t.start(community({"张书记": zhang.user_id, "刘师傅": liu.user_id}))
        room = await t.room(zhang, liu, wang, li)

        await wang.say(room, "/报事 5栋电梯困人了，快来人")
        card = await zhang.expect(room, "已登记", "#1")

        mark = zhang.mark(room)
        await wang.say(room, "/派单 #1 物业维修组")  # a resident may not dispatch
        await zhang.expect(room, "只有书记或网格长可以派单", after=mark)
        assert t.order(1).state == "reported"

        mark = zhang.mark(room)
        await li.say(room, "+1 我们也是", reply_to=card["event_id"])  # a reply follows that order
        await zhang.expect(room, "已把李姐加为 #1 的关注人", after=mark)

        await wang.say(room, "/报事 北门路灯不亮")
        second = await zhang.expect(room, "已登记", "#2")
        mark = zhang.mark(room)
        await li.react(room, second["event_id"], "👍")  # a thumbs-up on a card follows it too
        await zhang.expect(room, "已把李姐加为 #2 的关注人", after=mark)

        mark = zhang.mark(room)
        await li.react(room, second["event_id"], "3️⃣")  # the third option: 撤销, not hers to press
        refusal = await zhang.expect(room, "#2", after=mark)
        assert refusal["content"]["msgtype"] == "m.notice"  # an alert: a short answer to who pressed
        assert refusal["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == second["event_id"]
        assert li.user_id in refusal["content"]["m.mentions"]["user_ids"]

        mark = zhang.mark(room)
        await zhang.say(room, "/派单 #2 刘师傅", mention=liu)  # a pill names the handler
        await zhang.expect(room, "#2 已派给", "刘师傅", after=mark)
        assert t.order(2).assignee_id is not None


async def test_direct_messages_use_one_room(synapse_server: SynapseServer, tmp_path: Path) -> None:
    async with town(synapse_server, tmp_path) as t:
        zhang, wang = await t.person("张书记"), await t.person("王阿姨")
        transport = await t.start(community({"张书记": zhang.user_id}))
        room = await t.room(zhang, wang)
        await wang.say(room, "/帮助")  # she becomes known to the core
        await zhang.expect(room, "邻里助手 · 用法")
        with session(t.core.engine) as db:  # type: ignore[union-attr]
            wang_id = db.exec(select(Identity.person_id).where(Identity.external_id == wang.user_id)).one()

        follow_up = Outgoing(Kind.DIRECT, Text("direct.hint"), person_id=wang_id)
        await transport.deliver([follow_up])
        dm = await wang.wait_for(lambda: next(iter(wang.invites - {room}), None), what="an invitation to a DM")
        await wang.join(dm)
        await transport.deliver([follow_up])  # a second follow-up goes to the same room
        await wang.wait_for(lambda: len(wang.bot_messages(dm)) >= 2, what="two direct messages")
        assert wang.invites == {room, dm}
        assert all("请在小区群里反映问题" in e["content"]["body"] for e in wang.bot_messages(dm))

        mark = wang.mark(dm)
        await wang.say(dm, "你好")  # she writes back in the direct room: the core knows it is direct
        await wang.expect(dm, "请在小区群里反映问题", after=mark)
        with session(t.core.engine) as db:  # type: ignore[union-attr]
            identity = db.exec(select(Identity).where(Identity.external_id == wang.user_id)).one()
        assert identity.direct_chat == dm

        # a resident opens a direct room herself (Element marks the invitation is_direct)
        li = await t.person("李姐")
        created = await li.client.room_create(is_direct=True, invite=[t.bot_id])
        assert isinstance(created, RoomCreateResponse)
        await li.wait_for(lambda: any(e["sender"] == t.bot_id for e in li.events[created.room_id]) or None,
                          what="the bot joining her direct room")
        assert not li.bot_messages(created.room_id)  # no greeting in a direct room
        await li.say(created.room_id, "/我的")
        await li.expect(created.room_id, "您现在没有进行中的工单")


async def test_invitations_follow_the_community_rule(synapse_server: SynapseServer, tmp_path: Path) -> None:
    async with town(synapse_server, tmp_path) as t:
        zhang, stranger = await t.person("张书记"), await t.person("陌生人")
        await t.start(community({"张书记": zhang.user_id}, invite="dispatchers"))

        created = await stranger.client.room_create(name="随便一个群", invite=[t.bot_id])
        assert isinstance(created, RoomCreateResponse)
        said = await stranger.expect(created.room_id, "只有书记、网格长或社区管理员可以邀请我")
        assert said["content"]["msgtype"] == "m.notice"

        def left() -> bool:
            return any(e["type"] == "m.room.member" and e["state_key"] == t.bot_id
                       and e["content"]["membership"] == "leave" for e in stranger.events[created.room_id])

        await stranger.wait_for(left, what="the bot leaving")

        room = await t.room(zhang, name="阳光小区5栋群")  # the secretary may
        await zhang.expect(room, "大家好，我是邻里助手")
        await zhang.say(room, "/绑定 YG-A-5")
        await zhang.expect(room, "本群已绑定到 阳光小区5栋")


async def test_restart_neither_replays_nor_misses(synapse_server: SynapseServer, tmp_path: Path) -> None:
    async with town(synapse_server, tmp_path) as t:
        zhang, wang = await t.person("张书记"), await t.person("王阿姨")
        first = await t.start(community({"张书记": zhang.user_id}), timeline_limit=3, poll_ms=300)
        room = await t.room(zhang, wang)
        await wang.say(room, "/报事 3栋楼道灯坏了")
        await zhang.expect(room, "已登记", "#1")
        device = first.client.device_id  # type: ignore[union-attr]
        await t.stop()

        for n in range(6):  # more than one sync's timeline holds: the gap is fetched page by page
            await wang.say(room, f"/报事 {n + 2}号楼下水道堵了")
        second = await t.start(timeline_limit=3, poll_ms=300)
        assert second.client.device_id == device  # type: ignore[union-attr]  # the stored login is reused
        assert 3 <= second.backfilled < 10  # the gap, fetched back to the stored token and not beyond
        await zhang.wait_for(lambda: len([e for e in zhang.bot_messages(room) if "已登记" in e["content"]["body"]])
                             >= 7, what="seven cards")
        await second.wait_synced(1)
        cards = [e["content"]["body"] for e in zhang.bot_messages(room) if "已登记" in e["content"]["body"]]
        assert len(cards) == 7 and all(f"#{n} " in "\n".join(cards) for n in range(1, 8))
        assert len({int(c.split("#")[1].split()[0]) for c in cards}) == 7  # none handled twice
        await zhang.expect(room, "#7 是不是和 #6")  # the last thing it had to say: posted, and seen here

        await t.stop()  # and once more with nothing new: nothing is said again
        before = len(zhang.bot_messages(room))
        third = await t.start(poll_ms=300)
        await third.wait_synced(1)
        await zhang.say(room, "/帮助")  # answered after anything still due in this room
        await zhang.expect(room, "邻里助手 · 用法")
        assert len(zhang.bot_messages(room)) == before + 1


async def test_room_version_12_creators_are_admins(synapse_server: SynapseServer, tmp_path: Path) -> None:
    """v12 creators are not listed in power levels; the transport still sees them as admins (≥ 50)."""
    async with town(synapse_server, tmp_path) as t:
        owner, co_owner, resident = await t.person("物业经理"), await t.person("副主任"), await t.person("住户")
        await t.start()  # nobody is a configured dispatcher: chat admins act on their own room's orders
        room = await t.room(owner, co_owner, resident, creation={"additional_creators": [co_owner.user_id]})
        create = await owner.client.room_get_state_event(room, "m.room.create")
        assert create.content["room_version"] == "12"  # type: ignore[union-attr]

        await resident.say(room, "/绑定 YG-A-7")
        await owner.expect(room, "只有这个网格的书记或网格长可以绑定群")
        await co_owner.say(room, "/绑定 YG-A-5")  # an admin, so asked rather than refused: a v12 co-creator counts
        await owner.expect(room, "确认绑定")
        await resident.say(room, "/报事 5栋门口路灯坏了")
        await owner.expect(room, "#1")
        await owner.say(room, "/派单 #1 物业维修组")  # the creator dispatches the orders of their own room
        await owner.expect(room, "#1 已派给 物业维修组")


async def test_encrypted_rooms_are_told_plainly(synapse_server: SynapseServer, tmp_path: Path) -> None:
    async with town(synapse_server, tmp_path) as t:
        owner = await t.person("王阿姨")
        await t.start()
        room = await t.room(owner, encrypted=True)
        said = await owner.expect(room, "端到端加密")
        assert said["content"]["msgtype"] == "m.notice"
        await owner.send(room, {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn…", "device_id": "X",
                                "sender_key": "k", "session_id": "s"}, "m.room.encrypted")
        await t.transport.wait_synced(2)  # the sync that carried it has been handled, and one more
        assert len([e for e in owner.bot_messages(room) if "端到端加密" in e["content"]["body"]]) == 1  # once


async def test_rate_limits_are_honoured_then_parked(synapse_strict: SynapseServer, tmp_path: Path) -> None:
    """With Synapse's real limits (10 messages, then one per 5 s) the bot waits as told, parks the rest,
    and sends it all when the scheduler hands the parked rows back once the limit is lifted for its account
    (the README's override_ratelimit)."""
    async with town(synapse_strict, tmp_path) as t:
        zhang = await t.person("张书记")
        transport = await t.start(rate_wait=7.0, greet=False)
        created = await zhang.client.room_create(name="限速测试群", invite=[t.bot_id])
        assert isinstance(created, RoomCreateResponse)
        room = created.room_id
        await zhang.wait_for(lambda: any(e["sender"] == t.bot_id and e["type"] == "m.room.member"
                                         for e in zhang.events[room]), what="the bot joining")

        lines = [Outgoing(Kind.SEND, Text("order.unknown", {"number": n}), service="matrix", chat_id=room)
                 for n in range(1, 17)]
        started = time.monotonic()
        await transport.deliver(lines)
        took = time.monotonic() - started
        assert transport.rate_limited >= 1
        assert took < 20, f"deliver took {took:.1f}s"
        with session(t.core.engine) as db:  # type: ignore[union-attr]
            parked = len(db.exec(select(Outbox).where(Outbox.sent_at == None)).all())  # noqa: E711
        assert 0 < parked < 16
        sent_now = 16 - parked

        await zhang.wait_for(lambda: len(zhang.bot_messages(room)) >= sent_now, what="the first messages")
        await asyncio.to_thread(synapse_strict.override_ratelimit, t.bot_id)
        later = t.core.clock.now() + outbox.FIRST_PAUSE  # type: ignore[union-attr]
        assert await deliver_due(t.core.engine, "test", later, transport.deliver) == parked  # type: ignore[union-attr]
        assert transport.parked == parked  # nothing parked again
        await zhang.wait_for(lambda: len(zhang.bot_messages(room)) >= 16, what="every message")
        bodies = [e["content"]["body"] for e in zhang.bot_messages(room)]
        assert bodies == [f"没有找到 #{n} 号工单。" for n in range(1, 17)]  # all of them, in order


async def test_token_login_and_lost_connection(synapse_server: SynapseServer, tmp_path: Path) -> None:
    """LINLI_MATRIX_TOKEN logs in without a password; a homeserver out of reach at start, or lost later,
    is connected to again, and what was said meanwhile is handled."""
    async with town(synapse_server, tmp_path) as t:
        wang = await t.person("王阿姨")
        name = synapse_server.unique_name("tok")
        _, token = await asyncio.to_thread(synapse_server.register, name, "pw")
        proxy = await Proxy.start(synapse_server.port)
        try:
            proxy.cut()  # the homeserver is out of reach when the bot starts
            settings = t.settings(matrix_homeserver=f"http://127.0.0.1:{proxy.port}", matrix_password=None,
                                  matrix_user=name, matrix_token=SecretStr(token))
            engine = make_engine(settings.database_url)
            upgrade(engine)
            t.core = Linli(engine, community({}), SystemClock())
            t.transport = MatrixTransport(t.core, settings, media_dir=tmp_path / "media", poll_ms=500,
                                          request_timeout=3)
            await asyncio.wait_for(t.transport.start(), 5)  # start-up goes on: other transports need not wait
            proxy.resume()
            bot_id = f"@{name}:localhost"
            wang.bot_id = bot_id
            created = await wang.client.room_create(name="断线测试群", invite=[bot_id])
            assert isinstance(created, RoomCreateResponse)
            room = created.room_id
            await wang.expect(room, "大家好", timeout=20)
            assert t.transport.client.user_id == bot_id  # type: ignore[union-attr]

            proxy.cut()  # the connection is lost while it runs
            await wang.wait_for(lambda: t.transport.reconnects >= 2, what="two tries to reconnect")
            await wang.say(room, "/报事 2栋门禁坏了")  # said while the bot is cut off
            proxy.resume()
            await wang.expect(room, "已登记", "#1", timeout=20)
        finally:
            await proxy.close()


class Proxy:
    """A TCP relay to the homeserver that a test can cut and resume: a lost connection, for real."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, target: int) -> Proxy:
        proxy = cls(target)
        proxy._server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.open = False
        for writer in self._links:
            writer.close()
        self._links.clear()

    def resume(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


def test_bench_matrix_measures_reports_per_second(synapse_server: SynapseServer) -> None:
    from tests.benchmarks.matrix_transport import bench_matrix

    figures = bench_matrix(synapse_server.url, synapse_server.shared_secret, events=5, timeout=30)
    assert figures["events"] == 5 and figures["parked"] == 0
    assert figures["per_s"] > 1 and 0 < figures["p50_ms"] <= figures["p99_ms"]


async def test_linli_run_serves_matrix_rooms(synapse_server: SynapseServer, tmp_path: Path) -> None:
    """`linli run` with only LINLI_MATRIX_* set: zero-config, a room's creator dispatches, SIGTERM stops it."""
    async with town(synapse_server, tmp_path) as t:
        wang = await t.person("王阿姨")
        env = {**without_linli_settings(), "LINLI_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
               "LINLI_MATRIX_HOMESERVER": synapse_server.url,
               "LINLI_MATRIX_USER": t.bot_name, "LINLI_MATRIX_PASSWORD": t.bot_password, "LINLI_SWEEP_SECONDS": "1"}
        env.pop("LINLI_TELEGRAM_TOKEN", None)
        linli = Path(sys.executable).with_name("linli")
        with (tmp_path / "run.log").open("wb") as log:
            process = subprocess.Popen([str(linli), "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=tmp_path)
        try:
            created = await wang.client.room_create(name="阳光小区业主群", invite=[t.bot_id])
            assert isinstance(created, RoomCreateResponse)
            room = created.room_id
            await wang.expect(room, "大家好", timeout=30)
            await wang.say(room, "3栋2单元楼道灯坏了，晚上黑漆漆的")
            card = await wang.expect(room, "已登记", "#1")
            await wang.say(room, "/派单 #1 @王阿姨")  # the creator is the room's admin: dispatches its orders
            await wang.expect_edit(room, card["event_id"], "状态：已派单")
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
        assert code == 0, (tmp_path / "run.log").read_text()


async def test_photos_are_kept_only_within_the_size_limit(synapse_server: SynapseServer, tmp_path: Path) -> None:
    png = tiny_png()
    async with synapse_server.client_session(synapse_server.unique_name("uploader")) as uploader:
        uploaded, _ = await uploader.upload(io.BytesIO(png), content_type="image/png", filesize=len(png))
        assert isinstance(uploaded, UploadResponse)
        mxc, token = uploaded.content_uri, uploader.access_token
        small = MediaStore(synapse_server.url, tmp_path / "small", limit=len(png) - 1)
        big = MediaStore(synapse_server.url, tmp_path / "big", limit=len(png))
        try:
            with pytest.raises(TooLarge):  # the size announced in the event is not trusted alone
                await small.keep(mxc, token, size=10, mimetype="image/png")
            assert not any((tmp_path / "small").rglob("*.*"))  # nothing half-written is left
            kept = await big.keep(mxc, token, mimetype="image/png")
            assert kept.read_bytes() == png and kept.suffix == ".png"
            assert await big.keep(mxc, token) == kept  # a second event with the same photo: no download
        finally:
            await small.close()
            await big.close()


async def test_a_wrong_password_stops_start_up_with_one_line(synapse_server: SynapseServer, tmp_path: Path) -> None:
    async with town(synapse_server, tmp_path) as t:
        t.bot_password = "not-the-password"
        with pytest.raises(LoginFailed, match=r"login as .* failed"):
            await t.start()
        assert isinstance(LoginFailed("x"), SettingsError)  # `linli run` prints it and exits 2
