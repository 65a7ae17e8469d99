"""The fake Telegram Bot API server, driven by the real python-telegram-bot stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Conflict, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from tests.servers.telegram_api import TelegramApiServer, WaitTimeout, make_png
from tests.servers.telegram_api_format import parse_html, parse_markdown_v2, u16_slice

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def build_app(tg: TelegramApiServer, **extra: Any) -> Application:
    builder = (
        ApplicationBuilder()
        .token(tg.token)
        .base_url(tg.base_url)
        .base_file_url(tg.base_file_url)
        .get_updates_read_timeout(5)
    )
    if "rate_limiter" in extra:
        builder = builder.rate_limiter(extra["rate_limiter"])
    return builder.build()


@contextlib.asynccontextmanager
async def running(app: Application, *, webhook: dict[str, Any] | None = None) -> AsyncIterator[list[BaseException]]:
    """Run ``app`` (polling, or webhook when given kwargs for start_webhook); yields the list of
    exceptions its handlers raised, which must stay empty."""
    errors: list[BaseException] = []

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error or RuntimeError("unknown handler error"))

    app.add_error_handler(on_error)
    async with asyncio.timeout(10):
        await app.initialize()
        await app.start()
        if webhook is None:
            await app.updater.start_polling(poll_interval=0, timeout=1)
        else:
            await app.updater.start_webhook(**webhook)
    try:
        yield errors
    finally:
        async with asyncio.timeout(10):
            await app.updater.stop()
            await app.stop()
            await app.shutdown()
    assert not errors, errors


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def raw(tg: TelegramApiServer, method: str, *, token: str | None = None, **kwargs: Any) -> tuple[int, dict]:
    """POST to the server without PTB; kwargs go to aiohttp (json=, data=, params=)."""
    url = f"{tg.base_url}{token or tg.token}/{method}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(url, **kwargs) as resp,
    ):
        body = await resp.json()
        assert resp.content_type == "application/json"
        if not body["ok"]:
            assert body["error_code"] == resp.status
        return resp.status, body


# --------------------------------------------------------------------------------------------
# HTTP protocol
# --------------------------------------------------------------------------------------------


async def test_envelope_tokens_methods_and_encodings(tg: TelegramApiServer) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"{tg.base_url}{tg.token}/getMe") as resp:
            body = await resp.json()
        assert resp.status == 200
        assert body["ok"] is True
        assert body["result"]["is_bot"] is True
        assert body["result"]["username"] == "linli_test_bot"
        assert body["result"]["id"] == int(tg.token.split(":")[0])

    status, body = await raw(tg, "GETME")
    assert status == 200 and body["result"]["first_name"]

    status, body = await raw(tg, "getMe", token="123456:" + "x" * 35)
    assert (status, body["description"]) == (401, "Unauthorized")
    status, body = await raw(tg, "getMe", token="not-a-token")
    assert (status, body["description"]) == (404, "Not Found")
    status, body = await raw(tg, "sendDice", json={"chat_id": 1})
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})

    group = tg.create_group("阳光小区3栋群")
    # every encoding PTB or other clients use
    status, body = await raw(tg, "sendMessage", params={"chat_id": str(group.id), "text": "query"})
    assert status == 200 and body["result"]["text"] == "query"
    status, body = await raw(tg, "sendMessage", data={"chat_id": str(group.id), "text": "form"})
    assert status == 200 and body["result"]["chat"] == {"id": group.id, "type": "supergroup", "title": "阳光小区3栋群"}
    form = aiohttp.FormData()
    form.add_field("chat_id", str(group.id))
    form.add_field("text", "multipart")
    status, body = await raw(tg, "sendMessage", data=form)
    assert status == 200 and body["result"]["text"] == "multipart"
    markup = {"inline_keyboard": [[{"text": "接单", "callback_data": "take:1"}]]}
    status, body = await raw(tg, "sendMessage", json={"chat_id": group.id, "text": "json", "reply_markup": markup})
    assert status == 200 and body["result"]["reply_markup"] == markup
    assert isinstance(body["result"]["date"], int) and abs(body["result"]["date"] - time.time()) < 5
    assert body["result"]["from"]["is_bot"] is True

    # strict parameter checks
    cases = [
        ({"text": "x"}, "Bad Request: chat_id is empty"),
        ({"chat_id": 42, "text": "x"}, "Bad Request: chat not found"),
        ({"chat_id": group.id}, "Bad Request: message text is empty"),
        ({"chat_id": group.id, "text": "   "}, "Bad Request: message text is empty"),
        ({"chat_id": group.id, "text": "x", "reply_markup": "{nope"}, "Bad Request: can't parse reply keyboard"),
        ({"chat_id": group.id, "text": "x", "entities": "[1"}, "Bad Request: can't parse entities JSON object"),
        ({"chat_id": group.id, "text": "<b>x", "parse_mode": "HTML"}, "Bad Request: can't parse entities: Can't"),
        ({"chat_id": group.id, "text": "x", "parse_mode": "BBCode"}, "Bad Request: unsupported parse_mode"),
        ({"chat_id": group.id, "text": "x" * 4097}, "Bad Request: message is too long"),
        ({"chat_id": group.id, "text": "x", "reply_to_message_id": 999}, "Bad Request: message to be replied"),
        (
            {"chat_id": group.id, "text": "x", "reply_parameters": json.dumps({"message_id": 1, "quote": "zzz"})},
            "Bad Request: QUOTE_TEXT_INVALID",
        ),
        ({"chat_id": group.id, "text": "x", "message_thread_id": 5}, "Bad Request: message thread not found"),
        (
            {"chat_id": group.id, "text": "x", "reply_markup": json.dumps({"inline_keyboard": [[{"text": "a"}]]})},
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed",
        ),
        (
            {
                "chat_id": group.id,
                "text": "x",
                "reply_markup": json.dumps({"inline_keyboard": [[{"text": "a", "callback_data": "x" * 65}]]}),
            },
            "Bad Request: BUTTON_DATA_INVALID",
        ),
    ]
    for data, description in cases:
        status, body = await raw(tg, "sendMessage", data={k: str(v) for k, v in data.items()})
        assert status == 400, (data, body)
        assert body["description"].startswith(description), (data, body)

    failed = [c for c in tg.calls_to("sendMessage") if not c.ok]
    assert len(failed) == len(cases)
    assert tg.calls_to("sendMessage")[3].params["reply_markup"] == markup  # JSON fields logged decoded


async def test_reset_gives_a_clean_world(tg: TelegramApiServer) -> None:
    old_token = tg.token
    user = tg.create_user("王阿姨")
    tg.user_starts_bot(user)
    assert len(tg.pending_updates) == 1
    tg.reset()
    assert tg.token != old_token
    assert tg.pending_updates == [] and tg.calls == []
    status, body = await raw(tg, "getMe", token=old_token)
    assert (status, body["description"]) == (401, "Unauthorized")
    with pytest.raises(ValueError, match="another test"):
        tg.user_says(user, user, "hello?")


# --------------------------------------------------------------------------------------------
# getUpdates
# --------------------------------------------------------------------------------------------


async def test_long_polling_offsets_conflicts_and_redelivery(tg: TelegramApiServer) -> None:
    user = tg.create_user("李师傅", username="li_shifu")
    started = time.monotonic()
    status, body = await raw(tg, "getUpdates", data={"timeout": "1"})
    assert status == 200 and body["result"] == []
    assert 0.9 < time.monotonic() - started < 3

    # a held request returns as soon as an update arrives
    poll = asyncio.create_task(raw(tg, "getUpdates", data={"timeout": "5"}))
    await asyncio.sleep(0.2)
    tg.user_starts_bot(user)
    status, body = await asyncio.wait_for(poll, 3)
    [update] = body["result"]
    assert update["message"]["text"] == "/start"
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    first_id = update["update_id"]

    # not confirmed yet → comes again; offset confirms
    status, body = await raw(tg, "getUpdates", json={"offset": 0})
    assert [u["update_id"] for u in body["result"]] == [first_id]
    tg.user_says(user, user, "水管漏水了")
    status, body = await raw(tg, "getUpdates", json={"offset": first_id + 1, "limit": 10})
    assert [u["update_id"] for u in body["result"]] == [first_id + 1]
    status, body = await raw(tg, "getUpdates", json={"offset": first_id + 2, "timeout": 0})
    assert body["result"] == []

    # a second poller terminates the first one, like Telegram
    first = asyncio.create_task(raw(tg, "getUpdates", json={"offset": first_id + 2, "timeout": 5}))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(raw(tg, "getUpdates", json={"offset": first_id + 2, "timeout": 1}))
    status, body = await asyncio.wait_for(first, 3)
    assert status == 409 and body["description"].startswith("Conflict: terminated by other getUpdates request")
    await asyncio.wait_for(second, 3)

    # redelivery hands the same update out again, first
    tg.redeliver(first_id + 1)
    status, body = await raw(tg, "getUpdates", json={"offset": first_id + 2})
    assert [u["update_id"] for u in body["result"]] == [first_id + 1]
    assert body["result"][0]["message"]["text"] == "水管漏水了"

    status, body = await raw(tg, "getUpdates", json={"allowed_updates": "not json"})
    assert status == 400


async def test_privacy_mode_decides_what_the_bot_sees_in_groups(tg: TelegramApiServer) -> None:
    wang = tg.create_user("王阿姨", username="wang_ayi")
    group = tg.create_group("阳光小区3栋群", members=[wang])
    tg.user_says(wang, group, "楼道灯坏了")
    tg.user_says(wang, group, "/report@other_bot 楼道灯")
    assert tg.pending_updates == []
    cmd = tg.user_says(wang, group, "/report 楼道灯坏了")
    mention = tg.user_says(wang, group, "@linli_test_bot 楼道灯坏了")
    async with Bot(**tg.bot_kwargs()) as bot:
        bot_msg = await bot.send_message(group.id, "收到")
    reply = tg.user_says(wang, group, "谢谢", reply_to=bot_msg.message_id)
    assert [u["message"]["message_id"] for u in tg.pending_updates] == [
        cmd["message_id"],
        mention["message_id"],
        reply["message_id"],
    ]
    assert reply["reply_to_message"]["text"] == "收到"
    tg.privacy_mode = False
    plain = tg.user_says(wang, group, "电梯也坏了")
    assert tg.pending_updates[-1]["message"]["message_id"] == plain["message_id"]


def test_entities_use_utf16_offsets_and_parse_in_ptb(tg: TelegramApiServer) -> None:
    wang = tg.create_user("王阿姨", username="wang_ayi")
    group = tg.create_group("阳光小区3栋群", members=[wang], bot_admin=True)
    text = "👋🏻 /report@linli_test_bot 3栋 @wang_ayi #漏水 https://example.org/a, mail a.b@example.com"
    data = tg.user_says(wang, group, text)
    message = Message.de_json(data, None)
    found = {e.type: value for e, value in message.parse_entities().items()}
    assert found == {
        "bot_command": "/report@linli_test_bot",
        "mention": "@wang_ayi",
        "hashtag": "#漏水",
        "url": "https://example.org/a",
        "email": "a.b@example.com",
    }
    command = next(e for e in data["entities"] if e["type"] == "bot_command")
    assert command["offset"] == 5  # 👋🏻 is four UTF-16 code units, then a space
    assert u16_slice(text, command["offset"], command["length"]) == "/report@linli_test_bot"
    # no mention inside words, like Telegram
    assert "entities" not in tg.user_says(wang, group, "请联系me@home或者x@y")


def test_html_and_markdown_v2_parsing() -> None:
    assert parse_html("🏟 🏟<i>🏟 &lt🏟</i>") == ("🏟 🏟🏟 <🏟", [{"type": "italic", "offset": 5, "length": 6}])
    text, ents = parse_html(
        '<b>工单 <a href="https://t.me/x">#12</a></b> <pre><code class="language-py">x=1</code></pre>'
    )
    assert text == "工单 #12 x=1"
    assert ents == [
        {"type": "bold", "offset": 0, "length": 6},
        {"type": "text_link", "offset": 3, "length": 3, "url": "https://t.me/x"},
        {"type": "pre", "offset": 7, "length": 3, "language": "py"},
    ]
    assert parse_html("<a href=telegram.org> </a>")[1][0]["url"] == "http://telegram.org/"
    assert parse_html("&ge;&amp;&quot;")[0] == '&ge;&"'
    errors = {
        "🏟 🏟&lt;<abac>": 'Unsupported start tag "abac" at byte offset 13',
        "🏟 🏟&lt;<i>a</em   >": 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"',
        "🏟 🏟&lt;</": "Unexpected end tag at byte offset 13",
        "🏟 🏟&lt;<i>a</i   ": "Unclosed end tag at byte offset 17",
        "🏟 🏟&lt;<i    aba>": 'Can\'t find end tag corresponding to start tag "i"',
        "🏟 🏟&lt;<i   =aba>": 'Empty attribute name in the tag "i" at byte offset 13',
        '<span class="x">a</span>': 'Tag "span" must have class "tg-spoiler"',
    }
    for markup, error in errors.items():
        with pytest.raises(Exception, match="can't parse entities") as info:
            parse_html(markup)
        assert error in str(info.value), (markup, str(info.value))

    assert parse_markdown_v2(r"*粗体* _斜体_ __下划线__ \. [链接](https://t.me/x)")[1] == [
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "italic", "offset": 3, "length": 2},
        {"type": "underline", "offset": 6, "length": 3},
        {"type": "text_link", "offset": 12, "length": 2, "url": "https://t.me/x"},
    ]
    with pytest.raises(Exception, match=r"Character '\.' is reserved"):
        parse_markdown_v2("工单 1.")
    with pytest.raises(Exception, match="Can't find end of Bold entity at byte offset 0"):
        parse_markdown_v2("*open")


# --------------------------------------------------------------------------------------------
# real PTB applications
# --------------------------------------------------------------------------------------------


async def test_polling_echo_bot_with_commands_and_messages(tg: TelegramApiServer) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = " ".join(context.args or [])
        await update.effective_message.reply_text(f"你好 {update.effective_user.first_name} {args}".strip())

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_html(
            f"<b>收到</b>: {update.effective_message.text}",
            reply_parameters=ReplyParameters(update.effective_message.message_id),
        )

    app = build_app(tg)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    wang = tg.create_user("王阿姨", username="wang_ayi")
    group = tg.create_group("阳光小区3栋群", members=[wang], bot_admin=True)

    async with running(app):
        tg.user_starts_bot(wang, payload="invite42")
        reply = await tg.wait_for_bot_message(wang, "你好", timeout=5)
        assert reply.text == "你好 王阿姨 invite42"

        said = tg.user_says(wang, group, "3栋电梯坏了")
        echoed = await tg.wait_for_bot_message(group, "收到", timeout=5)
        assert echoed.text == "收到: 3栋电梯坏了"
        assert echoed.entities == [{"type": "bold", "offset": 0, "length": 2}]
        assert echoed.reply_to_message_id == said["message_id"]

        # a command addressed to the bot by name in a group
        tg.user_says(wang, group, "/start@linli_test_bot")
        await tg.wait_for_bot_message(group, "你好 王阿姨", timeout=5)

    assert tg.pending_updates == []  # PTB's final getUpdates confirmed everything
    with pytest.raises(WaitTimeout, match="no bot message containing"):
        await tg.wait_for_bot_message(group, "never", timeout=0.1)


async def test_inline_button_press_is_answered_and_message_edited(tg: TelegramApiServer) -> None:
    async def new_order(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("接单", callback_data="take:7"), InlineKeyboardButton("详情", url="https://t.me/x")]]
        )
        await update.effective_message.reply_text("工单 #7: 楼道灯坏了", reply_markup=keyboard)

    async def take(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query.message is not None and query.chat_instance
        await query.answer(f"已接单 {query.data}", show_alert=True)
        await query.edit_message_text(f"工单 #7 已由 {query.from_user.first_name} 接单")

    app = build_app(tg)
    app.add_handler(CommandHandler("order", new_order))
    app.add_handler(CallbackQueryHandler(take, pattern=r"^take:"))
    li = tg.create_user("李师傅")
    group = tg.create_group("阳光小区3栋群", members=[li])

    async with running(app):
        tg.user_says(li, group, "/order")
        order = await tg.wait_for_bot_message(group, "工单 #7", timeout=5)
        assert order.button_texts == ["接单", "详情"]
        with pytest.raises(ValueError, match="doesn't send a callback query"):
            tg.user_presses(li, order, "详情")
        query_id = tg.user_presses(li, order, "接单")
        answer = await tg.wait_for_callback_answer(query_id, timeout=5)
        assert (answer.text, answer.show_alert, answer.data, answer.user_id) == ("已接单 take:7", True, "take:7", li.id)
        edited = await tg.wait_for_edit(order, "已由 李师傅 接单", timeout=5)
        assert edited.reply_markup is None  # editMessageText without reply_markup drops the keyboard
        assert edited.history[0]["text"] == "工单 #7: 楼道灯坏了"
        assert edited.raw["edit_date"] >= edited.raw["date"]

    async with Bot(**tg.bot_kwargs()) as bot:
        with pytest.raises(BadRequest, match=r"(?i)query is too old and response timeout expired"):
            await bot.answer_callback_query(query_id, text="again")
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query("12345")
    assert len(tg.callback_answers) == 1


async def test_edits_not_modified_not_found_and_deletes(tg: TelegramApiServer) -> None:
    wang = tg.create_user("王阿姨")
    group = tg.create_group("阳光小区3栋群", members=[wang])
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("好评", callback_data="rate:5")]])
    async with Bot(**tg.bot_kwargs()) as bot:
        sent = await bot.send_message(group.id, "请评价", reply_markup=keyboard)
        with pytest.raises(BadRequest, match="Message is not modified") as info:
            await bot.edit_message_text("请评价", chat_id=group.id, message_id=sent.message_id, reply_markup=keyboard)
        assert "specified new message content and reply markup are exactly the same" in info.value.message
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_reply_markup(group.id, sent.message_id, reply_markup=keyboard)
        edited = await bot.edit_message_text(
            "请评价 (已提醒)", chat_id=group.id, message_id=sent.message_id, reply_markup=keyboard
        )
        assert isinstance(edited, Message) and edited.edit_date is not None
        cleared = await bot.edit_message_reply_markup(group.id, sent.message_id)
        assert cleared.reply_markup is None
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", chat_id=group.id, message_id=999)
        theirs = tg.user_says(wang, group, "/rate")
        with pytest.raises(BadRequest, match="Message can't be edited"):
            await bot.edit_message_text("x", chat_id=group.id, message_id=theirs["message_id"])
        with pytest.raises(BadRequest, match="Message can't be deleted"):
            await bot.delete_message(group.id, theirs["message_id"])
        assert await bot.delete_message(group.id, sent.message_id) is True
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(group.id, sent.message_id)

    [msg] = tg.bot_messages(group, include_deleted=True)
    assert msg.deleted and len(msg.history) == 2
    assert tg.bot_messages(group) == []


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter.retry_after in PTB
async def test_flood_429_is_retried_by_aioratelimiter(tg: TelegramApiServer) -> None:
    group = tg.create_group("阳光小区3栋群")
    tg.flood("sendMessage", times=1, retry_after=1)
    async with Bot(**tg.bot_kwargs()) as plain:
        with pytest.raises(RetryAfter) as info:
            await plain.send_message(group.id, "plain")
    assert "Retry in 1 seconds" in str(info.value)
    status, body = await raw(tg, "sendMessage", json={"chat_id": group.id, "text": "raw"})
    assert status == 200  # the flood is over

    tg.flood("sendMessage", times=1, retry_after=1)
    limiter = AIORateLimiter(max_retries=2, group_max_rate=0, overall_max_rate=0)
    bot = ExtBot(**tg.bot_kwargs(), rate_limiter=limiter)
    async with bot:
        started = time.monotonic()
        sent = await bot.send_message(group.id, "限流后重试成功")
        assert time.monotonic() - started >= 1.0
    assert sent.text == "限流后重试成功"
    statuses = [c.status for c in tg.calls_to("sendMessage")]
    assert statuses == [429, 200, 429, 200]
    flooded = tg.calls_to("sendMessage")[2]
    assert flooded.error == "Too Many Requests: retry after 1"

    status, body = await raw(tg, "getMe")
    tg.flood("getMe", times=1, retry_after=3)
    status, body = await raw(tg, "getMe")
    assert (status, body["parameters"]) == (429, {"retry_after": 3})


async def test_photo_round_trip_with_get_file(tg: TelegramApiServer) -> None:
    picture = make_png(640, 480, (10, 120, 200))

    async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        largest = msg.photo[-1]
        file = await context.bot.get_file(largest.file_id)
        data = await file.download_as_bytearray()
        await msg.reply_text(f"照片 {largest.width}x{largest.height} {len(data)}B 备注:{msg.caption}")
        await msg.reply_photo(bytes(data), caption="回执")

    app = build_app(tg)
    app.add_handler(MessageHandler(filters.PHOTO, on_photo))
    wang = tg.create_user("王阿姨")
    group = tg.create_group("阳光小区3栋群", members=[wang], bot_admin=True)
    async with running(app):
        sent = tg.user_sends_photo(wang, group, picture, caption="漏水位置")
        sizes = sent["photo"]
        assert [(s["width"], s["height"]) for s in sizes] == [(90, 68), (320, 240), (640, 480)]
        assert len({s["file_unique_id"] for s in sizes}) == 3
        note = await tg.wait_for_bot_message(group, "照片 640x480", timeout=5)
        assert note.text.endswith("备注:漏水位置")
        receipt = await tg.wait_for_bot_message(group, "回执", timeout=5)
        assert receipt.photo is not None and receipt.photo[-1]["width"] == 640

    async with Bot(**tg.bot_kwargs()) as bot:
        uploaded = await bot.send_photo(group.id, InputFile(picture, filename="p.png"), caption="<b>附件</b>",
                                        parse_mode=ParseMode.HTML)  # fmt: skip
        assert uploaded.caption == "附件" and uploaded.caption_entities[0].type == "bold"
        again = await bot.send_photo(group.id, uploaded.photo[-1].file_id)
        assert again.photo[-1].file_unique_id == uploaded.photo[-1].file_unique_id
        file = await bot.get_file(again.photo[0].file_id)
        assert file.file_path.startswith(f"{tg.base_file_url}{tg.token}/photos/")
        thumb = await file.download_as_bytearray()
        assert bytes(thumb[:2]) == b"\xff\xd8"  # Telegram re-encodes photos as JPEG
        with pytest.raises(BadRequest, match="Image_process_failed"):
            await bot.send_photo(group.id, InputFile(b"not an image", filename="x.png"))
        with pytest.raises(BadRequest, match="Wrong file identifier/http url specified"):
            await bot.send_photo(group.id, "AgACAgUAAxkBAAIbogus")
        with pytest.raises(BadRequest, match="Invalid file_id"):
            await bot.get_file("nope")
        doc = await bot.send_document(group.id, InputFile(b"a,b\n1,2\n", filename="orders.csv"))
        assert (doc.document.file_name, doc.document.mime_type) == ("orders.csv", "text/csv")
        assert bytes(await (await bot.get_file(doc.document.file_id)).download_as_bytearray()) == b"a,b\n1,2\n"
    async with aiohttp.ClientSession() as session, session.get(f"{tg.base_file_url}{tg.token}/photos/nope.jpg") as r:
        assert r.status == 404


async def test_webhook_delivery_with_secret_token(tg: TelegramApiServer) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text("webhook 你好")

    app = build_app(tg)
    app.add_handler(CommandHandler("start", start))
    wang = tg.create_user("王阿姨")
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/tg-hook"
    webhook = {
        "listen": "127.0.0.1",
        "port": port,
        "url_path": "tg-hook",
        "webhook_url": hook_url,
        "secret_token": "s3cret_T0ken",
        "drop_pending_updates": True,
    }
    async with running(app, webhook=webhook):
        assert tg.webhook == {"url": hook_url, "secret_token": "s3cret_T0ken", "max_connections": 40}
        tg.user_starts_bot(wang)
        await tg.wait_for_bot_message(wang, "webhook 你好", timeout=5)
        assert tg.webhook_deliveries[-1]["status"] == 200

        status, body = await raw(tg, "getUpdates")
        assert status == 409 and "can't use getUpdates method while webhook is active" in body["description"]
        async with Bot(**tg.bot_kwargs()) as bot:
            with pytest.raises(Conflict):
                await bot.get_updates()

            # a wrong secret: PTB's webhook refuses the POST, Telegram keeps the update and retries
            assert await bot.set_webhook(hook_url, secret_token="wrong_secret")
            tg.user_says(wang, wang, "/start")
            await tg.wait_until(lambda: any(d["status"] == 403 for d in tg.webhook_deliveries), timeout=5)
            info = await bot.get_webhook_info()
            assert info.pending_update_count == 1
            assert info.last_error_message.startswith("Wrong response from the webhook: 403")
            assert await bot.set_webhook(hook_url, secret_token="s3cret_T0ken")
            await tg.wait_until(lambda: len(tg.bot_messages(wang)) == 2, timeout=5)
            assert (await bot.get_webhook_info()).pending_update_count == 0

            with pytest.raises(BadRequest, match=r"(?i)bad webhook"):
                await bot.set_webhook("http://example.org/hook")

    # PTB leaves the webhook set on stop, as with the real Telegram
    assert tg.webhook is not None


async def test_private_chats_need_start_and_respect_blocks(tg: TelegramApiServer) -> None:
    zhang = tg.create_user("张先生", username="zhang_xs")
    async with Bot(**tg.bot_kwargs()) as bot:
        with pytest.raises(Forbidden, match="bot can't initiate conversation with a user"):
            await bot.send_message(zhang.id, "您的工单已完成")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(123, "nobody")
        tg.user_starts_bot(zhang)
        sent = await bot.send_message(zhang.id, "您的工单已完成")
        assert sent.chat.type == "private" and sent.chat.first_name == "张先生"
        tg.user_blocks_bot(zhang)
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(zhang.id, "还在吗")
        other_bot = tg.create_user("OtherBot", is_bot=True, username="other_bot")
        with pytest.raises(Forbidden, match="bot can't send messages to bots"):
            await bot.send_message(other_bot.id, "hi")
    kinds = [next(k for k in u if k != "update_id") for u in tg.updates]
    assert kinds == ["message", "my_chat_member"]


async def test_commands_chat_info_actions_and_leaving(tg: TelegramApiServer) -> None:
    wang = tg.create_user("王阿姨", username="wang_ayi")
    li = tg.create_user("李师傅")
    group = tg.create_group("阳光小区3栋群", members=[li], creator=wang, bot_admin=True)
    async with Bot(**tg.bot_kwargs()) as bot:
        assert await bot.set_my_commands([BotCommand("order", "报修点单"), BotCommand("rate", "评价")])
        zh = [BotCommand("order", "报修")]
        assert await bot.set_my_commands(zh, scope=BotCommandScopeAllGroupChats(), language_code="zh")
        assert await bot.set_my_commands([BotCommand("admin", "管理")], scope=BotCommandScopeChat(group.id))
        assert [c.command for c in await bot.get_my_commands()] == ["order", "rate"]
        assert await bot.get_my_commands(scope=BotCommandScopeAllGroupChats(), language_code="zh") == tuple(zh)
        assert await bot.get_my_commands(scope=BotCommandScopeAllGroupChats()) == ()
        assert tg.commands({"type": "chat", "chat_id": group.id}) == [{"command": "admin", "description": "管理"}]
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([BotCommand("Order", "x")])

        chat = await bot.get_chat(group.id)
        assert (chat.id, chat.type, chat.title) == (group.id, "supergroup", "阳光小区3栋群")
        assert (await bot.get_chat_member(group.id, wang.id)).status == "creator"
        assert (await bot.get_chat_member(group.id, li.id)).status == "member"
        assert (await bot.get_chat_member(group.id, tg.bot.id)).status == "administrator"
        admins = await bot.get_chat_administrators(group.id)
        assert {a.user.id for a in admins} == {wang.id, tg.bot.id}
        assert await bot.get_chat_member_count(group.id) == 3
        assert await bot.send_chat_action(group.id, ChatAction.TYPING)
        assert tg.chat_actions[-1]["action"] == "typing"
        with pytest.raises(BadRequest):
            await bot.send_chat_action(group.id, "dancing")
        reacted = await bot.send_message(group.id, "已派单")
        assert await bot.set_message_reaction(group.id, reacted.message_id, "👍")
        assert tg.bot_messages(group)[-1].reactions == [{"type": "emoji", "emoji": "👍"}]

        assert await bot.leave_chat(group.id)
        with pytest.raises(Forbidden, match="bot is not a member of the supergroup chat"):
            await bot.send_message(group.id, "还在吗")
        with pytest.raises(EndPointNotFound), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PTB suggests Bot.send_dice
            await bot.do_api_request("sendDice", api_kwargs={"chat_id": group.id})
        with pytest.raises(InvalidToken):
            async with Bot("123:" + "x" * 35, base_url=tg.base_url):
                pass  # initialize() calls getMe
    assert tg.calls_to("sendDice")[0].status == 404
