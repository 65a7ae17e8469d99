"""A strict local Telegram Bot API server for tests, plus pytest fixtures.

The real python-telegram-bot stack talks HTTP to it (``base_url=server.base_url``,
``base_file_url=server.base_file_url``); simulated people act through the Python methods of
:class:`TelegramApiServer` (``user_says``, ``user_presses``, ...), and tests inspect what the bot
did (``bot_messages``, ``calls``, ``callback_answers``, ``wait_for_bot_message``).

The server runs on its own thread with its own event loop, so it serves requests whatever
event loop (session- or function-scoped) the test and the bot under test run on. Every
Python-side method is thread-safe and cheap, so sync and async tests can call them directly.

Deliberate differences from api.telegram.org:
* webhooks may use plain ``http://`` and any port, but only on 127.0.0.1 / localhost / ::1
  (Telegram itself requires https on ports 443/80/88/8443 and refuses loopback addresses);
* ``sendPhoto``/``sendDocument`` with an HTTP URL are refused (nothing is fetched);
* inline mode, payments, forum topics, media groups and business connections are absent:
  such methods answer 404 ``Not Found`` so missing coverage shows.

Usage::

    async def test_report(tg):                      # tg = fresh world; telegram_server = session
        app = (ApplicationBuilder().token(tg.token).base_url(tg.base_url)
               .base_file_url(tg.base_file_url).build())
        wang = tg.create_user("王阿姨", username="wang_ayi")
        group = tg.create_group("阳光小区3栋群", members=[wang], bot_admin=True)
        ... start app (polling or updater.start_webhook) ...
        tg.user_says(wang, group, "3栋电梯坏了")
        msg = await tg.wait_for_bot_message(group, "已登记", timeout=5)
        tg.user_presses(wang, msg, "接单")

Privacy mode is on by default, as for a new Telegram bot: in a group where the bot isn't an
admin it only gets /commands, @mentions of it, replies to it and service messages. Use
``bot_admin=True`` or ``tg.privacy_mode = False`` for a bot that reads every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import mimetypes
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.servers.telegram_api_format import (
    ApiError,
    bad_request,
    find_auto_entities,
    forbidden,
    format_text,
    loads_json_field,
    merge_auto_entities,
    validate_entities,
    validate_reply_markup,
)
from tests.servers.telegram_api_world import (
    ApiCall,
    BotMessage,
    CallbackAnswer,
    CallbackQuery,
    Chat,
    FileRecord,
    Member,
    MessageRecord,
    User,
    image_size,
    make_png,
    photo_variants,
)

__all__ = [
    "ApiCall",
    "ApiError",
    "BotMessage",
    "CallbackAnswer",
    "Chat",
    "TelegramApiServer",
    "User",
    "WaitTimeout",
    "make_png",
    "telegram_server",
    "tg",
]

TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{30,}$")
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "commands",
        "allowed_updates",
        "scope",
        "reply_parameters",
        "link_preview_options",
        "reaction",
    }
)
ALL_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
DEFAULT_UPDATE_TYPES = ALL_UPDATE_TYPES - {"chat_member", "message_reaction", "message_reaction_count"}
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
SCOPE_TYPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class WaitTimeout(AssertionError):
    """A ``wait_for_*`` helper ran out of time; the message says what was there instead."""


@dataclass
class Upload:
    filename: str | None
    content_type: str | None
    data: bytes


class _Described:
    """A successful result that also carries Telegram's ``description`` (setWebhook & co)."""

    def __init__(self, result: Any, description: str):
        self.result = result
        self.description = description


_counter_lock = threading.Lock()
_counters = {"bot": 8_000_000_000, "user": 700_000_000, "supergroup": 1_000_000_000_000, "group": 400_000_000}


def _next_id(kind: str) -> int:
    with _counter_lock:
        _counters[kind] += 1
        return _counters[kind]


class Params:
    """Request parameters (query string, form fields or JSON body), read strictly."""

    def __init__(self, data: dict[str, Any], files: dict[str, Upload]):
        self.data = data
        self.files = files

    def has(self, name: str) -> bool:
        value = self.data.get(name)
        return (value is not None and value != "") or name in self.files

    def str(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool | dict | list):
            raise bad_request(f'field "{name}" must be of type String')
        return str(value)

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise bad_request(f'field "{name}" must be of type Integer')
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad_request(f"invalid {name} specified") from None

    def float(self, name: str, default: float = 0.0) -> float:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def bool(self, name: str) -> bool:
        value = self.data.get(name)
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        lowered = str(value).strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise bad_request(f"invalid {name} specified: expected a Boolean")

    def json(self, name: str) -> Any:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        return loads_json_field(value, name)


class World:
    """Everything one bot token sees. ``TelegramApiServer.reset()`` swaps in a fresh one."""

    def __init__(self, *, username: str, first_name: str, privacy_mode: bool):
        bot_id = _next_id("bot")
        self.token = f"{bot_id}:AA{secrets.token_urlsafe(32)[:33]}"
        self.bot = User(bot_id, first_name, username=username, is_bot=True)
        self.privacy_mode = privacy_mode
        self.users: dict[int, User] = {bot_id: self.bot}
        self.chats: dict[int, Chat] = {}
        self.messages: dict[int, dict[int, MessageRecord]] = {}
        self.next_message_id: dict[int, int] = {}
        self.next_update_id = secrets.randbelow(400_000_000) + 100_000_000
        self.pending: list[dict[str, Any]] = []
        self.forced: list[dict[str, Any]] = []
        self.updates_by_id: dict[int, dict[str, Any]] = {}
        self.all_updates: list[dict[str, Any]] = []
        self.allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self.webhook: dict[str, Any] | None = None
        self.webhook_last_error: tuple[int, str] | None = None
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.webhook_task: asyncio.Task[None] | None = None
        self.callback_queries: dict[str, CallbackQuery] = {}
        self.callback_answers: list[CallbackAnswer] = []
        self.calls: list[ApiCall] = []
        self.flood: dict[str, list[int]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.files: dict[str, FileRecord] = {}
        self.files_by_path: dict[str, FileRecord] = {}
        self.photo_groups: dict[str, list[FileRecord]] = {}
        self.chat_actions: list[dict[str, Any]] = []
        self.poll_generation = 0
        self.file_counter = 0


class TelegramApiServer:
    """Strict fake of ``https://api.telegram.org`` on 127.0.0.1 (see module docstring)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port = 0
        self.callback_query_timeout = 15.0  # seconds a button press may stay unanswered
        self.webhook_retry_delay = 0.2  # seconds between failed webhook deliveries
        self.webhook_timeout = 5.0
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._wake_event: asyncio.Event | None = None
        self._closing = False
        self._world = World(username="linli_test_bot", first_name="Linli Bot", privacy_mode=True)

    # ----------------------------------------------------------------------------------------
    # lifecycle
    # ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the HTTP server on a free port of 127.0.0.1 (own thread + event loop)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # pragma: no cover - startup failure is reported below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._astop())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-telegram-bot-api", daemon=True)
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("fake Telegram Bot API server did not start in 15 s")
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    async def _astart(self) -> None:
        self._wake_event = asyncio.Event()
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _astop(self) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)`` / ``Bot(base_url=...)``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def bot_kwargs(self) -> dict[str, str]:
        """``telegram.Bot(**server.bot_kwargs())``."""
        return {"token": self.token, "base_url": self.base_url, "base_file_url": self.base_file_url}

    def reset(
        self,
        *,
        bot_username: str = "linli_test_bot",
        bot_name: str = "Linli Bot",
        privacy_mode: bool = True,
    ) -> None:
        """Fresh world: new bot token (old one answers 401), no chats, updates or logs.

        ``privacy_mode`` is Telegram's default for bots: in groups where the bot is not an admin
        it only receives /commands, @mentions of it, replies to its messages and service messages.
        """
        with self._lock:
            old = self._world
            self._world = World(username=bot_username, first_name=bot_name, privacy_mode=privacy_mode)
            old.webhook = None
        self._wake()

    # ----------------------------------------------------------------------------------------
    # properties for tests
    # ----------------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self._world.token

    @property
    def bot(self) -> User:
        return self._world.bot

    @property
    def privacy_mode(self) -> bool:
        return self._world.privacy_mode

    @privacy_mode.setter
    def privacy_mode(self, value: bool) -> None:
        with self._lock:
            self._world.privacy_mode = value

    @property
    def calls(self) -> list[ApiCall]:
        """Every API call of the current bot token, in order (getUpdates included)."""
        with self._lock:
            return list(self._world.calls)

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    @property
    def callback_answers(self) -> list[CallbackAnswer]:
        with self._lock:
            return list(self._world.callback_answers)

    def callback_answer(self, callback_query_id: str) -> CallbackAnswer | None:
        with self._lock:
            for answer in self._world.callback_answers:
                if answer.callback_query_id == callback_query_id:
                    return answer
        return None

    @property
    def chat_actions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._world.chat_actions)

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Every update produced so far (delivered or not)."""
        with self._lock:
            return copy.deepcopy(self._world.all_updates)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed (polling) / not yet accepted by the webhook."""
        with self._lock:
            return copy.deepcopy(self._world.pending)

    @property
    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """One entry per webhook POST: update_id, status (None = connection error), error."""
        with self._lock:
            return list(self._world.webhook_deliveries)

    @property
    def webhook(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._world.webhook) if self._world.webhook else None

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, str]]:
        """Commands the bot registered with setMyCommands for that scope/language."""
        with self._lock:
            key = (self._scope_key(self._world, scope or {"type": "default"}), language_code)
            return copy.deepcopy(self._world.commands.get(key, []))

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._world.files[file_id].content

    def flood(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer 429 Too Many Requests."""
        with self._lock:
            self._world.flood[method.lower()] = [times, retry_after]

    # ----------------------------------------------------------------------------------------
    # world building
    # ----------------------------------------------------------------------------------------

    def create_user(
        self,
        first_name: str,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "zh-hans",
        is_bot: bool = False,
    ) -> User:
        with self._lock:
            user = User(_next_id("user"), first_name, last_name, username, language_code, is_bot)
            self._world.users[user.id] = user
            return user

    def create_group(
        self,
        title: str,
        *,
        supergroup: bool = True,
        username: str | None = None,
        members: tuple[User, ...] | list[User] = (),
        admins: tuple[User, ...] | list[User] = (),
        creator: User | None = None,
        bot_member: bool = True,
        bot_admin: bool = False,
    ) -> Chat:
        """A group the bot is already in (silently: no updates). Supergroup unless told."""
        with self._lock:
            chat_id = -_next_id("supergroup" if supergroup else "group")
            chat = Chat(
                chat_id,
                "supergroup" if supergroup else "group",
                title=title,
                username=username,
                chat_instance=str(secrets.randbits(63) - 2**62),
            )
            w = self._world
            w.chats[chat_id] = chat
            w.messages[chat_id] = {}
            if creator is not None:
                chat.members[creator.id] = Member(creator, "creator")
            for user in admins:
                chat.members[user.id] = Member(user, "administrator")
            for user in members:
                chat.members.setdefault(user.id, Member(user, "member"))
            if bot_member or bot_admin:
                chat.members[w.bot.id] = Member(w.bot, "administrator" if bot_admin else "member")
            return chat

    def add_member(
        self, chat: Chat, user: User, *, admin: bool = False, creator: bool = False, announce: bool = False
    ) -> dict[str, Any] | None:
        """Put ``user`` in ``chat``. ``announce=True`` also emits the new_chat_members service
        message (and a chat_member update); returns that message."""
        with self._lock:
            w = self._world
            chat = self._chat(chat)
            old = chat.members.get(user.id)
            status = "creator" if creator else "administrator" if admin else "member"
            chat.members[user.id] = Member(user, status)
            if not announce:
                return None
            msg = self._store_user_message(w, chat, user, {"new_chat_members": [user.api()]})
            self._emit_message(w, chat, msg, service=True)
            self._enqueue(w, "chat_member", self._member_update(chat, user, old, chat.members[user.id]))
            return copy.deepcopy(msg.data)

    def remove_member(self, chat: Chat, user: User, *, announce: bool = False) -> dict[str, Any] | None:
        with self._lock:
            w = self._world
            chat = self._chat(chat)
            old = chat.members.get(user.id)
            chat.members[user.id] = Member(user, "left")
            if not announce:
                return None
            msg = self._store_user_message(w, chat, user, {"left_chat_member": user.api()})
            self._emit_message(w, chat, msg, service=True)
            self._enqueue(w, "chat_member", self._member_update(chat, user, old, chat.members[user.id]))
            return copy.deepcopy(msg.data)

    def set_bot_status(self, chat: Chat, status: str, *, by: User | None = None) -> None:
        """Add/promote/demote/kick the bot ('member', 'administrator', 'left', 'kicked');
        emits the my_chat_member update Telegram sends."""
        if status not in ("member", "administrator", "left", "kicked", "restricted"):
            raise ValueError(f"bad bot status {status!r}")
        with self._lock:
            w = self._world
            chat = self._chat(chat)
            old = chat.members.get(w.bot.id)
            chat.members[w.bot.id] = Member(w.bot, status)
            actor = by or next((m.user for m in chat.members.values() if m.status == "creator"), None) or w.bot
            update = self._member_update(chat, w.bot, old, chat.members[w.bot.id], actor=actor)
            self._enqueue(w, "my_chat_member", update)

    def private_chat(self, user: User) -> Chat:
        """The private chat between the bot and ``user`` (chat id == user id)."""
        with self._lock:
            return self._private(self._world, user)

    def user_starts_bot(self, user: User, payload: str | None = None) -> dict[str, Any]:
        """The user opens the bot and presses START: sends ``/start [payload]`` privately."""
        with self._lock:
            chat = self._private(self._world, user)
            chat.started = True
            chat.blocked = False
        return self.user_says(user, chat, "/start" + (f" {payload}" if payload else ""))

    def user_blocks_bot(self, user: User) -> None:
        self._set_blocked(user, True)

    def user_unblocks_bot(self, user: User) -> None:
        self._set_blocked(user, False)

    def _set_blocked(self, user: User, blocked: bool) -> None:
        """The user blocks (or unblocks) the bot in their private chat: a my_chat_member update says so."""
        member: dict[str, Any] = {"status": "member"}
        kicked: dict[str, Any] = {"status": "kicked", "until_date": 0}
        with self._lock:
            w = self._world
            chat = self._private(w, user)
            chat.blocked = blocked
            old, new = (member, kicked) if blocked else (kicked, member)
            self._enqueue(
                w,
                "my_chat_member",
                {
                    "chat": chat.api(),
                    "from": user.api(),
                    "date": int(time.time()),
                    "old_chat_member": {**old, "user": w.bot.api()},
                    "new_chat_member": {**new, "user": w.bot.api()},
                },
            )

    def user_says(
        self,
        user: User,
        chat: Chat | User | int,
        text: str,
        *,
        reply_to: BotMessage | dict[str, Any] | int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``user`` sends ``text`` in ``chat`` (a group, or a User for the private chat).

        Entities (/commands, @mentions, #hashtags, URLs, e-mails) are computed from the text with
        UTF-16 offsets as Telegram does; extra ``entities`` (e.g. text_mention) are merged in.
        Returns the Message object. Whether the bot gets an update depends on privacy mode.
        """
        if not text:
            raise ValueError("Telegram clients can't send an empty message")
        with self._lock:
            w = self._world
            chat = self._speaker_chat(w, user, chat)
            found = find_auto_entities(text)
            ents = merge_auto_entities(text, list(entities)) if entities else found
            content: dict[str, Any] = {"text": text}
            if ents:
                content["entities"] = ents
            msg = self._store_user_message(w, chat, user, content, reply_to=reply_to)
            self._emit_message(w, chat, msg)
            return copy.deepcopy(msg.data)

    def user_sends_photo(
        self,
        user: User,
        chat: Chat | User | int,
        photo: bytes | None = None,
        *,
        caption: str | None = None,
        reply_to: BotMessage | dict[str, Any] | int | None = None,
    ) -> dict[str, Any]:
        """``user`` sends a photo (PNG/JPEG bytes; a small PNG by default) with optional caption.
        The message carries the PhotoSize list; each size is downloadable via getFile."""
        data = photo if photo is not None else make_png()
        info = image_size(data)
        if info is None:
            raise ValueError("photo must be PNG, JPEG, GIF or WEBP bytes")
        with self._lock:
            w = self._world
            chat = self._speaker_chat(w, user, chat)
            sizes = self._register_photo(w, data, info[1], info[2])
            content: dict[str, Any] = {"photo": [s.api_photo_size() for s in sizes]}
            if caption:
                content["caption"] = caption
                ents = find_auto_entities(caption)
                if ents:
                    content["caption_entities"] = ents
            msg = self._store_user_message(w, chat, user, content, reply_to=reply_to)
            self._emit_message(w, chat, msg)
            return copy.deepcopy(msg.data)

    def user_edits(self, user: User, message: dict[str, Any], new_text: str) -> dict[str, Any]:
        """``user`` edits one of their text messages → ``edited_message`` update."""
        with self._lock:
            w = self._world
            rec = w.messages[message["chat"]["id"]][message["message_id"]]
            if rec.from_bot or rec.data.get("from", {}).get("id") != user.id:
                raise ValueError("users can only edit their own messages")
            rec.history.append({k: rec.data.get(k) for k in ("text", "entities", "edit_date")})
            rec.data["text"] = new_text
            ents = find_auto_entities(new_text)
            rec.data.pop("entities", None)
            if ents:
                rec.data["entities"] = ents
            rec.data["edit_date"] = int(time.time())
            chat = w.chats[rec.chat_id]
            if self._bot_sees(w, chat, rec.data):
                self._enqueue(w, "edited_message", copy.deepcopy(rec.data))
            return copy.deepcopy(rec.data)

    def user_presses(
        self,
        user: User,
        message: BotMessage | dict[str, Any] | int,
        button: str,
        *,
        chat: Chat | User | int | None = None,
    ) -> str:
        """``user`` taps the inline button whose text (or callback_data) is ``button`` on a bot
        message → callback_query update. Returns the callback query id."""
        with self._lock:
            w = self._world
            rec = self._find_record(w, message, chat)
            if rec is None or rec.deleted:
                raise ValueError(f"no such message {message!r}")
            target = self._chat(rec.chat_id)
            if target.type == "private" and target.id != user.id:
                raise ValueError(f"{user.first_name} can't see {target.user.first_name}'s private chat")
            if target.is_group and not (target.members.get(user.id) and target.members[user.id].present):
                raise ValueError(f"{user.first_name} is not in {target.title}")
            rows = (rec.data.get("reply_markup") or {}).get("inline_keyboard", [])
            buttons = [b for row in rows for b in row]
            chosen = next((b for b in buttons if b["text"] == button), None) or next(
                (b for b in buttons if b.get("callback_data") == button), None
            )
            if chosen is None:
                raise ValueError(f"no button {button!r}; buttons: {[b['text'] for b in buttons]}")
            if "callback_data" not in chosen and "callback_game" not in chosen:
                raise ValueError(f"button {button!r} doesn't send a callback query: {chosen}")
            query = CallbackQuery(
                id=str(secrets.randbits(62) + 2**62),
                user=user,
                chat_id=rec.chat_id,
                message_id=rec.message_id,
                data=chosen.get("callback_data"),
            )
            w.callback_queries[query.id] = query
            payload: dict[str, Any] = {
                "id": query.id,
                "from": user.api(),
                "message": copy.deepcopy(rec.data),
                "chat_instance": target.chat_instance,
            }
            if query.data is not None:
                payload["data"] = query.data
            self._enqueue(w, "callback_query", payload)
            return query.id

    def user_reacts(self, user: User, message: dict[str, Any] | BotMessage, emoji: str) -> None:
        """``user`` puts an emoji reaction (message_reaction update; needs allowed_updates)."""
        with self._lock:
            w = self._world
            rec = self._find_record(w, message, None)
            if rec is None:
                raise ValueError("no such message")
            chat = w.chats[rec.chat_id]
            self._enqueue(
                w,
                "message_reaction",
                {
                    "chat": chat.api(),
                    "message_id": rec.message_id,
                    "user": user.api(),
                    "date": int(time.time()),
                    "old_reaction": [],
                    "new_reaction": [{"type": "emoji", "emoji": emoji}],
                },
            )

    def push_update(self, kind: str, payload: dict[str, Any]) -> int:
        """Enqueue any raw update (``kind`` is its field name); returns its update_id."""
        if kind not in ALL_UPDATE_TYPES:
            raise ValueError(f"unknown update type {kind!r}")
        with self._lock:
            return self._enqueue(self._world, kind, payload)["update_id"]

    def redeliver(self, update_id: int) -> None:
        """Deliver an already delivered update again (same update_id), as Telegram does after a
        webhook failure or when a poller didn't confirm it. It is handed out before anything
        else, even in polling mode where its id is below the confirmed offset."""
        with self._lock:
            w = self._world
            update = w.updates_by_id.get(update_id)
            if update is None:
                raise KeyError(f"no update {update_id}")
            w.forced.append(copy.deepcopy(update))
        self._wake()

    # ----------------------------------------------------------------------------------------
    # inspection
    # ----------------------------------------------------------------------------------------

    def bot_messages(self, chat: Chat | User | int | None = None, *, include_deleted: bool = False) -> list[BotMessage]:
        """Messages the bot sent (in ``chat``, or everywhere), oldest first, current state with
        edit history."""
        with self._lock:
            w = self._world
            chat_ids = [self._chat_id(chat)] if chat is not None else list(w.messages)
            out = []
            for cid in chat_ids:
                for rec in w.messages.get(cid, {}).values():
                    if rec.from_bot and (include_deleted or not rec.deleted):
                        out.append(BotMessage.from_record(rec))
            return sorted(out, key=lambda m: (m.chat_id, m.message_id)) if chat is None else out

    def last_bot_message(self, chat: Chat | User | int) -> BotMessage | None:
        msgs = self.bot_messages(chat)
        return msgs[-1] if msgs else None

    def messages(self, chat: Chat | User | int) -> list[dict[str, Any]]:
        """The whole chat history as Message objects (people's and bot's), oldest first."""
        with self._lock:
            recs = self._world.messages.get(self._chat_id(chat), {}).values()
            return [copy.deepcopy(r.data) for r in recs if not r.deleted]

    async def wait_for_bot_message(
        self,
        chat: Chat | User | int | None = None,
        contains: str | None = None,
        *,
        timeout: float = 5.0,
        after: BotMessage | dict[str, Any] | int | None = None,
        where: Callable[[BotMessage], bool] | None = None,
    ) -> BotMessage:
        """First bot message in ``chat`` (message_id > ``after``) whose current text/caption
        contains ``contains`` and satisfies ``where``. Raises WaitTimeout after ``timeout`` s."""
        after_id = self._message_id_of(after) if after is not None else 0

        def probe() -> BotMessage | None:
            for msg in self.bot_messages(chat):
                if msg.message_id <= after_id:
                    continue
                if contains is not None and contains not in (msg.text or ""):
                    continue
                if where is not None and not where(msg):
                    continue
                return msg
            return None

        def describe() -> str:
            sent = [(m.chat_id, m.message_id, m.text) for m in self.bot_messages(chat)]
            failed = [(c.method, c.error) for c in self.calls if not c.ok]
            return (
                f"no bot message containing {contains!r} within {timeout}s; bot messages: {sent}; "
                f"failed calls: {failed}"
            )

        return await self._poll(probe, timeout, describe)

    async def wait_for_edit(
        self, message: BotMessage, contains: str | None = None, *, timeout: float = 5.0
    ) -> BotMessage:
        """Wait until ``message`` was edited (again) and its text contains ``contains``."""
        seen = len(message.history)

        def probe() -> BotMessage | None:
            for msg in self.bot_messages(message.chat_id, include_deleted=True):
                if (
                    msg.message_id == message.message_id
                    and len(msg.history) > seen
                    and (contains is None or contains in (msg.text or ""))
                ):
                    return msg
            return None

        return await self._poll(probe, timeout, lambda: f"message {message.message_id} not edited to {contains!r}")

    async def wait_for_callback_answer(self, callback_query_id: str, *, timeout: float = 5.0) -> CallbackAnswer:
        return await self._poll(
            lambda: self.callback_answer(callback_query_id),
            timeout,
            lambda: f"callback query {callback_query_id} not answered within {timeout}s",
        )

    async def wait_for_call(
        self, method: str, *, timeout: float = 5.0, where: Callable[[ApiCall], bool] | None = None
    ) -> ApiCall:
        def probe() -> ApiCall | None:
            return next((c for c in self.calls_to(method) if where is None or where(c)), None)

        return await self._poll(probe, timeout, lambda: f"no {method} call within {timeout}s")

    async def wait_until(self, predicate: Callable[[], Any], *, timeout: float = 5.0, what: str = "condition") -> Any:
        return await self._poll(predicate, timeout, lambda: f"{what} not met within {timeout}s")

    async def _poll(self, probe: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None and result is not False:
                return result
            if time.monotonic() >= deadline:
                raise WaitTimeout(describe())
            await asyncio.sleep(0.01)

    # ----------------------------------------------------------------------------------------
    # internals: world helpers (call with the lock held)
    # ----------------------------------------------------------------------------------------

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            old = self._wake_event
            self._wake_event = asyncio.Event()
            if old is not None:
                old.set()

        if self._thread is not None and threading.current_thread() is self._thread:
            wake()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(wake)

    def _chat_id(self, chat: Chat | User | int) -> int:
        if isinstance(chat, Chat | User):
            return chat.id
        return int(chat)

    def _chat(self, chat: Chat | User | int) -> Chat:
        w = self._world
        if isinstance(chat, User):
            return self._private(w, chat)
        cid = self._chat_id(chat)
        if cid not in w.chats:
            raise ValueError(f"unknown chat {cid}")
        return w.chats[cid]

    def _private(self, w: World, user: User) -> Chat:
        chat = w.chats.get(user.id)
        if chat is None:
            if user.id not in w.users:
                raise ValueError(f"{user.first_name} belongs to another test's world; create users after reset()")
            chat = Chat(user.id, "private", user=user, chat_instance=str(secrets.randbits(63) - 2**62))
            w.chats[user.id] = chat
            w.messages[user.id] = {}
        return chat

    def _speaker_chat(self, w: World, user: User, chat: Chat | User | int) -> Chat:
        if user.id not in w.users:
            raise ValueError(f"{user.first_name} belongs to another test's world; create users after reset()")
        if isinstance(chat, User) or self._chat_id(chat) == user.id:
            target = self._private(w, user)
            if target.blocked:
                raise ValueError(f"{user.first_name} blocked the bot; call user_unblocks_bot first")
            target.started = True
            return target
        target = self._chat(chat)
        if target.type == "private":
            raise ValueError(f"{user.first_name} can't write in {target.user.first_name}'s private chat")
        member = target.members.get(user.id)
        if member is None or not member.present or member.status == "restricted":
            raise ValueError(f"{user.first_name} can't write in {target.title}: add_member() first")
        return target

    def _new_message_id(self, w: World, chat_id: int) -> int:
        mid = w.next_message_id.get(chat_id, 0) + 1
        w.next_message_id[chat_id] = mid
        return mid

    def _find_record(
        self, w: World, message: BotMessage | dict[str, Any] | int, chat: Chat | User | int | None
    ) -> MessageRecord | None:
        if isinstance(message, BotMessage):
            return w.messages.get(message.chat_id, {}).get(message.message_id)
        if isinstance(message, dict):
            return w.messages.get(message["chat"]["id"], {}).get(message["message_id"])
        if chat is None:
            raise ValueError("pass chat= with a bare message_id")
        return w.messages.get(self._chat_id(chat), {}).get(int(message))

    def _message_id_of(self, message: BotMessage | dict[str, Any] | int) -> int:
        if isinstance(message, BotMessage):
            return message.message_id
        if isinstance(message, dict):
            return int(message["message_id"])
        return int(message)

    def _reply_copy(self, rec: MessageRecord) -> dict[str, Any]:
        data = copy.deepcopy(rec.data)
        data.pop("reply_to_message", None)
        return data

    def _store_user_message(
        self,
        w: World,
        chat: Chat,
        user: User,
        content: dict[str, Any],
        *,
        reply_to: BotMessage | dict[str, Any] | int | None = None,
    ) -> MessageRecord:
        data: dict[str, Any] = {
            "message_id": self._new_message_id(w, chat.id),
            "from": user.api(),
            "chat": chat.api(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            target = self._find_record(w, reply_to, chat)
            if target is None or target.deleted or target.chat_id != chat.id:
                raise ValueError(f"can't reply to {reply_to!r}: not in this chat")
            data["reply_to_message"] = self._reply_copy(target)
        data.update(content)
        rec = MessageRecord(chat.id, data["message_id"], data, from_bot=False)
        w.messages.setdefault(chat.id, {})[rec.message_id] = rec
        return rec

    def _bot_sees(self, w: World, chat: Chat, data: dict[str, Any], service: bool = False) -> bool:
        if chat.type == "private":
            return not chat.blocked
        me = chat.members.get(w.bot.id)
        if me is None or not me.present:
            return False
        if service or not w.privacy_mode or me.status in ("administrator", "creator"):
            return True
        text = data.get("text") or data.get("caption") or ""
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            if "@" not in command:
                return True
            return command.split("@", 1)[1].lower() == (w.bot.username or "").lower()
        for ent in data.get("entities", []) + data.get("caption_entities", []):
            if ent["type"] == "mention":
                mention = text.encode("utf-16-le")[ent["offset"] * 2 : (ent["offset"] + ent["length"]) * 2]
                if mention.decode("utf-16-le").lower() == f"@{w.bot.username}".lower():
                    return True
            if ent["type"] == "text_mention" and ent.get("user", {}).get("id") == w.bot.id:
                return True
        reply = data.get("reply_to_message")
        return bool(reply and reply.get("from", {}).get("id") == w.bot.id)

    def _emit_message(self, w: World, chat: Chat, rec: MessageRecord, *, service: bool = False) -> None:
        if self._bot_sees(w, chat, rec.data, service=service):
            self._enqueue(w, "message", copy.deepcopy(rec.data))

    def _member_update(
        self, chat: Chat, user: User, old: Member | None, new: Member, *, actor: User | None = None
    ) -> dict[str, Any]:
        return {
            "chat": chat.api(),
            "from": (actor or user).api(),
            "date": int(time.time()),
            "old_chat_member": old.api() if old else {"status": "left", "user": user.api()},
            "new_chat_member": new.api(),
        }

    def _enqueue(self, w: World, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": w.next_update_id, kind: payload}
        w.next_update_id += 1
        w.updates_by_id[update["update_id"]] = update
        w.all_updates.append(update)
        w.pending.append(update)
        self._wake()
        return update

    def _register_photo(self, w: World, data: bytes, width: int, height: int) -> list[FileRecord]:
        sizes = []
        for content, sw, sh in photo_variants(data, width, height):
            w.file_counter += 1
            rec = FileRecord(
                file_id="AgACAgUAAxkBAAI" + secrets.token_urlsafe(48)[:62],
                file_unique_id="AQAD" + secrets.token_urlsafe(12)[:12],
                content=content,
                file_path=f"photos/file_{w.file_counter}.jpg",
                kind="photo",
                width=sw,
                height=sh,
            )
            sizes.append(rec)
        for rec in sizes:
            w.files[rec.file_id] = rec
            w.files_by_path[rec.file_path] = rec
            w.photo_groups[rec.file_id] = sizes
        return sizes

    def _register_document(self, w: World, upload: Upload) -> FileRecord:
        w.file_counter += 1
        name = upload.filename or "file"
        ext = name.rsplit(".", 1)[1] if "." in name else "bin"
        mime = upload.content_type
        if not mime or mime == "application/octet-stream":
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        rec = FileRecord(
            file_id="BQACAgUAAxkBAAI" + secrets.token_urlsafe(48)[:62],
            file_unique_id="AgAD" + secrets.token_urlsafe(12)[:12],
            content=upload.data,
            file_path=f"documents/file_{w.file_counter}.{ext}",
            kind="document",
            file_name=name,
            mime_type=mime,
        )
        w.files[rec.file_id] = rec
        w.files_by_path[rec.file_path] = rec
        return rec

    @staticmethod
    def _scope_key(w: World, scope: dict[str, Any]) -> str:
        return json.dumps({k: scope[k] for k in sorted(scope)}, ensure_ascii=False)

    # ----------------------------------------------------------------------------------------
    # HTTP
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _reply(code: int, body: dict[str, Any]) -> web.Response:
        return web.json_response(body, status=code, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    def _error(self, err: ApiError) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
        if err.parameters:
            body["parameters"] = err.parameters
        return self._reply(err.code, body)

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return self._error(ApiError(404, "Not Found"))

    async def _read_params(self, request: web.Request) -> Params:
        data: dict[str, Any] = dict(request.query)
        files: dict[str, Upload] = {}
        if request.method == "POST" and request.body_exists:
            ctype = request.content_type
            if ctype == "application/json":
                raw = await request.read()
                try:
                    body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
                except (ValueError, UnicodeDecodeError):
                    raise bad_request("can't parse JSON object") from None
                if not isinstance(body, dict):
                    raise bad_request("JSON object expected")
                data.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = Upload(value.filename, value.content_type, value.file.read())
                    else:
                        data[key] = value
        return Params(data, files)

    @staticmethod
    def _loggable(params: Params) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in params.data.items():
            if key in JSON_FIELDS and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            out[key] = value
        for key, upload in params.files.items():
            out[key] = {"filename": upload.filename, "content_type": upload.content_type, "size": len(upload.data)}
        return out

    async def _handle_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not TOKEN_RE.match(token):
            return self._error(ApiError(404, "Not Found"))
        with self._lock:
            world = self._world
        if token != world.token:
            return self._error(ApiError(401, "Unauthorized"))
        handler_name = _METHODS.get(request.match_info["method"].lower())
        try:
            params = await self._read_params(request)
        except ApiError as err:
            return self._error(err)
        call = ApiCall(handler_name or request.match_info["method"], self._loggable(params))
        with self._lock:
            world.calls.append(call)
        if handler_name is None:
            call.status, call.error = 404, "Not Found"
            return self._error(ApiError(404, "Not Found"))
        try:
            with self._lock:
                flood = world.flood.get(handler_name.lower())
                if flood and flood[0] > 0:
                    flood[0] -= 1
                    raise ApiError(429, f"Too Many Requests: retry after {flood[1]}", {"retry_after": flood[1]})
            if handler_name == "getUpdates":
                result: Any = await self._get_updates(world, params)
            else:
                with self._lock:
                    if world is not self._world:
                        raise ApiError(401, "Unauthorized")
                    result = getattr(self, "_m_" + handler_name)(world, params)
        except ApiError as err:
            call.status, call.error = err.code, err.description
            return self._error(err)
        body: dict[str, Any] = {"ok": True}
        if isinstance(result, _Described):
            body["result"] = result.result
            body["description"] = result.description
        else:
            body["result"] = result
        call.result = body["result"]
        return self._reply(200, body)

    async def _handle_file(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        with self._lock:
            world = self._world
            if token != world.token:
                code = 404 if not TOKEN_RE.match(token) else 401
                return self._error(ApiError(code, "Not Found" if code == 404 else "Unauthorized"))
            rec = world.files_by_path.get(request.match_info["path"])
        if rec is None:
            return self._error(ApiError(404, "Not Found"))
        ctype = "image/jpeg" if rec.kind == "photo" else (rec.mime_type or "application/octet-stream")
        return web.Response(body=rec.content, content_type=ctype)

    # ----------------------------------------------------------------------------------------
    # updates: long polling and webhook delivery
    # ----------------------------------------------------------------------------------------

    def _collect(self, w: World, limit: int) -> list[dict[str, Any]]:
        allowed = w.allowed_updates
        w.pending = [u for u in w.pending if self._kind(u) in allowed]
        w.forced = [u for u in w.forced if self._kind(u) in allowed]
        batch = (w.forced + w.pending)[:limit]
        return copy.deepcopy(batch)

    @staticmethod
    def _kind(update: dict[str, Any]) -> str:
        return next(k for k in update if k != "update_id")

    def _set_allowed_updates(self, w: World, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise bad_request("can't parse allowed updates: an Array of Strings expected")
        w.allowed_updates = frozenset(x for x in raw if x in ALL_UPDATE_TYPES) or DEFAULT_UPDATE_TYPES

    async def _get_updates(self, w: World, p: Params) -> list[dict[str, Any]]:
        conflict_webhook = ApiError(
            409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
            "the webhook first",
        )  # fmt: skip
        with self._lock:
            if w.webhook:
                raise conflict_webhook
            offset = p.int("offset")
            limit = min(max(p.int("limit", 100) or 100, 1), 100)
            timeout = max(p.float("timeout", 0.0), 0.0)
            self._set_allowed_updates(w, p.json("allowed_updates"))
            if offset is not None:
                if offset < 0:
                    w.pending = w.pending[offset:]
                else:
                    w.pending = [u for u in w.pending if u["update_id"] >= offset]
            w.poll_generation += 1
            generation = w.poll_generation
            self._wake()  # a request still held for this bot ends with 409 Conflict
            event = self._wake_event
            batch = self._collect(w, limit)
            if batch:
                w.forced = [u for u in w.forced if u["update_id"] not in {b["update_id"] for b in batch}]
                return batch
        assert event is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
            with self._lock:
                if self._closing:
                    return []
                if w is not self._world:
                    raise ApiError(401, "Unauthorized")
                if w.poll_generation != generation:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only one bot "
                        "instance is running",
                    )
                if w.webhook:
                    raise conflict_webhook
                event = self._wake_event
                batch = self._collect(w, limit)
                if batch:
                    ids = {b["update_id"] for b in batch}
                    w.forced = [u for u in w.forced if u["update_id"] not in ids]
                    return batch

    async def _webhook_worker(self, w: World) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.webhook_timeout)) as session:
            while True:
                with self._lock:
                    if self._closing or w is not self._world or not w.webhook:
                        return
                    hook = dict(w.webhook)
                    event = self._wake_event
                    batch = self._collect(w, 1)
                    forced = bool(batch) and bool(w.forced) and w.forced[0]["update_id"] == batch[0]["update_id"]
                    if forced:
                        w.forced.pop(0)
                if not batch:
                    assert event is not None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), 1.0)
                    continue
                update = batch[0]
                headers = {}
                if hook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
                status: int | None = None
                error: str | None = None
                try:
                    async with session.post(hook["url"], json=update, headers=headers) as resp:
                        status = resp.status
                        await resp.read()
                        if not 200 <= status < 300:
                            error = f"Wrong response from the webhook: {status} {resp.reason}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    error = "Connection refused" if isinstance(exc, aiohttp.ClientConnectorError) else repr(exc)
                with self._lock:
                    w.webhook_deliveries.append({"update_id": update["update_id"], "status": status, "error": error})
                    if error is None:
                        if not forced:
                            w.pending = [u for u in w.pending if u["update_id"] != update["update_id"]]
                    else:
                        w.webhook_last_error = (int(time.time()), error)
                        if forced:
                            w.forced.insert(0, update)
                if error is not None:
                    await asyncio.sleep(self.webhook_retry_delay)

    # ----------------------------------------------------------------------------------------
    # method helpers
    # ----------------------------------------------------------------------------------------

    def _resolve_chat(self, w: World, p: Params, name: str = "chat_id") -> Chat:
        raw = p.data.get(name)
        if raw is None or raw == "":
            raise bad_request(f"{name} is empty")
        if isinstance(raw, str) and raw.strip().startswith("@"):
            wanted = raw.strip()[1:].lower()
            for chat in w.chats.values():
                if chat.is_group and chat.username and chat.username.lower() == wanted:
                    return chat
            raise bad_request("chat not found")
        try:
            cid = p.int(name)
        except ApiError:
            raise bad_request("chat not found") from None
        chat = w.chats.get(cid)  # type: ignore[arg-type]
        if chat is None:
            if cid in w.users and cid != w.bot.id:
                chat = self._private(w, w.users[cid])  # known user, no conversation yet
            else:
                raise bad_request("chat not found")
        return chat

    def _check_access(self, w: World, chat: Chat, *, sending: bool = True) -> None:
        if chat.type == "private":
            assert chat.user is not None
            if chat.user.is_bot:
                raise forbidden("bot can't send messages to bots")
            if chat.blocked:
                raise forbidden("bot was blocked by the user")
            if not chat.started:
                raise forbidden("bot can't initiate conversation with a user")
            return
        me = chat.members.get(w.bot.id)
        kind = "supergroup" if chat.type == "supergroup" else "group"
        if me is not None and me.status == "kicked":
            raise forbidden(f"bot was kicked from the {kind} chat")
        if me is None or not me.present:
            raise forbidden(f"bot is not a member of the {kind} chat")
        if sending and me.status == "restricted":
            raise bad_request("not enough rights to send text messages to the chat")

    def _reply_target(self, w: World, chat: Chat, p: Params) -> dict[str, Any] | None:
        params = p.json("reply_parameters")
        allow_without = p.bool("allow_sending_without_reply")
        mid: int | None
        if params is not None:
            if not isinstance(params, dict) or not isinstance(params.get("message_id"), int):
                raise bad_request("can't parse reply parameters JSON object")
            mid = params["message_id"]
            allow_without = bool(params.get("allow_sending_without_reply", allow_without))
            other = params.get("chat_id")
            if other is not None and other != chat.id:
                raise bad_request("message to be replied not found")
        else:
            mid = p.int("reply_to_message_id")
        if mid is None:
            return None
        rec = w.messages.get(chat.id, {}).get(mid)
        if rec is None or rec.deleted:
            if allow_without:
                return None
            raise bad_request("message to be replied not found")
        quote = params.get("quote") if isinstance(params, dict) else None
        if quote is not None:
            source = rec.data.get("text") or rec.data.get("caption") or ""
            if not isinstance(quote, str) or not quote.strip() or quote not in source:
                raise bad_request("QUOTE_TEXT_INVALID")
        return self._reply_copy(rec)

    def _markup(self, p: Params, *, inline_only: bool) -> dict[str, Any] | None:
        raw = p.json("reply_markup")
        if raw is None:
            return None
        return validate_reply_markup(raw, inline_only=inline_only)

    def _entities_param(self, p: Params, name: str) -> list[dict[str, Any]] | None:
        raw = p.json(name)
        return None if raw is None else validate_entities(raw, name)

    def _resolve_user_for_mention(self, w: World) -> Callable[[int], dict[str, Any] | None]:
        def resolve(user_id: int) -> dict[str, Any] | None:
            user = w.users.get(user_id)
            return user.api() if user else None

        return resolve

    def _send(
        self, w: World, chat: Chat, p: Params, content: dict[str, Any], markup: dict[str, Any] | None
    ) -> dict[str, Any]:
        if p.has("message_thread_id"):
            raise bad_request("message thread not found")  # no forum topics in this world
        reply = self._reply_target(w, chat, p)
        data: dict[str, Any] = {
            "message_id": self._new_message_id(w, chat.id),
            "from": w.bot.api(),
            "chat": chat.api(),
            "date": int(time.time()),
        }
        if reply is not None:
            data["reply_to_message"] = reply
        data.update(content)
        if p.bool("protect_content"):
            data["has_protected_content"] = True
        inline = markup if markup and "inline_keyboard" in markup else None
        if inline is not None:
            data["reply_markup"] = inline
        rec = MessageRecord(chat.id, data["message_id"], data, from_bot=True)
        if markup is not None and inline is None:
            rec.reply_keyboard = markup
        w.messages.setdefault(chat.id, {})[rec.message_id] = rec
        return copy.deepcopy(data)

    def _caption(self, w: World, p: Params) -> dict[str, Any]:
        caption = p.str("caption")
        if not caption:
            return {}
        text, ents = format_text(
            caption,
            p.str("parse_mode"),
            self._entities_param(p, "caption_entities"),
            caption=True,
            resolve_user=self._resolve_user_for_mention(w),
        )
        out: dict[str, Any] = {}
        if text:
            out["caption"] = text
        if ents:
            out["caption_entities"] = ents
        return out

    def _input_file(self, p: Params, name: str) -> Upload | str | None:
        if name in p.files:
            return p.files[name]
        value = p.data.get(name)
        if value is None or value == "":
            return None
        value = str(value)
        if value.startswith("attach://"):
            upload = p.files.get(value[len("attach://") :])
            if upload is None:
                raise bad_request(f'can\'t find attached file "{value}"')
            return upload
        return value

    def _existing_file(self, w: World, file_id: str, kind: str) -> FileRecord:
        if file_id.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")
        rec = w.files.get(file_id.strip())
        if rec is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if rec.kind != kind:
            raise bad_request(f"can't use file of type {rec.kind.capitalize()} as {kind.capitalize()}")
        return rec

    def _edit_target(self, w: World, p: Params) -> tuple[Chat, MessageRecord]:
        if p.has("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._resolve_chat(w, p)
        self._check_access(w, chat, sending=False)
        mid = p.int("message_id")
        if mid is None:
            raise bad_request("message identifier is not specified")
        rec = w.messages.get(chat.id, {}).get(mid)
        if rec is None or rec.deleted:
            raise bad_request("message to edit not found")
        if not rec.from_bot:
            raise bad_request("message can't be edited")
        return chat, rec

    def _apply_edit(self, rec: MessageRecord, new: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        current = {k: rec.data.get(k) for k in keys}
        if current == {k: new.get(k) for k in keys}:
            raise bad_request(NOT_MODIFIED)
        snapshot = {k: copy.deepcopy(rec.data.get(k)) for k in (*keys, "edit_date")}
        rec.history.append(snapshot)
        for key in keys:
            if new.get(key) is None:
                rec.data.pop(key, None)
            else:
                rec.data[key] = new[key]
        rec.data["edit_date"] = int(time.time())
        return copy.deepcopy(rec.data)

    def _chat_full_info(self, w: World, chat: Chat) -> dict[str, Any]:
        info = chat.api()
        info.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": chat.type == "private",
                    "limited_gifts": chat.type == "private",
                    "unique_gifts": chat.type == "private",
                    "premium_subscription": chat.type == "private",
                    "gifts_from_channels": chat.type == "private",
                },
            }
        )
        if chat.is_group:
            from tests.servers.telegram_api_world import CHAT_PERMISSIONS

            info["permissions"] = dict(CHAT_PERMISSIONS)
            if chat.description:
                info["description"] = chat.description
        return info

    # ----------------------------------------------------------------------------------------
    # Bot API methods (called with the lock held; raise ApiError on failure)
    # ----------------------------------------------------------------------------------------

    def _m_getMe(self, w: World, p: Params) -> dict[str, Any]:
        me = w.bot.api()
        me.update(
            {
                "can_join_groups": True,
                "can_read_all_group_messages": not w.privacy_mode,
                "supports_inline_queries": False,
                "can_connect_to_business": False,
                "has_main_web_app": False,
            }
        )
        return me

    def _m_setWebhook(self, w: World, p: Params) -> _Described:
        url = (p.str("url") or "").strip()
        if not url:
            return self._m_deleteWebhook(w, p)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if parts.hostname not in LOOPBACK_HOSTS:
            raise bad_request(
                f"bad webhook: this test server only delivers webhooks to 127.0.0.1/localhost, not {parts.hostname}"
            )
        secret = p.str("secret_token")
        if secret is not None and secret != "" and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad_request("secret token contains unallowed characters")
        max_connections = p.int("max_connections", 40)
        if not 1 <= (max_connections or 0) <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        self._set_allowed_updates(w, p.json("allowed_updates"))
        hook = {"url": url, "secret_token": secret or None, "max_connections": max_connections}
        if p.str("ip_address"):
            hook["ip_address"] = p.str("ip_address")
        if p.bool("drop_pending_updates"):
            w.pending.clear()
            w.forced.clear()
        same = w.webhook == hook
        w.webhook = hook
        w.webhook_last_error = None
        if w.webhook_task is None or w.webhook_task.done():
            w.webhook_task = asyncio.get_running_loop().create_task(self._webhook_worker(w))
        self._wake()
        return _Described(True, "Webhook is already set" if same else "Webhook was set")

    def _m_deleteWebhook(self, w: World, p: Params) -> _Described:
        if p.bool("drop_pending_updates"):
            w.pending.clear()
            w.forced.clear()
        had = w.webhook is not None
        w.webhook = None
        self._wake()
        return _Described(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _m_getWebhookInfo(self, w: World, p: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": w.webhook["url"] if w.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(w.pending) + len(w.forced),
        }
        if w.webhook:
            info["max_connections"] = w.webhook["max_connections"]
            info["ip_address"] = w.webhook.get("ip_address", "127.0.0.1")
            if w.allowed_updates != DEFAULT_UPDATE_TYPES:
                info["allowed_updates"] = sorted(w.allowed_updates)
            if w.webhook_last_error:
                info["last_error_date"], info["last_error_message"] = w.webhook_last_error
        return info

    def _m_sendMessage(self, w: World, p: Params) -> dict[str, Any]:
        chat = self._resolve_chat(w, p)
        text = p.str("text")
        if text is None or text == "":
            raise bad_request("message text is empty")
        self._check_access(w, chat)
        plain, ents = format_text(
            text,
            p.str("parse_mode"),
            self._entities_param(p, "entities"),
            resolve_user=self._resolve_user_for_mention(w),
        )
        markup = self._markup(p, inline_only=False)
        lpo = p.json("link_preview_options")
        if lpo is not None and not isinstance(lpo, dict):
            raise bad_request("can't parse link preview options JSON object")
        content: dict[str, Any] = {"text": plain}
        if ents:
            content["entities"] = ents
        return self._send(w, chat, p, content, markup)

    def _m_editMessageText(self, w: World, p: Params) -> dict[str, Any]:
        _chat, rec = self._edit_target(w, p)
        if "text" not in rec.data:
            raise bad_request("there is no text in the message to edit")
        text = p.str("text")
        if text is None or text == "":
            raise bad_request("message text is empty")
        plain, ents = format_text(
            text,
            p.str("parse_mode"),
            self._entities_param(p, "entities"),
            resolve_user=self._resolve_user_for_mention(w),
        )
        markup = self._markup(p, inline_only=True)
        new = {"text": plain, "entities": ents or None, "reply_markup": markup}
        return self._apply_edit(rec, new, ("text", "entities", "reply_markup"))

    def _m_editMessageCaption(self, w: World, p: Params) -> dict[str, Any]:
        _chat, rec = self._edit_target(w, p)
        if not any(k in rec.data for k in ("photo", "document")):
            raise bad_request("there is no caption in the message to edit")
        caption = self._caption(w, p)
        markup = self._markup(p, inline_only=True)
        new = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
            "reply_markup": markup,
        }
        return self._apply_edit(rec, new, ("caption", "caption_entities", "reply_markup"))

    def _m_editMessageReplyMarkup(self, w: World, p: Params) -> dict[str, Any]:
        _chat, rec = self._edit_target(w, p)
        markup = self._markup(p, inline_only=True)
        return self._apply_edit(rec, {"reply_markup": markup}, ("reply_markup",))

    def _m_deleteMessage(self, w: World, p: Params) -> bool:
        chat = self._resolve_chat(w, p)
        self._check_access(w, chat, sending=False)
        mid = p.int("message_id")
        if mid is None:
            raise bad_request("message identifier is not specified")
        rec = w.messages.get(chat.id, {}).get(mid)
        if rec is None or rec.deleted:
            raise bad_request("message to delete not found")
        if not rec.from_bot and chat.is_group and chat.members[w.bot.id].status not in ("administrator", "creator"):
            raise bad_request("message can't be deleted")
        if time.time() - rec.created > 48 * 3600:
            raise bad_request("message can't be deleted")
        rec.deleted = True
        return True

    def _m_sendPhoto(self, w: World, p: Params) -> dict[str, Any]:
        chat = self._resolve_chat(w, p)
        self._check_access(w, chat)
        photo = self._input_file(p, "photo")
        if photo is None:
            raise bad_request("there is no photo in the request")
        if isinstance(photo, Upload):
            if not photo.data:
                raise bad_request("file must be non-empty")
            info = image_size(photo.data)
            if info is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            if len(photo.data) > 10 * 1024 * 1024:
                raise bad_request("PHOTO_SAVE_FILE_INVALID")
            _fmt, width, height = info
            if width + height > 10000 or max(width, height) > 20 * max(1, min(width, height)):
                raise bad_request("PHOTO_INVALID_DIMENSIONS")
            sizes = self._register_photo(w, photo.data, width, height)
        else:
            sizes = w.photo_groups[self._existing_file(w, photo, "photo").file_id]
        caption = self._caption(w, p)
        markup = self._markup(p, inline_only=False)
        content: dict[str, Any] = {"photo": [s.api_photo_size() for s in sizes], **caption}
        if p.bool("has_spoiler"):
            content["has_media_spoiler"] = True
        if p.bool("show_caption_above_media"):
            content["show_caption_above_media"] = True
        return self._send(w, chat, p, content, markup)

    def _m_sendDocument(self, w: World, p: Params) -> dict[str, Any]:
        chat = self._resolve_chat(w, p)
        self._check_access(w, chat)
        document = self._input_file(p, "document")
        if document is None:
            raise bad_request("there is no document in the request")
        if isinstance(document, Upload):
            if not document.data:
                raise bad_request("file must be non-empty")
            if len(document.data) > 50 * 1024 * 1024:
                raise ApiError(413, "Request Entity Too Large")
            rec = self._register_document(w, document)
        else:
            rec = self._existing_file(w, document, "document")
        caption = self._caption(w, p)
        markup = self._markup(p, inline_only=False)
        return self._send(w, chat, p, {"document": rec.api_document(), **caption}, markup)

    def _m_getFile(self, w: World, p: Params) -> dict[str, Any]:
        file_id = p.str("file_id")
        if not file_id:
            raise bad_request("file_id is empty")
        rec = w.files.get(file_id)
        if rec is None:
            raise bad_request("invalid file_id")
        if len(rec.content) > 20 * 1024 * 1024:
            raise bad_request("file is too big")
        return rec.api_file()

    def _m_answerCallbackQuery(self, w: World, p: Params) -> bool:
        qid = p.str("callback_query_id")
        query = w.callback_queries.get(qid or "")
        if query is None or query.answered or time.monotonic() - query.created > self.callback_query_timeout:
            raise bad_request(QUERY_INVALID)
        text = p.str("text")
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        url = p.str("url")
        if url and not url.startswith(("t.me/", "https://t.me/", "tg://")):
            raise bad_request("URL_INVALID")
        query.answered = True
        w.callback_answers.append(
            CallbackAnswer(
                callback_query_id=query.id,
                text=text,
                show_alert=p.bool("show_alert"),
                url=url,
                cache_time=p.int("cache_time", 0) or 0,
                user_id=query.user.id,
                data=query.data,
                chat_id=query.chat_id,
                message_id=query.message_id,
            )
        )
        return True

    def _commands_key(self, w: World, p: Params) -> tuple[str, str]:
        scope = p.json("scope")
        if scope is None:
            scope = {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in SCOPE_TYPES:
            raise bad_request("can't parse BotCommandScope JSON object")
        if scope["type"] in ("chat", "chat_administrators", "chat_member"):
            if "chat_id" not in scope:
                raise bad_request("chat_id is empty")
            chat = self._resolve_chat(w, Params({"chat_id": scope["chat_id"]}, {}))
            if scope["type"] != "chat" and not chat.is_group:
                raise bad_request("can't use this scope in a private chat")
            scope = {**scope, "chat_id": chat.id}
        if scope["type"] == "chat_member":
            uid = scope.get("user_id")
            if not isinstance(uid, int) or uid not in w.users:
                raise bad_request("user not found")
        lang = p.str("language_code") or ""
        if lang and not re.fullmatch(r"[a-z]{2}", lang):
            raise bad_request("invalid language code specified")
        return self._scope_key(w, scope), lang

    def _m_setMyCommands(self, w: World, p: Params) -> bool:
        commands = p.json("commands")
        if commands is None:
            raise bad_request("commands is empty")  # parameter is required
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        clean = []
        for cmd in commands:
            if not isinstance(cmd, dict) or not isinstance(cmd.get("command"), str):
                raise bad_request('can\'t parse BotCommand: Field "command" must be of type String')
            if not isinstance(cmd.get("description"), str):
                raise bad_request('can\'t parse BotCommand: Field "description" must be of type String')
            name = cmd["command"].strip().removeprefix("/")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(cmd["description"].strip()) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": cmd["description"].strip()})
        key = self._commands_key(w, p)
        if clean:
            w.commands[key] = clean
        else:
            w.commands.pop(key, None)
        return True

    def _m_getMyCommands(self, w: World, p: Params) -> list[dict[str, str]]:
        return copy.deepcopy(w.commands.get(self._commands_key(w, p), []))

    def _m_deleteMyCommands(self, w: World, p: Params) -> bool:
        w.commands.pop(self._commands_key(w, p), None)
        return True

    def _visible_chat(self, w: World, p: Params) -> Chat:
        chat = self._resolve_chat(w, p)
        if chat.type == "private":
            if not chat.started and not w.messages.get(chat.id):
                raise bad_request("chat not found")
        else:
            self._check_access(w, chat, sending=False)
        return chat

    def _m_getChat(self, w: World, p: Params) -> dict[str, Any]:
        return self._chat_full_info(w, self._visible_chat(w, p))

    def _m_getChatMember(self, w: World, p: Params) -> dict[str, Any]:
        chat = self._visible_chat(w, p)
        uid = p.int("user_id")
        if uid is None:
            raise bad_request("user_id is empty")
        user = w.users.get(uid)
        if user is None:
            raise bad_request("user not found")
        if chat.type == "private":
            if uid not in (w.bot.id, chat.id):
                raise bad_request("user not found")
            return {"status": "member", "user": user.api()}
        member = chat.members.get(uid)
        return member.api() if member else {"status": "left", "user": user.api()}

    def _m_getChatAdministrators(self, w: World, p: Params) -> list[dict[str, Any]]:
        chat = self._visible_chat(w, p)
        if chat.type == "private":
            raise bad_request("there are no administrators in the private chat")
        return [m.api() for m in chat.members.values() if m.status in ("creator", "administrator")]

    def _m_getChatMemberCount(self, w: World, p: Params) -> int:
        chat = self._visible_chat(w, p)
        if chat.type == "private":
            return 2
        return sum(1 for m in chat.members.values() if m.present)

    def _m_sendChatAction(self, w: World, p: Params) -> bool:
        chat = self._resolve_chat(w, p)
        action = p.str("action")
        if not action:
            raise bad_request("action is empty")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._check_access(w, chat)
        w.chat_actions.append({"chat_id": chat.id, "action": action, "at": time.time()})
        return True

    def _m_leaveChat(self, w: World, p: Params) -> bool:
        chat = self._resolve_chat(w, p)
        if chat.type == "private":
            raise bad_request("chat member status can't be changed in private chats")
        me = chat.members.get(w.bot.id)
        if me is None or not me.present:
            raise bad_request("USER_NOT_PARTICIPANT")
        chat.members[w.bot.id] = Member(w.bot, "left")
        self._enqueue(w, "my_chat_member", self._member_update(chat, w.bot, me, chat.members[w.bot.id]))
        return True

    def _m_setMessageReaction(self, w: World, p: Params) -> bool:
        chat = self._resolve_chat(w, p)
        self._check_access(w, chat, sending=False)
        mid = p.int("message_id")
        rec = w.messages.get(chat.id, {}).get(mid or 0)
        if rec is None or rec.deleted:
            raise bad_request("message to react not found")
        reaction = p.json("reaction") or []
        if not isinstance(reaction, list):
            raise bad_request("can't parse reaction JSON object")
        if len(reaction) > 1:
            raise bad_request("REACTIONS_TOO_MANY")
        allowed = _reaction_emoji()
        for item in reaction:
            if not isinstance(item, dict) or item.get("type") not in ("emoji", "custom_emoji", "paid"):
                raise bad_request("can't parse ReactionType JSON object")
            if item["type"] != "emoji" or (allowed and item.get("emoji") not in allowed):
                raise bad_request("REACTION_INVALID")
        rec.reactions = copy.deepcopy(reaction)
        return True


_METHODS = {name[3:].lower(): name[3:] for name in dir(TelegramApiServer) if name.startswith("_m_")}
_METHODS["getupdates"] = "getUpdates"


def _reaction_emoji() -> frozenset[str]:
    try:
        from telegram.constants import ReactionEmoji
    except ImportError:  # pragma: no cover
        return frozenset()
    return frozenset(e.value for e in ReactionEmoji)


# --------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def telegram_server() -> Iterator[TelegramApiServer]:
    """The fake Bot API, started once per test session (own thread, any event loop can use it)."""
    server = TelegramApiServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tg(telegram_server: TelegramApiServer) -> Iterator[TelegramApiServer]:
    """``telegram_server`` with a clean world (new bot token) for this test; reset again after,
    so a bot left running by the test is cut off (401) instead of leaking into the next one."""
    telegram_server.reset()
    yield telegram_server
    telegram_server.reset()
