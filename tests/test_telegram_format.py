"""Telegram payloads ↔ the core's values, without a server: updates as Telegram sends them in, texts and
keyboards out."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Update

from bot.render import TELEGRAM_MENU as COMMANDS
from bot.settings import SettingsError
from bot.telegram.format import (
    Me,
    alert_text,
    callback_incoming,
    chinese_command,
    html_text,
    is_file_id,
    keyboard,
    message_incoming,
    message_ref,
)
from bot.telegram.transport import api_url_of, file_url_of, parse_listen
from handlers.commands import parse
from handlers.protocol import Button, Kind, Mention, Outgoing, Text

ME = Me(8000000001, "LinliBot", reads_all=False)
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "阳光小区3栋群"}
WANG = {"id": 700000001, "is_bot": False, "first_name": "王", "last_name": "阿姨", "language_code": "zh-hans"}
LIU = {"id": 700000002, "is_bot": False, "first_name": "刘师傅", "username": "liu_sf"}


def update(kind: str = "message", **payload: Any) -> Update:
    data = {"update_id": 100, kind: payload}
    found = Update.de_json(data, None)
    assert found is not None
    return found


def message(text: str | None = None, *, sender: dict[str, Any] = WANG, chat: dict[str, Any] = GROUP,
            entities: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    payload: dict[str, Any] = {"message_id": 42, "date": 1_700_000_000, "chat": chat, "from": sender, **extra}
    if text is not None:
        payload["text"] = text
    if entities:
        payload["entities"] = entities
    return update(**payload).message


def test_a_group_message_becomes_an_incoming() -> None:
    text = "3栋灯坏了 @liu_sf 刘师傅 @LinliBot"
    incoming = message_incoming(message(text, entities=[
        {"type": "mention", "offset": 6, "length": 7},
        {"type": "text_mention", "offset": 14, "length": 3, "user": LIU},
        {"type": "mention", "offset": 18, "length": 9},
    ]), ME, sender_is_admin=True, user_id_of=lambda name: "700000002" if name == "liu_sf" else None)
    assert incoming is not None
    assert (incoming.service, incoming.chat_id, incoming.sender_id, incoming.sender_name) == (
        "telegram", "-1001234567890", "700000001", "王 阿姨")
    assert incoming.message_id == "-1001234567890:42" and incoming.chat_title == "阳光小区3栋群"
    assert incoming.text == text and not incoming.is_direct and incoming.sender_is_admin
    assert incoming.mentions == (Mention("liu_sf", "700000002"), Mention("刘师傅", "700000002"))
    assert incoming.mentions_bot


def test_photos_replies_and_private_chats() -> None:
    photo = [{"file_id": f"AgACAgUAAxkBAAI{size:040d}", "file_unique_id": f"u{size}", "width": size,
              "height": size} for size in (90, 320, 1280)]
    card = {"message_id": 7, "date": 1_700_000_000, "chat": GROUP,
            "from": {"id": ME.id, "is_bot": True, "first_name": "Linli"}, "text": "🔵 #1 …"}
    incoming = message_incoming(message(caption="换好了", photo=photo, reply_to_message=card), ME)
    assert incoming is not None
    assert incoming.photos == (photo[-1]["file_id"],) and incoming.text == "换好了" and incoming.reply_to == "7"
    assert not incoming.mentions_bot  # a reply to a card acts on its order; it is no address to the bot
    assert message_incoming(message("hi", reply_to_message=card), ME, addressed=True).mentions_bot  # type: ignore[union-attr]

    document = {"file_id": "BQACAgUAAxkBAAI" + "x" * 40, "file_unique_id": "d", "mime_type": "image/jpeg"}
    sent_as_file = message_incoming(message(document=document), ME)
    assert sent_as_file is not None and sent_as_file.photos == (document["file_id"],)

    private = {"id": WANG["id"], "type": "private", "first_name": "王", "last_name": "阿姨"}
    direct = message_incoming(message("/start", chat=private), ME)
    assert direct is not None and direct.is_direct and direct.chat_title == "王 阿姨"
    assert direct.text == "/帮助"  # Telegram's START button, for someone whose Telegram speaks Chinese


def test_what_the_core_should_not_see() -> None:
    bot = {"id": 1234, "is_bot": True, "first_name": "OtherBot"}
    channel = {"id": -1009999, "type": "channel", "title": "Estate news"}
    assert message_incoming(message("hello", sender=bot), ME) is None
    assert message_incoming(message(sticker=None, new_chat_members=[WANG]), ME) is None
    assert message_incoming(message("forwarded", sender_chat=channel, is_automatic_forward=True), ME) is None
    assert message_incoming(message("news", chat=channel), ME) is None
    anonymous = message_incoming(message("/派单 #1 物业维修组", sender={"id": 1087968824, "is_bot": True,
                                                                     "first_name": "Group"}, sender_chat=GROUP), ME)
    assert anonymous is not None and anonymous.sender_is_admin and anonymous.sender_id == str(GROUP["id"])


def test_forum_topics_are_not_replies() -> None:
    topic_start = {"message_id": 3, "date": 1_700_000_000, "chat": GROUP, "from": WANG,
                   "forum_topic_created": {"name": "报修", "icon_color": 7322096}}
    incoming = message_incoming(message("电梯坏了", message_thread_id=3, is_topic_message=True,
                                        reply_to_message=topic_start), ME)
    assert incoming is not None and incoming.reply_to is None


def test_a_button_press_becomes_an_incoming() -> None:
    card = {"message_id": 7, "date": 1_700_000_000, "chat": GROUP,
            "from": {"id": ME.id, "is_bot": True, "first_name": "Linli"}, "text": "🔵 #1 …"}
    press = update("callback_query", id="4382", chat_instance="-77", data="acc:1", message=card,
                   **{"from": LIU}).callback_query
    assert press is not None
    incoming = callback_incoming(press, sender_is_admin=False)
    assert incoming is not None
    assert (incoming.button, incoming.message_id, incoming.reply_to, incoming.chat_id, incoming.sender_id) == (
        "acc:1", "cb:4382", "7", "-1001234567890", "700000002")
    no_data = update("callback_query", id="1", chat_instance="-77", message=card, **{"from": LIU}).callback_query
    assert no_data is not None and callback_incoming(no_data) is None


def test_texts_are_escaped_and_people_linked() -> None:
    action = Outgoing(Kind.SEND, Text("assign.done", {"number": 3, "team": "<物业>", "assignee": None,
                                                      "names": ["李", "李姐", "陈师傅"]}),
                      mentions=(Mention("李", "11"), Mention("李姐", "22"), Mention("陈师傅", None)))
    html = html_text(action)
    assert "&lt;物业&gt;" in html and "<物业>" not in html
    assert '<a href="tg://user?id=11">@李</a> <a href="tg://user?id=22">@李姐</a> @陈师傅' in html

    card = Outgoing(Kind.CARD, Text("card.filed", {"number": 1, "title": "灯坏了 & 黑", "category": "facilities",
                                                   "urgency": "red", "matter": "minor", "state": "reported"}))
    lines = html_text(card).split("\n")
    assert lines[0] == "已登记" and lines[1] == "<b>🔴 #1 灯坏了 &amp; 黑</b>"
    long = Outgoing(Kind.SEND, Text("plan.done", {"number": 1, "plan": "长" * 5000, "names": []}))
    assert len(html_text(long)) == 4096


def test_keyboards_refs_and_alerts() -> None:
    rows = ((Button(Text("btn.accept"), "acc:1"), Button(Text("btn.return"), "ret:1")),
            (Button(Text("btn.star", {"score": 5}), "rt:1:5"),))
    markup = keyboard(rows, "zh")
    assert markup is not None
    assert [[(b.text, b.callback_data) for b in row] for row in markup.inline_keyboard] == [
        [("接单", "acc:1"), ("退单", "ret:1")], [("★5", "rt:1:5")]]
    assert keyboard((), "en") is None
    assert [message_ref(r) for r in ("-100123:45", "45", "cb:99", None, "x")] == [45, 45, None, None, None]
    assert is_file_id("AgACAgUAAxkBAAIBR2ZmZmZmZmZmZmZm") and not is_file_id("done.jpg")
    assert not is_file_id("/etc/passwd") and not is_file_id("mxc://example.org/abc")
    alert = alert_text([Outgoing(Kind.ALERT, Text("refuse.assign.role"))])
    assert alert == "只有书记或网格长可以派单。"
    assert len(alert_text([Outgoing(Kind.ALERT, Text("plan.done", {"number": 1, "plan": "x" * 300,
                                                                   "names": []}))]) or "") == 200


def test_latin_commands_for_chinese_speakers() -> None:
    assert chinese_command("/report@LinliBot 3栋灯坏了", "zh-hans", ME) == "/报事 3栋灯坏了"
    assert chinese_command("/report@OtherBot 3栋灯坏了", "zh", ME) == "/report@OtherBot 3栋灯坏了"
    assert chinese_command("/report 3栋灯坏了", "en", ME) == "/report 3栋灯坏了"
    assert chinese_command("/报事 3栋灯坏了", "zh", ME) == "/报事 3栋灯坏了"
    assert chinese_command("/unknown", "zh", ME) == "/unknown"


def test_every_menu_command_is_one_the_core_knows() -> None:
    for name, zh, en in COMMANDS:
        command = parse(f"/{name}@linlibot", frozenset({"linlibot"}))
        assert command is not None and command.verb is not None, name
        assert zh and en and len(zh) <= 256 and len(en) <= 256


def test_settings_for_the_bot_api() -> None:
    assert file_url_of("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_url_of("http://127.0.0.1:8081/bot") == "http://127.0.0.1:8081/file/bot"
    assert api_url_of("http://127.0.0.1:8081/") == "http://127.0.0.1:8081/bot"
    assert parse_listen("0.0.0.0:8443") == ("0.0.0.0", 8443)
    assert parse_listen("[::]:80") == ("::", 80)
    with pytest.raises(SettingsError):
        parse_listen("8443")
