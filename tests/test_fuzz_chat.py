"""Odd input from people of every role: random messages, commands with garbage arguments, forged button
presses and redeliveries. Nothing may get the internal-error reply, no reply may carry a traceback or
fail to render, and no message may become two orders."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.render import render
from handlers.clock import ManualClock
from handlers.commands import COMMANDS
from handlers.protocol import Incoming, Outgoing
from handlers.router import Linli
from storage.db import session
from storage.models import Event
from tests.neighbourhood import EXAMPLE, Neighbourhood, quiet_days

SPEAKERS = ["王阿姨", "李姐", "刘师傅", "陈师傅", "张书记", "周主任", "小李", "赵网格员", "群主", "外人", "Mr. Smith"]
CHATS = ["阳光小区业主群", "陌生群", "私聊"]
MESSAGES_PER_EXAMPLE = 50
EXAMPLES = 200  # 10,000 messages in all

odd_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)  # surrogates too
words = st.sampled_from(["3栋2单元楼道灯坏了", "电梯", "①", "²", "\ud800", "a\udfffb", "５", "-1", "0", "6",
                         "99999999999999999999",
                         "@刘师傅", "@", "@物业维修组", "类别=治安消防", "紧急=红", "事项=私事", "位置=3栋", "=",
                         "位置=", "en", "zh", "YG", "YG-A-3", "LINLI", "\u200b", "\u202e", "👍", "　", "#", "＃１",
                         "not_mine", "other", "\x00", "\x0b", "=HYPERLINK(1)"])
order_ref = st.one_of(st.integers(min_value=-3, max_value=12).map(lambda n: f"#{n}"),
                      st.sampled_from(["#99999999999999999999", "#①", "#", "＃３", "#1#2"]))
command_name = st.sampled_from([name for names in COMMANDS.values() for name in names] + ["foo", "開門", ""])
command = st.builds(lambda name, ref, args: f"/{name} {ref} {' '.join(args)}", command_name, order_ref,
                    st.lists(st.one_of(words, odd_text), max_size=4))
verbs = st.sampled_from(["asg", "acc", "ret", "clm", "don", "rt", "cxl", "fol", "st", "vis", "pr", "dup", "bnd",
                         "xx", ""])
press = st.builds(lambda verb, ident, arg: f"{verb}:{ident}:{arg}", verbs,
                  st.one_of(st.integers(min_value=-1, max_value=15).map(str),
                            st.sampled_from(["99999999999999999999999999999", "²", "①", "", "1e3"])),
                  st.one_of(st.sampled_from(["1", "5", "6", "²", "y", "n", "t1", "p2", "t99999999999999999999",
                                             "ok", "bad", "", "not_mine"]), odd_text))


@st.composite
def message(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["text", "text", "command", "command", "command", "press", "photo", "again"]))
    return {
        "kind": kind,
        "who": draw(st.sampled_from(SPEAKERS)),
        "chat": draw(st.sampled_from(CHATS)),
        "text": draw({"text": st.one_of(words, odd_text), "command": command, "photo": st.one_of(words, odd_text),
                      "press": press, "again": st.just("")}[kind]),
        "reply": draw(st.booleans()),
    }


class Chaos:
    """One neighbourhood the whole run shares, and what was said in it."""

    def __init__(self, tmp: Path) -> None:
        from bot.settings import load_community

        self.hood = Neighbourhood(f"sqlite:///{tmp / 'fuzz.db'}", quiet_days(load_community(EXAMPLE)))
        self.core: Linli = self.hood.core
        self.clock: ManualClock = self.hood.clock
        self.ids = itertools.count(1)
        self.sent: list[Incoming] = []
        self.bot_messages: list[str] = ["none"]

    def deliver(self, step: dict) -> list[Outgoing]:
        if step["kind"] == "again" and self.sent:
            incoming = self.sent[len(self.sent) // 2]  # a redelivery of something already handled
        else:
            incoming = self.incoming(step)
            self.sent.append(incoming)
        self.clock.advance(seconds=7)
        return self.core.handle(incoming)

    def incoming(self, step: dict) -> Incoming:
        n = next(self.ids)
        chat = step["chat"]
        return Incoming(
            service="console", chat_id=chat, sender_id=step["who"], sender_name=step["who"],
            text="" if step["kind"] == "press" else step["text"], message_id=f"fuzz-{n}", chat_title=chat,
            is_direct=chat == "私聊", photos=("done.jpg",) if step["kind"] == "photo" else (),
            reply_to=self.bot_messages[n % len(self.bot_messages)] if step["reply"] else None,
            button=step["text"] if step["kind"] == "press" else None,
            sender_is_admin=step["who"] == "群主",
        )


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Chaos:
    world = Chaos(tmp_path_factory.mktemp("fuzz"))
    yield world
    world.hood.engine.dispose()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(steps=st.lists(message(), min_size=MESSAGES_PER_EXAMPLE, max_size=MESSAGES_PER_EXAMPLE))
def test_odd_input_is_answered_politely_and_nothing_is_stored_twice(chaos: Chaos, steps: list[dict]) -> None:
    for step in steps:
        for action in chaos.deliver(step):
            assert action.text.key != "error.internal", f"{step} got the internal-error reply"
            for lang in ("zh", "en"):
                shown = render(action.text, lang)
                assert "Traceback" not in shown and "Error" not in shown, shown
    with session(chaos.core.engine) as db:
        doubled = db.execute(
            select(Event.chat_id, Event.message_ref, func.count()).where(Event.action == "report",
                                                                         Event.message_ref.is_not(None))
            .group_by(Event.chat_id, Event.message_ref).having(func.count() > 1)).all()
    assert not doubled, f"one message became several orders: {doubled}"
