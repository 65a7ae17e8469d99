"""The Matrix transport's translations on recorded event payloads (as Synapse and Element send them)."""

from __future__ import annotations

import math
from pathlib import Path

from bot.delivery import lane_of
from bot.matrix.events import (
    Choice,
    Me,
    Where,
    choice_of,
    creators_of,
    creators_rule,
    image_caption,
    image_info,
    message_incoming,
    power_of,
    press_for,
    reply_target,
)
from bot.matrix.format import button_data, edit_content, message_content, options_line
from bot.matrix.media import path_for, split_mxc
from bot.matrix.transport import _key, _same_account, _since_own_join, default_media_dir
from handlers.protocol import Button, Kind, Mention, Outgoing, Text

ME = Me.of("@linli:localhost", "邻里助手", {"linli"})
ROOM = Where(room_id="!room", title="阳光小区3栋群", is_direct=False, sender_name="张书记", sender_is_admin=True)
NAMES = {"@liu:localhost": "刘师傅", "@linli:localhost": "邻里助手"}

# An Element Web reply with a pill, as it arrives in /sync (the reply fallback is still sent by some clients).
ELEMENT_REPLY = {
    "type": "m.room.message",
    "sender": "@zhang:localhost",
    "event_id": "$reply",
    "origin_server_ts": 1,
    "content": {
        "msgtype": "m.text",
        "body": "> <@linli:localhost> 已登记 #3\n\n/派单 #3 刘师傅",
        "format": "org.matrix.custom.html",
        "formatted_body": '<mx-reply><blockquote><a href="https://matrix.to/#/!room/$card">In reply to</a>'
                          '</blockquote></mx-reply>/派单 #3 <a href="https://matrix.to/#/@liu:localhost">刘师傅</a>',
        "m.mentions": {"user_ids": ["@liu:localhost"]},
        "m.relates_to": {"m.in_reply_to": {"event_id": "$card"}},
    },
}


def name_of(user: str) -> str:
    return NAMES.get(user, user)


def test_a_reply_with_a_pill_reads_as_a_command_naming_the_person() -> None:
    incoming = message_incoming(ELEMENT_REPLY, ROOM, ME, name_of)
    assert incoming is not None
    assert incoming.text == "/派单 #3 @刘师傅"
    assert incoming.reply_to == "$card"
    assert incoming.mentions == (Mention("刘师傅", "@liu:localhost"),)
    assert incoming.message_id == "$reply" and incoming.sender_is_admin and not incoming.mentions_bot


def test_addressing_the_bot_by_pill_or_name_is_a_mention_and_is_dropped_from_the_text() -> None:
    pill = {"type": "m.room.message", "sender": "@wang:localhost", "event_id": "$1", "content": {
        "msgtype": "m.text", "body": "邻里助手: 北门路灯不亮", "format": "org.matrix.custom.html",
        "formatted_body": '<a href="https://matrix.to/#/%40linli%3Alocalhost">邻里助手</a>: 北门路灯不亮',
        "m.mentions": {"user_ids": ["@linli:localhost"]}}}
    incoming = message_incoming(pill, ROOM, ME, name_of)
    assert incoming is not None and incoming.mentions_bot and incoming.text == "北门路灯不亮"
    assert incoming.mentions == ()

    typed = {**pill, "content": {"msgtype": "m.text", "body": "@linli 3栋漏水了"}}
    incoming = message_incoming(typed, ROOM, ME, name_of)
    assert incoming is not None and incoming.mentions_bot and incoming.text == "3栋漏水了"

    plain = {**pill, "content": {"msgtype": "m.text", "body": "邻里助手真好用"}}
    incoming = message_incoming(plain, ROOM, ME, name_of)
    assert incoming is not None and not incoming.mentions_bot and incoming.text == "邻里助手真好用"


def test_edits_notices_and_empty_messages_are_not_for_the_core() -> None:
    edit = {"type": "m.room.message", "sender": "@wang:localhost", "event_id": "$2", "content": {
        "msgtype": "m.text", "body": "* 3栋灯坏了", "m.new_content": {"msgtype": "m.text", "body": "3栋灯坏了"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}}
    notice = {"type": "m.room.message", "sender": "@otherbot:localhost", "event_id": "$3",
              "content": {"msgtype": "m.notice", "body": "I am a bot"}}
    empty = {"type": "m.room.message", "sender": "@wang:localhost", "event_id": "$4",
             "content": {"msgtype": "m.text", "body": "   "}}
    assert message_incoming(edit, ROOM, ME, name_of) is None
    assert message_incoming(notice, ROOM, ME, name_of) is None
    assert message_incoming(empty, ROOM, ME, name_of) is None


def test_images_keep_their_mxc_uri_and_caption() -> None:
    image = {"type": "m.room.message", "sender": "@liu:localhost", "event_id": "$5", "content": {
        "msgtype": "m.image", "body": "换好了", "filename": "IMG_0001.jpg", "url": "mxc://localhost/AbCd",
        "info": {"mimetype": "image/jpeg", "size": 48213, "w": 800, "h": 600},
        "m.relates_to": {"m.in_reply_to": {"event_id": "$card"}}}}
    assert image_info(image["content"]) == ("mxc://localhost/AbCd", 48213, "image/jpeg")
    assert image_caption(image["content"]) == "换好了"
    incoming = message_incoming(image, ROOM, ME, name_of, photos=("mxc://localhost/AbCd",))
    assert incoming is not None and incoming.photos == ("mxc://localhost/AbCd",) and incoming.reply_to == "$card"
    assert image_caption({"body": "IMG_0001.jpg"}) == ""
    encrypted = {"msgtype": "m.image", "body": "x.jpg", "file": {"url": "mxc://localhost/enc"}}
    assert image_info(encrypted)[0] is None


def test_a_message_in_a_thread_answers_the_thread_root() -> None:
    threaded = {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
                                 "m.in_reply_to": {"event_id": "$latest"}}}
    assert reply_target(threaded) == "$root"
    threaded["m.relates_to"]["is_falling_back"] = False  # type: ignore[index]
    assert reply_target(threaded) == "$latest"


def test_reactions_read_as_choices() -> None:
    assert choice_of("1️⃣") == Choice(index=1)
    assert choice_of("5\u20e3") == Choice(index=5)  # without the variation selector
    assert choice_of("3") == Choice(index=3)
    assert choice_of("⭐⭐⭐⭐") == Choice(stars=4)
    assert choice_of("👍🏽") == Choice(follow=True) and choice_of("+1") == Choice(follow=True)
    assert choice_of("❤️") is None and choice_of("0️⃣") is None and choice_of("⭐" * 6) is None


def test_choices_press_the_numbered_button_or_rate_the_order() -> None:
    buttons = ["acc:7", "ret:7"]
    assert press_for(Choice(index=1), buttons, 7) == "acc:7"
    assert press_for(Choice(index=3), buttons, 7) is None  # no third option here
    assert press_for(Choice(stars=4), buttons, 7) == "rt:7:4"  # stars always rate
    assert press_for(Choice(index=5), None, 7) == "rt:7:5"  # a card without options: numbers rate
    assert press_for(Choice(index=5), None, None) is None  # not a message about an order


def test_room_version_12_creators_have_top_power() -> None:
    create = {"type": "m.room.create", "sender": "@owner:localhost", "state_key": "",
              "content": {"room_version": "12", "additional_creators": ["@co:localhost"]}}
    creators = creators_of(create)
    assert creators == frozenset({"@owner:localhost", "@co:localhost"})
    assert creators_rule("12") and creators_rule("org.matrix.hydra.11") and not creators_rule("11")
    assert power_of("@owner:localhost", {}, 0, creators, "12") == math.inf
    assert power_of("@co:localhost", {"@co:localhost": 0}, 0, creators, "12") == math.inf
    assert power_of("@owner:localhost", {"@owner:localhost": 100}, 0, creators, "10") == 100
    assert power_of("@owner:localhost", {}, 0, creators, "10") == 0  # older rooms list their admins
    assert power_of("@mod:localhost", {"@mod:localhost": 50}, 0, creators, "12") == 50


def test_an_order_card_becomes_html_with_a_line_of_options() -> None:
    card = Outgoing(Kind.CARD, Text("card.filed", {"number": 3, "title": "楼道灯坏了", "category": "facilities",
                                                   "urgency": "blue", "matter": "minor", "place": "3栋2单元",
                                                   "state": "reported"}),
                    service="matrix", chat_id="!room", order_id=9, reply_to="$report",
                    buttons=((Button(Text("btn.assign"), "asg:9"), Button(Text("btn.claim"), "clm:9"),
                              Button(Text("btn.cancel"), "cxl:9")),))
    content = message_content(card, reply_to="$report")
    assert content["msgtype"] == "m.text" and content["format"] == "org.matrix.custom.html"
    assert content["body"].startswith("已登记\n🔵 #3 楼道灯坏了")
    assert content["body"].endswith("点表情选择：1️⃣ 派单 · 2️⃣ 认领 · 3️⃣ 撤销")
    assert "<b>🔵 #3 楼道灯坏了 · 3栋2单元</b>" in content["formatted_body"]
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$report"}}
    assert content["m.mentions"] == {}
    assert button_data(card.buttons) == ["asg:9", "clm:9", "cxl:9"]

    edit = edit_content(card, "$card")
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$card"}
    assert edit["body"].startswith("* ") and edit["m.new_content"]["body"] == content["body"]
    assert "m.relates_to" not in edit["m.new_content"] and edit["m.mentions"] == {}


def test_mentions_become_pills_and_stars_a_rating_hint() -> None:
    stars = (tuple(Button(Text("btn.star", {"score": s}), f"rt:4:{s}") for s in range(1, 6)),)
    done = Outgoing(Kind.SEND, Text("done.rate", {"number": 4, "names": ["王阿姨"]}), service="matrix",
                    chat_id="!room", order_id=4, buttons=stars,
                    mentions=(Mention("王阿姨", "@wang:localhost"), Mention("老李", None)))
    content = message_content(done)
    assert content["m.mentions"] == {"user_ids": ["@wang:localhost"]}
    assert '<a href="https://matrix.to/#/@wang:localhost">王阿姨</a>' in content["formatted_body"]
    assert "@王阿姨" in content["body"] and "1️⃣–5️⃣" in content["body"]
    assert options_line(stars, "en") == "Rate with a reaction: 1️⃣–5️⃣ stars (or reply with a number 1–5)"

    alert = Outgoing(Kind.ALERT, Text("button.stale"), service="matrix", chat_id="!room")
    content = message_content(alert, reply_to="$card", to=Mention("李姐", "@li:localhost"))
    assert content["msgtype"] == "m.notice" and content["body"] == "李姐: 这个按钮已失效。"
    assert content["m.mentions"] == {"user_ids": ["@li:localhost"]}


def test_small_helpers() -> None:
    assert split_mxc("mxc://localhost/AbCd") == ("localhost", "AbCd")
    assert path_for(Path("/m"), "mxc://local:8448/a..b", None) == Path("/m/local_8448/a..b")
    assert path_for(Path("/m"), "mxc://../..", None) == Path("/m/_./_.")  # never outside the media dir
    assert path_for(Path("/m"), "mxc://localhost/AbCd", "image/png") == Path("/m/localhost/AbCd.png")
    assert len(_key("btn", "$" + "x" * 200)) <= 64 and _key("dm", "@a:b") == "dm:@a:b"
    assert _same_account("@linli:example.org", "linli") and not _same_account("@linli:example.org", "other")
    assert default_media_dir("sqlite:////srv/linli/linli.db") == Path("/srv/linli/linli-media")
    direct = Outgoing(Kind.DIRECT, Text("x"), person_id=5, order_id=2)
    assert lane_of(direct) == "person:5"
    assert lane_of(Outgoing(Kind.UPDATE_CARD, Text("x"), chat_id="!room", order_id=2)) == "chat:!room"
    assert lane_of(Outgoing(Kind.UPDATE_CARD, Text("x"), order_id=2)) == "order:2"

    class Ev:
        def __init__(self, source: dict) -> None:
            self.source = source

    joined = Ev({"type": "m.room.member", "state_key": "@linli:localhost", "content": {"membership": "join"}})
    before, after = Ev({"type": "m.room.message"}), Ev({"type": "m.room.message", "n": 2})
    assert _since_own_join([before, joined, after], "@linli:localhost") == [after]
    renamed = Ev({"type": "m.room.member", "state_key": "@linli:localhost", "content": {"membership": "join"},
                  "unsigned": {"prev_content": {"membership": "join"}}})
    assert _since_own_join([before, renamed, after], "@linli:localhost") == [before, renamed, after]
