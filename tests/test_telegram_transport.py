"""The Telegram transport: the real python-telegram-bot stack against the local Bot API server.

Each test gets a fresh Telegram world (`tg`: a new bot token, no chats), its own database and a
transport that polls (or takes webhooks) like `linli run` does. People act through the server: `say`,
send a photo, press a button; the test reads what the bot posted. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from bot.settings import Settings
from bot.telegram import LoginFailed, TelegramTransport
from handlers import inbox
from handlers.clock import SystemClock
from handlers.community import CommunityConfig
from handlers.protocol import Button, Kind, Outgoing, Text
from handlers.router import Linli
from scheduler.sweep import deliver_due
from storage import repo
from storage.db import make_engine, session
from storage.migrate import upgrade
from storage.models import Event, Order, Outbox, Photo
from tests.environment import without_linli_settings
from tests.servers.telegram_api import BotMessage, Chat, TelegramApiServer, User

EXAMPLE = Path(__file__).resolve().parent.parent / "linli.example.toml"
WAIT = 8.0  # seconds any single expectation may take
NO_LIMITS = {"group_messages": 0, "overall_messages": 0}  # the limiter would space a test's burst over minutes
# PTB's own RetryAfter warns about a future type of its `retry_after` whenever a 429 is raised
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def community(ids: dict[str, User], **settings: Any) -> CommunityConfig:
    """The example neighbourhood, with Telegram accounts for the people in `ids`, without digests."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for person in data["people"]:
        if person["name"] in ids:
            person["telegram"] = str(ids[person["name"]].id)
    data["community"].update({"daily_digest": None, "weekly_ranking": None, "quiet_hours": None} | settings)
    return CommunityConfig.model_validate(data)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Town:
    tg: TelegramApiServer
    tmp: Path
    core: Linli | None = None
    transport: TelegramTransport | None = None

    def settings(self) -> Settings:
        return Settings(database_url=f"sqlite:///{self.tmp / 'linli.db'}", telegram_token=SecretStr(self.tg.token),
                        telegram_api_url=self.tg.base_url)

    def open_core(self, config: CommunityConfig | None = None) -> Linli:
        engine = make_engine(self.settings().database_url)
        upgrade(engine)
        self.core = Linli(engine, config or community({}), SystemClock())
        return self.core

    async def start(self, config: CommunityConfig | None = None, **options: Any) -> TelegramTransport:
        core = self.core or self.open_core(config)
        options = {"poll_timeout": 1, "rate_limits": NO_LIMITS} | options
        self.transport = TelegramTransport(core, self.settings(), **options)
        await asyncio.wait_for(self.transport.start(), WAIT)
        return self.transport

    async def stop(self) -> None:
        if self.transport is not None:
            await asyncio.wait_for(self.transport.stop(), WAIT)
            self.transport = None

    def order(self, number: int) -> Order:
        assert self.core is not None
        with session(self.core.engine) as db:
            return db.exec(select(Order).where(Order.number == number)).one()

    def orders(self) -> int:
        assert self.core is not None
        with session(self.core.engine) as db:
            return len(db.exec(select(Order.id)).all())

    def person_id(self, user: User) -> int:
        assert self.core is not None
        with session(self.core.engine) as db:
            identity = repo.identity_of(db, "telegram", str(user.id))
            assert identity is not None, f"{user.first_name} has not met the bot"
            return identity.person_id

    # --- reading the chat ------------------------------------------------------------------------
    async def expect(self, chat: Chat | User, *fragments: str, after: Any = None) -> BotMessage:
        """The first bot message in `chat` after `after` that contains every fragment."""
        found = await self.tg.wait_for_bot_message(
            chat, fragments[0], after=after, timeout=WAIT, where=lambda m: all(f in (m.text or "") for f in fragments))
        return found

    async def expect_edit(self, card: BotMessage, fragment: str) -> BotMessage:
        return await self.tg.wait_for_edit(card, fragment, timeout=WAIT)

    async def alert(self, query_id: str) -> str | None:
        answer = await self.tg.wait_for_callback_answer(query_id, timeout=WAIT)
        assert answer.show_alert == bool(answer.text)
        return answer.text

    async def settle(self) -> None:
        """Let the transport finish what it has received (a marker message round-trips)."""
        assert self.transport is not None
        transport = self.transport
        await self.tg.wait_until(lambda: not self.tg.pending_updates and transport.received == transport.finished,
                                 timeout=WAIT, what="every update fetched and done with")
        await asyncio.wait_for(transport.inbound.idle(), WAIT)
        await asyncio.wait_for(transport.outbound.idle(), WAIT)  # and everything it had to say posted


@contextlib.asynccontextmanager
async def town(tg: TelegramApiServer, tmp: Path) -> AsyncIterator[Town]:
    world = Town(tg, tmp)
    try:
        yield world
    finally:
        await world.stop()
        if world.core is not None:
            world.core.engine.dispose()


def people(tg: TelegramApiServer) -> tuple[User, User, User, User]:
    return (tg.create_user("张书记", username="zhang_shuji"), tg.create_user("刘师傅", username="liu_sf"),
            tg.create_user("王阿姨"), tg.create_user("李姐"))


def card_photo(message: BotMessage) -> str:
    assert message.photo, f"no photo on {message.text!r}"
    return message.photo[-1]["file_id"]


# --- the whole loop ---------------------------------------------------------------------------------
async def test_whole_loop_in_a_group(tg: TelegramApiServer, tmp_path: Path) -> None:
    """点单 → 派单 → 办单 → 评单 with a command, a button, a photo and a star; the card is edited in place."""
    zhang, liu, wang, li = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang, "刘师傅": liu}))
        group = tg.create_group("阳光小区3栋群", members=[zhang, liu, wang, li], bot_admin=True)

        said = tg.user_says(zhang, group, "/绑定 YG-A-3")
        await t.expect(group, "本群已绑定到 阳光小区3栋", after=said)

        said = tg.user_says(wang, group, "3栋2单元楼道灯又坏了 晚上黑漆漆的 老人下楼怕摔")
        card = await t.expect(group, "已登记", "#1", "3栋2单元", after=said)
        assert card.reply_to_message_id == said["message_id"]
        assert card.button_texts == ["派单", "认领", "撤销"]
        assert any(kind == "bold" and text.startswith("🔵 #1 ") for kind, text in card.entity_texts())

        said = tg.user_says(li, group, "+1 我们4楼也不亮")
        await t.expect(group, "已把李姐加为 #1 的关注人", after=said)

        said = tg.user_says(zhang, group, "/派单 #1 物业维修组")
        told = await t.expect(group, "#1 已派给 物业维修组", after=said)
        linked = [e for e in told.entities if e["type"] == "text_mention"]
        assert [e["user"]["id"] for e in linked] == [liu.id]  # 刘师傅 is notified; 陈师傅 has no Telegram
        card = await t.expect_edit(card, "状态：已派单 → 物业维修组")
        assert card.button_texts == ["接单", "退单"]

        press = tg.user_presses(liu, card, "接单")
        assert await t.alert(press) is None  # answered, silently
        await t.expect(group, "#1 刘师傅已接单", after=card)
        card = await t.expect_edit(card, "状态：处理中")
        assert card.button_texts == ["办结", "退单"]

        photo = tg.user_sends_photo(liu, group, caption="换好了", reply_to=card)
        rate = await t.expect(group, "#1 已办结（附照片）", "请为这次服务打分", after=photo)
        assert card_photo(rate) == photo["photo"][-1]["file_id"]  # the handler's photo, shown by file_id
        assert rate.button_texts == ["★1", "★2", "★3", "★4", "★5"]
        assert {e["user"]["id"] for e in rate.entities if e["type"] == "text_mention"} == {wang.id, li.id}
        card = await t.expect_edit(card, "已办结待评价")

        press = tg.user_presses(wang, rate, "★5")
        assert await t.alert(press) is None
        await t.expect(group, "谢谢评价！#1 已关闭。", after=rate)
        card = await t.expect_edit(card, "状态：已关闭")
        assert card.buttons == []  # a closed order has nothing left to press
        assert len(tg.bot_messages(group)) == len({m.message_id for m in tg.bot_messages(group)})

        order = t.order(1)
        assert order.state == "closed"
        assert t.core is not None
        with session(t.core.engine) as db:
            photos = db.exec(select(Photo).where(Photo.order_id == order.id)).all()
            actions = [e.action for e in db.exec(select(Event).order_by(Event.id))]
        assert [(p.service, p.ref, p.purpose) for p in photos] == [
            ("telegram", photo["photo"][-1]["file_id"], "completion")]
        assert actions == ["report", "follow", "assign", "accept", "done", "rate"]
        assert not [c for c in tg.calls if not c.ok], [(c.method, c.error) for c in tg.calls if not c.ok]


# --- buttons and who may press them -----------------------------------------------------------------
async def test_every_button_checks_who_presses_it(tg: TelegramApiServer, tmp_path: Path) -> None:
    """A press by someone without the right gets a short alert and changes nothing; the right person's works."""
    zhang, liu, wang, li = people(tg)
    chen = tg.create_user("陈师傅")
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang, "刘师傅": liu, "陈师傅": chen}))
        group = tg.create_group("阳光小区业主群", members=[zhang, liu, wang, li, chen], bot_admin=True)
        said = tg.user_says(wang, group, "/报事 3栋2单元楼道灯坏了")
        card = await t.expect(group, "已登记", "#1", after=said)
        await t.settle()

        async def refused(user: User, message: BotMessage, label: str, text: str) -> None:
            before = len(tg.bot_messages(group)), [len(m.history) for m in tg.bot_messages(group)]
            state = t.order(1).state
            answer = await t.alert(tg.user_presses(user, message, label))
            assert answer is not None and text in answer, answer
            await t.settle()
            assert (len(tg.bot_messages(group)), [len(m.history) for m in tg.bot_messages(group)]) == before
            assert t.order(1).state == state

        await refused(li, card, "派单", "只有书记或网格长可以派单")
        await refused(li, card, "认领", "只有志愿者和处理人员可以认领")
        await refused(li, card, "撤销", "只有报事人或书记、网格长可以撤销 #1")

        press = tg.user_presses(zhang, card, "派单")
        assert await t.alert(press) is None
        pick = await t.expect(group, "#1 派给哪个队伍？", after=card)
        assert pick.reply_to_message_id == card.message_id  # the answer to a press replies to the pressed card
        assert "物业维修组" in pick.button_texts
        await refused(li, pick, "物业维修组", "只有书记或网格长可以派单")
        tg.user_presses(zhang, pick, "物业维修组")
        await t.expect(group, "#1 已派给 物业维修组", after=pick)
        card = await t.expect_edit(card, "已派单")

        await refused(wang, card, "接单", "#1 没有派给您")
        tg.user_presses(chen, card, "退单")
        reasons = await t.expect(group, "#1 退单原因是？", after=card)
        await refused(wang, reasons, "进不了门", "#1 不在您手上")
        tg.user_presses(chen, reasons, "进不了门")
        await t.expect(group, "#1 被陈师傅退回（进不了门）", after=reasons)
        card = await t.expect_edit(card, "状态：待派单")

        said = tg.user_says(zhang, group, "/派单 #1 刘师傅")  # a person by name
        await t.expect(group, "#1 已派给 物业维修组（刘师傅）", after=said)
        tg.user_presses(liu, card, "接单")
        card = await t.expect_edit(card, "处理中")
        await t.expect(group, "#1 刘师傅已接单", after=said)
        await refused(chen, card, "办结", "#1 不在您手上，不能办结")
        press = tg.user_presses(liu, card, "办结")
        await t.expect(group, "办结 #1 需要一张现场照片", after=card)  # the assignee is told how
        assert await t.alert(press) is None

        photo = tg.user_sends_photo(liu, group, reply_to=card)
        rate = await t.expect(group, "#1 已办结", after=photo)
        await refused(li, rate, "★1", "#1 不是您报的事项")
        tg.user_presses(wang, rate, "★4")
        await t.expect(group, "谢谢评价", after=rate)
        await refused(wang, rate, "★5", "")
        assert t.order(1).state == "closed"

        # Buttons the cards don't carry today still reach the core: "me too" and "view".
        order_id = t.order(1).id
        assert t.transport is not None and t.core is not None
        said = tg.user_says(wang, group, "/报事 7号楼门口垃圾堆了好几天")
        await t.expect(group, "已登记", "#2", after=said)
        await t.transport.deliver([Outgoing(
            Kind.SEND, Text("follow.added", {"number": 2, "name": "?"}), service="telegram", chat_id=str(group.id),
            buttons=((Button(Text("btn.follow"), f"fol:{t.order(2).id}"), Button(Text("btn.status"), f"st:{order_id}"),
                      Button(Text("btn.status"), "st:x")),))])
        offer = tg.last_bot_message(group)
        assert offer is not None and offer.button_texts == ["我也是", "查看", "查看"]
        tg.user_presses(li, offer, f"fol:{t.order(2).id}")
        await t.expect(group, "已把李姐加为 #2 的关注人", after=offer)
        tg.user_presses(li, offer, f"st:{order_id}")
        await t.expect(group, "#1", "已关闭", after=offer)
        assert await t.alert(tg.user_presses(li, offer, "st:x")) == "这个按钮已失效。"


async def test_unsure_reports_ask_first_and_only_the_sender_answers(tg: TelegramApiServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport's side of a doubtful report. Which messages the model doubts is the model's business
    (tests/test_triage.py): here the verdict for one message is made doubtful, so the test never skips."""
    from dataclasses import replace as with_

    from handlers import intake

    zhang, _, wang, li = people(tg)
    config = community({"张书记": zhang})
    doubtful = "楼下好像有点味道"
    judged = intake.judge
    monkeypatch.setattr(intake, "judge", lambda turn, text, *, explicit: with_(
        judged(turn, text, explicit=explicit), is_request=True, action="ask") if text == doubtful
        else judged(turn, text, explicit=explicit))
    async with town(tg, tmp_path) as t:
        await t.start(config)
        group = tg.create_group("阳光小区业主群", members=[zhang, wang, li], bot_admin=True)
        said = tg.user_says(wang, group, doubtful)
        asked = await t.expect(group, "这条要登记为工单吗？", after=said)
        assert asked.button_texts == ["要登记", "不用"]
        assert await t.alert(tg.user_presses(li, asked, "要登记")) == "这是问发消息的人的，谢谢。"
        tg.user_presses(wang, asked, "要登记")
        await t.expect(group, "已登记", after=asked)
        assert await t.alert(tg.user_presses(wang, asked, "不用")) == "这个问题已经处理过了。"


# --- direct messages --------------------------------------------------------------------------------
async def test_direct_messages_and_the_fallback_mention(tg: TelegramApiServer, tmp_path: Path) -> None:
    """A rating prompt by direct message: straight to who started the bot; for who hasn't, the group asks
    them to, without the message itself, and it goes once they do."""
    zhang, liu, wang, li = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang, "刘师傅": liu}))
        group = tg.create_group("阳光小区业主群", members=[zhang, liu, wang, li], bot_admin=True)
        said = tg.user_says(wang, group, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await t.expect(group, "已登记", after=said)
        said = tg.user_says(li, group, "+1")
        await t.expect(group, "关注人", after=said)
        said = tg.user_says(zhang, group, "/派单 #1 @刘师傅")
        await t.expect(group, "已派给", after=said)
        tg.user_presses(liu, card, "接单")
        card = await t.expect_edit(card, "处理中")
        tg.user_sends_photo(liu, group, reply_to=card)
        card = await t.expect_edit(card, "已办结待评价")

        start = tg.user_starts_bot(wang)  # /start in private: the help, and the bot knows the private chat
        await t.expect(wang, "邻里助手 · 用法", after=start)

        assert t.transport is not None
        order_id = t.order(1).id

        def prompt(user: User) -> Outgoing:
            stars = (tuple(Button(Text("btn.star", {"score": s}), f"rt:{order_id}:{s}") for s in range(1, 6)),)
            return Outgoing(Kind.DIRECT, Text("done.rate", {"number": 1, "names": []}), person_id=t.person_id(user),
                            order_id=order_id, buttons=stars)

        mark = tg.last_bot_message(group)
        await t.transport.deliver([prompt(wang), prompt(li)])
        private = await t.expect(wang, "#1 已办结", "请为这次服务打分")
        assert private.button_texts == ["★1", "★2", "★3", "★4", "★5"]
        ask = await t.expect(group, "@李姐", "#1", "私信", after=mark)
        assert "请为这次服务打分" not in (ask.text or "")  # the group hears that there is a message, not what
        assert [e["user"]["id"] for e in ask.entities if e["type"] == "text_mention"] == [li.id]
        assert ask.buttons[-1]["url"] == f"https://t.me/{tg.bot.username}?start=dm"
        await t.transport.deliver([prompt(li)])  # a second one for her waits too, without asking again
        await t.settle()
        assert len([m for m in tg.bot_messages(group) if "私信" in (m.text or "")]) == 1

        tg.user_presses(wang, private, "★5")
        await t.expect(wang, "谢谢评价！#1 已关闭。", after=private)
        await t.expect_edit(card, "状态：已关闭")  # the group's card follows a rating given in private

        start = tg.user_starts_bot(li)
        held = await t.expect(li, "#1 已办结", after=start)
        await tg.wait_until(lambda: len([m for m in tg.bot_messages(li) if "#1 已办结" in (m.text or "")]) == 2,
                            timeout=WAIT, what="both held messages")
        tg.user_presses(li, held, "★4")
        await t.expect(li, "谢谢评价", after=held)

        # Blocked by the person later: held again, nothing lost.
        tg.user_blocks_bot(wang)
        await t.transport.deliver([Outgoing(Kind.DIRECT, Text("help"), person_id=t.person_id(wang))])
        assert t.transport.state.get(f"dm:{wang.id}")  # type: ignore[union-attr]


async def test_a_private_matters_details_go_by_direct_message(tg: TelegramApiServer, tmp_path: Path) -> None:
    """私事: the group's card shows that the order exists; the details reach the reporter in private, at once
    if they started the bot, else once they do (the group is asked to tell them, without the details)."""
    zhang, _, wang, li = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang}))
        group = tg.create_group("阳光小区业主群", members=[zhang, wang, li], bot_admin=True)
        said = tg.user_says(zhang, group, "/绑定 YG-A")
        await t.expect(group, "本群已绑定到", after=said)
        tg.user_starts_bot(wang)
        await t.expect(wang, "用法")

        said = tg.user_says(wang, group, "/报事 3栋2单元502室家里马桶堵了，电话13812345678")
        card = await t.expect(group, "#1", "私事，详情已私信报事人", after=said)
        assert "马桶" not in (card.text or "") and "13812345678" not in (card.text or "")
        await t.expect(wang, "#1", "马桶", "3栋2单元502")  # the details, to the reporter alone

        said = tg.user_says(li, group, "/报事 我家厨房水管漏水了，麻烦物业来修一下")
        await t.expect(group, "#2", "私事，详情已私信报事人", after=said)
        ask = await t.expect(group, "@李姐", "#2", "私信", after=said)
        assert "水管" not in (ask.text or "")
        start = tg.user_starts_bot(li)
        await t.expect(li, "#2", "水管", after=start)


# --- privacy mode and commands ----------------------------------------------------------------------
async def test_commands_privacy_mode_and_the_bots_name(tg: TelegramApiServer, tmp_path: Path) -> None:
    """In a group where privacy mode hides ordinary messages the bot says so once, and in /帮助; Chinese
    commands arrive as plain text and "/report@bot" carries its name: all reach the core."""
    zhang, _, wang, li = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang}))
        assert [c["command"] for c in tg.commands(language_code="zh")][:3] == ["report", "assign", "accept"]
        assert tg.commands(language_code="zh")[0]["description"].startswith("报事")
        assert tg.commands(language_code="en")[0]["description"].startswith("Report")
        assert tg.commands() == tg.commands(language_code="zh")  # the community speaks Chinese

        ann = tg.create_user("Ann", language_code="en")
        group = tg.create_group("阳光小区业主群", members=[zhang, wang, li, ann], admins=[zhang])
        said = tg.user_says(wang, group, "/报事 5号楼门口的路灯不亮")
        await t.expect(group, "已登记", "#1", after=said)
        notice = await t.expect(group, "我现在只能看到命令", "@BotFather", after=said)

        said = tg.user_says(ann, group, "/report@linli_test_bot The lift in block 5 is stuck again")
        await t.expect(group, "已登记", "#2", after=said)  # the card speaks the group's language
        said = tg.user_says(ann, group, "/help@linli_test_bot")
        await t.expect(group, "邻里助手 · 用法", after=said)  # a Latin command name is no language choice
        said = tg.user_says(ann, group, "/lang@linli_test_bot en")
        said = tg.user_says(ann, group, "/help@linli_test_bot")
        await t.expect(group, "Linli · how to use", after=said)  # her choice
        said = tg.user_says(li, group, "/status@linli_test_bot #2")  # tapped in the menu by a Chinese speaker
        await t.expect(group, "#2", "状态：待派单", after=said)

        said = tg.user_says(wang, group, f"@{tg.bot.username} 3栋电梯坏了")
        await t.expect(group, "已登记", "#3", after=said)
        assert t.order(3).text == "3栋电梯坏了"

        said = tg.user_says(li, group, "/帮助")
        help_text = await t.expect(group, "邻里助手 · 用法", "设为群管理员", after=said)
        assert help_text.reply_to_message_id == said["message_id"]

        said = tg.user_says(wang, group, "7号楼门口垃圾堆了好几天，臭死了")  # privacy mode: never reaches the bot
        await t.settle()
        assert t.orders() == 3
        assert len([m for m in tg.bot_messages(group) if "我现在只能看到命令" in (m.text or "")]) == 1
        assert notice.message_id > 0

        tg.set_bot_status(group, "administrator", by=zhang)  # now it reads everything
        await t.settle()
        said = tg.user_says(wang, group, "7号楼门口垃圾堆了好几天，臭死了")
        await t.expect(group, "已登记", "#4", after=said)
        said = tg.user_says(li, group, "/帮助")
        help_text = await t.expect(group, "邻里助手 · 用法", after=said)
        assert "设为群管理员" not in (help_text.text or "")

        said = tg.user_says(zhang, group, "/绑定 YG-A")  # a group admin is a dispatcher in this community
        await t.expect(group, "本群已绑定到 阳光小区", after=said)


async def test_admins_dispatch_and_usernames_name_people(tg: TelegramApiServer, tmp_path: Path) -> None:
    """Zero-config: the group's admins dispatch; "@username" names someone the bot has met."""
    owner = tg.create_user("物业小张", username="wy_zhang")
    helper, resident = tg.create_user("Bob", username="bob_fix"), tg.create_user("Ann", language_code="en")
    async with town(tg, tmp_path) as t:
        t.open_core(CommunityConfig())
        await t.start()
        group = tg.create_group("Sunny Court", members=[helper, resident], creator=owner, bot_admin=True)
        said = tg.user_says(resident, group, "/report the lift in block 5 is stuck again")
        await t.expect(group, "#1", after=said)
        said = tg.user_says(resident, group, "/assign #1 @bob_fix")
        await t.expect(group, "只有书记或网格长可以派单", after=said)  # the community's language
        said = tg.user_says(helper, group, "on my way")
        await t.settle()
        await t.stop()  # a restart: the @username is found in what the transport kept, not in memory
        await t.start()
        said = tg.user_says(owner, group, "/派单 #1 @bob_fix")
        await t.expect(group, "#1 已派给", "Bob", after=said)
        assert t.order(1).assignee_id == t.person_id(helper)


async def _added_and_greeted(tg: TelegramApiServer, t: Town) -> tuple[Any, Chat]:
    """张书记 adds the bot to a new group and it says hello: the database, and the group."""
    zhang, _, wang, _ = people(tg)
    await t.start(community({"张书记": zhang}, invite="dispatchers"))
    welcome = tg.create_group("阳光小区业主群", members=[wang], creator=zhang, bot_member=False)
    tg.set_bot_status(welcome, "member", by=zhang)
    await t.expect(welcome, "大家好，我是邻里助手")
    assert t.core is not None
    return t.core.engine, welcome


async def test_a_greeting_said_is_marked_at_once_so_a_restart_does_not_greet_again(
        tg: TelegramApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's being added is handled by the transport itself (no order, no outbox): its update is marked
    handled right after the greeting, not with the next flush of quiet updates a moment later."""
    import bot.inbox

    monkeypatch.setattr(bot.inbox, "FLUSH_EVERY", 3600.0)  # only the transport itself can mark it now
    async with town(tg, tmp_path) as t:
        engine, _ = await _added_and_greeted(tg, t)
        await tg.wait_until(lambda: not inbox.waiting(engine, "telegram"), timeout=WAIT,
                            what="the membership update marked handled")


async def test_a_batch_tried_again_after_the_database_was_away_does_not_greet_again(
        tg: TelegramApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away right after the greeting: the update's batch is tried again from memory,
    and the group still hears one greeting."""
    from sqlalchemy.exc import OperationalError

    import bot.inbox

    monkeypatch.setattr(bot.inbox, "AWAY_PAUSES", (0.05, 0.05))
    marked, away = inbox.handled, []

    def away_once(engine, ids, now):  # type: ignore[no-untyped-def]
        if not away:
            away.append(ids)
            raise OperationalError("UPDATE inbox …", {}, Exception("server closed the connection unexpectedly"))
        return marked(engine, ids, now)

    monkeypatch.setattr(inbox, "handled", away_once)
    async with town(tg, tmp_path) as t:
        engine, welcome = await _added_and_greeted(tg, t)
        await tg.wait_until(lambda: away and not inbox.waiting(engine, "telegram"), timeout=WAIT,
                            what="the update marked handled after the database came back")
        assert [m.text for m in tg.bot_messages(welcome) if "大家好" in (m.text or "")][1:] == [], "greeted twice"


async def test_joining_a_group_follows_the_invite_rule(tg: TelegramApiServer, tmp_path: Path) -> None:
    """Added by someone the community lets invite it, the bot says hello (and that it can't read the group
    yet); added by anyone else, it says why and leaves."""
    zhang, _, wang, _ = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang}, invite="dispatchers"))
        welcome = tg.create_group("阳光小区业主群", members=[wang], creator=zhang, bot_member=False)
        tg.set_bot_status(welcome, "member", by=zhang)
        await t.expect(welcome, "大家好，我是邻里助手", "/绑定")
        await t.expect(welcome, "我现在只能看到命令")  # privacy mode on, not an admin

        elsewhere = tg.create_group("广场舞群", members=[zhang], creator=wang, bot_member=False)
        tg.set_bot_status(elsewhere, "member", by=wang)
        await t.expect(elsewhere, "只有书记、网格长或社区管理员可以邀请我进群")
        await tg.wait_for_call("leaveChat", timeout=WAIT)
        assert not [m for m in tg.bot_messages(elsewhere) if "大家好" in (m.text or "")]


# --- faults -----------------------------------------------------------------------------------------
async def test_flood_waits_are_honoured_and_what_cannot_go_is_parked(tg: TelegramApiServer, tmp_path: Path) -> None:
    zhang, liu, wang, _ = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang, "刘师傅": liu}), max_retries=1)
        group = tg.create_group("阳光小区业主群", members=[zhang, liu, wang], bot_admin=True)
        said = tg.user_says(zhang, group, "/绑定 YG-A")
        await t.expect(group, "本群已绑定到", after=said)
        tg.flood("sendMessage", times=1, retry_after=1)
        said = tg.user_says(wang, group, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await t.expect(group, "已登记", "#1", after=said)  # after one 429 and a wait
        assert [c.status for c in tg.calls_to("sendMessage")][-2:] == [429, 200]

        tg.flood("sendMessage", times=5, retry_after=1)  # more than the limiter's retries
        said = tg.user_says(zhang, group, "/派单 #1 物业维修组")
        card = await t.expect_edit(card, "已派单")  # edits still go
        assert t.core is not None and t.transport is not None
        await tg.wait_until(lambda: t.transport is not None and t.transport.parked > 0, timeout=WAIT,
                            what="a parked message")
        with session(t.core.engine) as db:
            parked = db.exec(select(Outbox).where(Outbox.service == "telegram", col(Outbox.sent_at).is_(None))).all()
        assert [row.payload["text"]["key"] for row in parked] == ["assign.done"]
        assert not [m for m in tg.bot_messages(group) if "已派给" in (m.text or "")]

        tg.flood("sendMessage", times=0)
        now = t.core.clock.now() + timedelta(minutes=1)
        assert await deliver_due(t.core.engine, "test", now, t.transport.deliver) == 1  # the scheduler's retry
        told = await t.expect(group, "#1 已派给 物业维修组", after=said)
        assert told.reply_to_message_id == said["message_id"]
        tg.user_presses(liu, card, "接单")
        await t.expect_edit(card, "处理中")


async def test_a_redelivered_update_is_handled_once(tg: TelegramApiServer, tmp_path: Path) -> None:
    zhang, liu, wang, _ = people(tg)
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang, "刘师傅": liu}))
        group = tg.create_group("阳光小区业主群", members=[zhang, liu, wang], bot_admin=True)
        said = tg.user_says(wang, group, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await t.expect(group, "已登记", after=said)
        said = tg.user_says(zhang, group, "/派单 #1 物业维修组")
        card = await t.expect_edit(card, "已派单")
        press = tg.user_presses(liu, card, "接单")
        card = await t.expect_edit(card, "处理中")
        await t.expect(group, "#1 刘师傅已接单", after=said)

        def transcript() -> list[tuple[int, int]]:
            return [(m.message_id, len(m.history)) for m in tg.bot_messages(group)]

        before, updates = transcript(), [u["update_id"] for u in tg.updates]
        assert len(updates) == 3
        for update_id in updates:  # Telegram sends them again, as after a webhook timeout
            tg.redeliver(update_id)
        await tg.wait_until(lambda: t.transport is not None and t.transport.duplicates == 3, timeout=WAIT,
                            what="redeliveries dropped")
        await t.settle()
        assert t.orders() == 1 and transcript() == before
        assert len([a for a in tg.callback_answers if a.callback_query_id == press]) == 1

        # A restarted transport finds the update ids in the inbox: nothing is handled again.
        await t.stop()
        await t.start()
        for update_id in updates:
            tg.redeliver(update_id)
        await tg.wait_until(lambda: t.transport is not None and t.transport.duplicates == 3, timeout=WAIT,
                            what="redeliveries dropped after a restart")
        await t.settle()
        assert t.orders() == 1 and transcript() == before
        assert t.order(1).state == "in_progress"


async def test_webhook_mode_checks_the_secret(tg: TelegramApiServer, tmp_path: Path) -> None:
    zhang, liu, wang, _ = people(tg)
    port = free_port()
    url = f"http://127.0.0.1:{port}/linli/telegram"
    async with town(tg, tmp_path) as t:
        await t.start(community({"张书记": zhang, "刘师傅": liu}), webhook=url, listen=f"127.0.0.1:{port}")
        hook = tg.webhook
        assert hook is not None and hook["url"] == url
        assert t.core is not None
        secret = t.transport.secrets.get("webhook_secret")  # kept apart from the ordinary state
        assert secret and hook["secret_token"] == secret
        group = tg.create_group("阳光小区业主群", members=[zhang, liu, wang], bot_admin=True)
        said = tg.user_says(wang, group, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await t.expect(group, "已登记", after=said)

        forged = {"update_id": 1, "message": {**said, "message_id": 999, "text": "/报事 伪造的"}}
        async with aiohttp.ClientSession() as client:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with client.post(url, json=forged, headers=headers) as response:
                    assert response.status == 403
        assert t.orders() == 1

        await t.stop()  # a restart keeps the secret
        await t.start(webhook=url, listen=f"127.0.0.1:{port}")
        assert tg.webhook is not None and tg.webhook["secret_token"] == secret
        tg.user_presses(zhang, card, "派单")
        await t.expect(group, "派给哪个队伍", after=card)
        assert all(d["status"] in (200, None) for d in tg.webhook_deliveries)


async def test_restart_mid_order_finishes_the_order(tg: TelegramApiServer, tmp_path: Path) -> None:
    """Stopped mid-order: what happened meanwhile is received on the next start, and the same buttons work."""
    zhang, liu, wang, _ = people(tg)
    async with town(tg, tmp_path) as t:
        config = community({"张书记": zhang, "刘师傅": liu})
        await t.start(config)
        group = tg.create_group("阳光小区业主群", members=[zhang, liu, wang], bot_admin=True)
        said = tg.user_says(wang, group, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await t.expect(group, "已登记", after=said)
        said = tg.user_says(zhang, group, "/派单 #1 物业维修组")
        card = await t.expect_edit(card, "已派单")
        await t.stop()
        assert t.core is not None
        t.core.engine.dispose()
        t.core = None

        press = tg.user_presses(liu, card, "接单")  # while the bot is down
        await t.start(config)  # a new process: new core, same database
        assert await t.alert(press) is None
        card = await t.expect_edit(card, "处理中")
        photo = tg.user_sends_photo(liu, group, caption="修好了", reply_to=card)
        rate = await t.expect(group, "已办结", after=photo)
        tg.user_presses(wang, rate, "★5")
        await t.expect(group, "谢谢评价", after=rate)
        await t.expect_edit(card, "已关闭")
        assert t.order(1).state == "closed"


async def test_an_unreachable_bot_api_does_not_block_start(tg: TelegramApiServer, tmp_path: Path) -> None:
    """`linli run` starts Matrix too: Telegram's start returns soon and keeps trying in the background."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts, never answers

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = black_hole.sockets[0].getsockname()[1]
    async with town(tg, tmp_path) as t:
        core = t.open_core()
        settings = Settings(database_url=t.settings().database_url, telegram_token=SecretStr(tg.token),
                            telegram_api_url=f"http://127.0.0.1:{port}/bot")
        transport = TelegramTransport(core, settings, start_wait=0.5)
        started = time.monotonic()
        await asyncio.wait_for(transport.start(), WAIT)
        assert time.monotonic() - started < 2
        await transport.deliver([Outgoing(Kind.SEND, Text("help"), service="telegram", chat_id="-100123")])
        assert transport.parked == 1  # nothing lost: it waits in the outbox
        await asyncio.wait_for(transport.stop(), WAIT)
        black_hole.close()

        # Telegram refuses the first getMe (flood wait): started all the same, connected a moment later.
        tg.flood("getMe", times=2, retry_after=1)
        transport = await t.start(start_wait=0.5, max_retries=1)
        assert transport.me is None
        wang = tg.create_user("王阿姨")
        group = tg.create_group("阳光小区业主群", members=[wang], bot_admin=True)
        said = tg.user_says(wang, group, "/报事 3栋2单元楼道灯坏了")
        await t.expect(group, "已登记", after=said)

        bad = Settings(database_url=t.settings().database_url, telegram_token=SecretStr("123456:" + "A" * 35),
                       telegram_api_url=tg.base_url)
        with pytest.raises(LoginFailed) as failed:  # a wrong token stops start-up, without showing the token
            await TelegramTransport(core, bad).start()
        assert "LINLI_TELEGRAM_TOKEN" in str(failed.value) and "A" * 35 not in str(failed.value)


async def test_linli_run_serves_a_group(tg: TelegramApiServer, tmp_path: Path) -> None:
    """`linli run` with only a token: zero-config, the group's admin dispatches, SIGTERM stops it cleanly."""
    wang, resident = tg.create_user("王书记"), tg.create_user("赵大爷")
    env = {**without_linli_settings(), "LINLI_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "LINLI_TELEGRAM_TOKEN": tg.token,
           "LINLI_TELEGRAM_API_URL": tg.base_url, "LINLI_SWEEP_SECONDS": "1"}
    for name in ("LINLI_MATRIX_HOMESERVER", "LINLI_MATRIX_USER"):
        env.pop(name, None)
    linli = Path(sys.executable).with_name("linli")
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen([str(linli), "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=tmp_path)
    try:
        await tg.wait_for_call("getUpdates", timeout=30)
        group = tg.create_group("幸福小区业主群", members=[resident], admins=[wang], bot_admin=True)
        said = tg.user_says(wang, group, "/绑定 LINLI")  # owning a group gives no authority over the community
        await tg.wait_for_bot_message(group, "还没有书记、网格长或督办可以确认绑定", after=said, timeout=WAIT)
        code = re.search(r"/认证 (LINLI-[A-Z0-9-]+)", (tmp_path / "run.log").read_text()).group(1)
        direct = tg.private_chat(wang)
        said = tg.user_says(wang, direct, f"/认证 {code}")  # the one-time code `linli run` printed
        await tg.wait_for_bot_message(direct, "认证成功", after=said, timeout=WAIT)
        said = tg.user_says(wang, group, "/绑定 LINLI")
        await tg.wait_for_bot_message(group, "本群已绑定到", after=said, timeout=WAIT)
        said = tg.user_says(resident, group, "3栋2单元楼道灯坏了，晚上黑漆漆的")
        card = await tg.wait_for_bot_message(group, "已登记", after=said, timeout=WAIT)
        assert "#1" in (card.text or "")
        said = tg.user_says(wang, group, "/派单 #1 @王书记")
        await tg.wait_for_edit(card, "状态：已派单", timeout=WAIT)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0, (tmp_path / "run.log").read_text()


def test_bench_telegram_measures_updates_per_second() -> None:
    from tests.benchmarks.telegram_transport import bench_telegram

    figures = bench_telegram(updates=40)
    assert figures["updates"] == 40 and figures["parked"] == 0
    assert figures["per_s"] > 1 and 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["idle_ms"] > 0
