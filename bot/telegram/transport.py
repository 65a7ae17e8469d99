"""The Telegram transport (python-telegram-bot): updates in, the core's actions out.

It only translates. Messages and button presses become `Incoming` values (bot/telegram/format.py), the
core answers with `Outgoing` actions, and those become Bot API calls: order cards are HTML messages
with inline buttons, edited in place (`editMessageText`) as the order moves; a refused press gets a
short `answerCallbackQuery` alert; photos go by their Telegram `file_id`; direct messages go to the
person's private chat once they have started the bot, and until then a mention in the group asks them
to.

It runs inside `linli run`'s one asyncio loop with PTB's `Application` for the bot and its rate limiter,
but without PTB's updater: Linli fetches the updates itself (`getUpdates`) and stores them in the inbox
before it confirms them to Telegram (the next call's offset), and its own webhook endpoint answers 200
only after the update is stored. Updates are then handled in order per chat, chats side by side
(`bot/inbox.py`); what the core says is queued in the outbox and posted in per-chat lanes
(`bot/delivery.py`), so a group waiting out Telegram's 20 messages a minute holds up only itself. PTB's
Linli's own rate limiter (`bot/telegram/ratelimit.py`) spaces what goes into each group and waits out a
`429 Too Many Requests` in that chat only; network errors are tried again
with backoff; what still cannot go waits in the outbox, and the scheduler hands it back here later.
Telegram may deliver an update twice: the inbox keeps each update id once, and the core drops a message
or press it has handled before, so a restart that receives unconfirmed updates again changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from html import escape
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    BotCommandScopeDefault,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
    User,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder

from bot.delivery import Undeliverable
from bot.render import TELEGRAM_MENU as COMMANDS
from bot.render import say
from bot.settings import SettingsError
from bot.telegram.format import (
    CAPTION_LIMIT,
    GROUP_TYPES,
    SERVICE,
    Me,
    alert_text,
    callback_incoming,
    html_text,
    is_file_id,
    keyboard,
    message_incoming,
    message_ref,
    press_id,
    user_link,
)
from bot.telegram.ratelimit import GROUP_WINDOW, ChatRateLimiter
from bot.telegram.webhook import WebhookEndpoint
from bot.transport import LoginFailed, Transport
from handlers import inbox, outbox
from handlers.inbox import Arrival, Stored
from handlers.protocol import Incoming, Kind, Outgoing, from_json, to_json
from handlers.router import Linli
from storage.db import DATABASE_AWAY

log = logging.getLogger(__name__)
T = TypeVar("T")

ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
PRESENT = ("creator", "administrator", "member", "restricted")
HINTED = frozenset({"help", "usage.status"})  # answers that also say how to let the bot read the group
HELD_MAX = 20  # direct messages kept for one person who has not started the bot yet


def file_url_of(api_url: str) -> str:
    """`base_file_url` for a `base_url`: https://api.telegram.org/bot → https://api.telegram.org/file/bot."""
    return api_url.removesuffix("/bot") + "/file/bot"


def api_url_of(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/bot") else url + "/bot"


def parse_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:8443", "0.0.0.0:80" or "[::]:8443" → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"--listen: use HOST:PORT, e.g. 127.0.0.1:8443, not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class TelegramTransport(Transport):
    """Carries the whole loop in Telegram groups; `linli run` starts and stops it. Telegram's BadRequest
    means the request itself is wrong, so it is not tried again; Forbidden (not in that group any more) is
    kept, in case the bot comes back."""

    service = SERVICE
    title = "Telegram"
    dropped = (BadRequest,)
    kept = (Forbidden,)

    def __init__(self, core: Linli, settings: Any, *, webhook: str | None = None, listen: str = "127.0.0.1:8443",
                 poll_timeout: float = 10.0, admin_ttl: float = 300.0, rate_limits: dict[str, float] | None = None,
                 max_retries: int = 3, network_tries: int = 3, request_timeout: float = 20.0,
                 commands: bool = True, greet: bool = True, start_wait: float = 5.0) -> None:
        token = settings.telegram_token
        self._token = token.get_secret_value() if hasattr(token, "get_secret_value") else token
        if not self._token:
            raise SettingsError("LINLI_TELEGRAM_TOKEN is needed for Telegram")
        super().__init__(core)
        self.api_url = api_url_of(settings.telegram_api_url)
        self.file_url = file_url_of(self.api_url)
        self.webhook = webhook
        self.listen = parse_listen(listen) if webhook else None
        if webhook and urlsplit(webhook).scheme not in ("http", "https"):
            raise SettingsError(f"--webhook: use an https:// URL, not {webhook!r}")
        self.poll_timeout = poll_timeout
        self.admin_ttl = admin_ttl
        self.rate_limits = rate_limits or {}  # ChatRateLimiter's: 30/s overall, 20 a minute into a group
        self.max_retries = max(1, max_retries)
        self.network_tries = max(1, network_tries)
        self.request_timeout = request_timeout
        self.register_commands = commands
        self.greet = greet
        self.start_wait = start_wait
        self.app: Application | None = None
        self.me: Me | None = None
        # what tests and `linli bench` read
        self.handled = 0  # updates handed to the core
        self.duplicates = 0  # updates delivered again and dropped
        self.received = self.finished = 0  # updates fetched, and those done with (stored, handled, queued)
        self.rate_limited = 0  # 429s that outlasted the rate limiter's retries
        self._online = False  # logged in: calls may go out
        self._endpoint: WebhookEndpoint | None = None
        self._polling: asyncio.Task[None] | None = None
        self._limiter = ChatRateLimiter()
        self._offset: int | None = None  # the first update not stored yet: asking from it confirms the others
        self._admin_cache: dict[int, tuple[float, frozenset[int]]] = {}
        self._blind: set[str] = set()  # groups whose ordinary messages privacy mode hides from the bot
        self._told: set[str] = set()
        self._usernames: dict[str, str] = {}  # @username (lower case) → user id
        self._members_done: set[int] = set()  # membership updates (inbox ids) already acted on in this process
        self._queries: dict[str, CallbackQuery] = {}  # presses being handled, not answered yet
        self._pressed: dict[str, int] = {}  # press → the message that carries the button
        self._first_try = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- start and stop ----------------------------------------------------------------------
    async def start(self) -> None:
        """Log in and start receiving updates. A wrong token stops start-up (`LoginFailed`). A Bot API that
        cannot be reached (or answers slowly) is tried again in the background, so the other transports
        start without waiting more than `start_wait` seconds."""
        self.stopping.clear()
        self._first_try.clear()
        self.app = self._build()
        task = self._task = asyncio.create_task(self._keep_connecting(), name="telegram-connect")
        task.add_done_callback(self._connecting_ended)
        tried = asyncio.ensure_future(self._first_try.wait())
        await asyncio.wait({task, tried}, timeout=self.start_wait, return_when=asyncio.FIRST_COMPLETED)
        tried.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            self._task = None
            await self._close()
            raise task.exception()  # type: ignore[misc]
        if not self._online or self.me is None:
            log.warning("Telegram: %s not reached yet; trying again in the background", self.api_url)

    async def _keep_connecting(self) -> None:
        for pause in self.pauses():
            if self.stopping.is_set():
                return
            try:
                await self._connect()
                return
            except (TelegramError, TimeoutError, OSError) as error:
                log.warning("Telegram: cannot reach %s (%s); trying again in %.0f s", self.api_url, error, pause)
            finally:
                self._first_try.set()
            await self.rest(pause)

    def _connecting_ended(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:  # a token revoked meanwhile, a --listen address taken, or a bug
            log.error("Telegram: gave up connecting: %s", error, exc_info=not isinstance(error, SettingsError))

    def _build(self) -> Application:
        limiter = self._limiter = ChatRateLimiter(max_retries=self.max_retries, **self.rate_limits)
        app = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(self.api_url)
            .base_file_url(self.file_url)
            .rate_limiter(limiter)
            .updater(None)  # Linli fetches the updates itself, to store them before it confirms them
            .job_queue(None)
            .connect_timeout(10)
            .read_timeout(self.request_timeout)
            .write_timeout(self.request_timeout)
            .build()
        )
        return app

    async def _connect(self) -> None:
        app = self._app()
        try:
            await asyncio.wait_for(app.initialize(), self.request_timeout + 10)
        except InvalidToken:
            # PTB's message repeats the token: say which setting is wrong, not the secret
            raise LoginFailed(f"LINLI_TELEGRAM_TOKEN was rejected by {self.api_url}") from None
        self._online = True
        bot = app.bot
        self.me = Me(bot.id, bot.username, bool(bot.bot.can_read_all_group_messages))
        self.core.add_bot_names(bot.username)
        if self.register_commands:
            await self._set_commands()
        await self._remember_what_was_sent()
        await self.resume()  # what a crash or a stop left to say goes first,
        await self.inbound.recover()  # then what it left to handle
        if self.webhook:
            await self._start_webhook()
        else:
            try:  # a webhook left from an earlier `--webhook` run would make getUpdates fail
                await self._call(lambda: bot.delete_webhook(drop_pending_updates=False))
            except (TelegramError, Undeliverable) as error:
                log.warning("Telegram: could not remove a webhook (%s); polling all the same", error)
            self._polling = asyncio.create_task(self._poll(), name="telegram-poll")
        log.info("Telegram: @%s is %s (privacy mode %s)", bot.username,
                 f"listening for webhooks at {self.webhook}" if self.webhook else "polling",
                 "off" if self.me.reads_all else "on: it reads groups where it is an admin")

    async def _remember_what_was_sent(self) -> None:
        """What the process before this one posted in the last minute still counts against each group's limit:
        a restart does not start with a burst that Telegram refuses."""
        now = self.core.clock.now()
        recent = await self.core.call(outbox.recently_sent, self.engine, SERVICE, now - timedelta(seconds=GROUP_WINDOW))
        for chat, at in recent:
            self._limiter.remember(chat, (now - at).total_seconds())

    async def _start_webhook(self) -> None:
        assert self.webhook and self.listen
        # A–Z a–z 0–9 _ -: what Telegram allows; one for every process taking this bot's webhooks
        secret = self.secrets.get("webhook_secret") or self.secrets.first("webhook_secret", secrets.token_urlsafe(32))
        host, port = self.listen
        endpoint = WebhookEndpoint(urlsplit(self.webhook).path or "/", secret, self._arrived)
        try:
            await endpoint.start(host, port)
        except OSError as error:
            raise SettingsError(f"--listen {host}:{port}: {error.strerror or error}") from None
        self._endpoint = endpoint
        bot = self._app().bot
        await self._call(lambda: bot.set_webhook(self.webhook, secret_token=secret,  # type: ignore[arg-type]
                                                 allowed_updates=list(ALLOWED_UPDATES), drop_pending_updates=False))

    async def _poll(self) -> None:
        """Fetch updates, store them, and only then confirm them (the next call's offset): a crash before the
        store leaves them with Telegram, which sends them again."""
        bot, pauses = self._app().bot, self.pauses()
        while not self.stopping.is_set():
            try:
                updates = await bot.get_updates(offset=self._offset, timeout=int(self.poll_timeout),
                                                allowed_updates=list(ALLOWED_UPDATES),
                                                read_timeout=self.poll_timeout + self.request_timeout)
                if updates:
                    await self._arrived([update.to_dict() for update in updates])
                    self._offset = updates[-1].update_id + 1
                pauses = self.pauses()
            except asyncio.CancelledError:
                raise
            except InvalidToken:
                log.error("Telegram: the Bot API no longer accepts the token; stopped fetching updates")
                return
            except Exception as error:  # network, Telegram's 5xx, a 409 Conflict, the database: try again
                pause = next(pauses)
                level = logging.ERROR if isinstance(error, Conflict) else logging.WARNING
                log.log(level, "Telegram: fetching updates failed (%s); trying again in %.0f s", error, pause)
                await self.rest(pause)

    async def _confirm(self) -> None:
        """On stopping: confirm what is stored, and end the long poll still open at Telegram."""
        if self._offset is None or self.app is None or not self._online:
            return
        with contextlib.suppress(TelegramError, TimeoutError, OSError):
            await self.app.bot.get_updates(offset=self._offset, timeout=0, limit=1, read_timeout=self.request_timeout,
                                           allowed_updates=list(ALLOWED_UPDATES))

    async def _arrived(self, updates: list[dict[str, Any]]) -> None:
        """Store updates in the inbox (then they may be confirmed) and queue them in their chats' lanes."""
        self.received += len(updates)
        new = await self.inbound.receive([Arrival(str(u["update_id"]), _lane_of(u), u) for u in updates])
        self.duplicates += len(updates) - new
        self.finished += len(updates) - new

    async def stop(self) -> None:
        """Stop receiving, let the updates already received be handled (for up to `HANDLING_GRACE` seconds; what
        is left waits in the inbox and the outbox for the next start), then close."""
        self.stopping.set()
        for task in (self._task, self._polling):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (self._task, self._polling) if t is not None), return_exceptions=True)
        self._task = self._polling = None
        await self._confirm()
        if self._endpoint is not None:
            await self._endpoint.stop()
            self._endpoint = None
        await self.finish_lanes()
        await self._close()

    async def _close(self) -> None:
        self._online = False
        if self.app is not None:
            with contextlib.suppress(TelegramError, RuntimeError):
                await self.app.shutdown()

    async def _set_commands(self) -> None:
        """The command menu: Latin names, described in Chinese and English (and the community's language
        for everyone else)."""
        bot = self._app().bot
        zh = [BotCommand(name, zh_text) for name, zh_text, _ in COMMANDS]
        en = [BotCommand(name, en_text) for name, _, en_text in COMMANDS]
        try:
            await bot.set_my_commands(zh if self.core.community.lang == "zh" else en, scope=BotCommandScopeDefault())
            await bot.set_my_commands(zh, language_code="zh")
            await bot.set_my_commands(en, language_code="en")
        except TelegramError as error:
            log.warning("Telegram: could not register the command menu: %s", error)

    # --- updates in --------------------------------------------------------------------------
    async def take_many(self, batch: list[Stored]) -> None:
        """Updates of one chat from the inbox, in order: each translated, all handled by the core together
        (one transaction), then each finished (a press answered, held direct messages released)."""
        steps: list[Step] = []
        try:
            for stored in batch:
                update = Update.de_json(stored.payload, self._app().bot)
                if update.callback_query is not None:
                    steps.append(await self._prepare_press(update.callback_query, stored))
                elif update.message is not None:
                    steps.append(await self._prepare_message(update.message, stored))
                else:
                    await self._finish(steps)  # what came before it goes first
                    steps = []
                    if update.my_chat_member is not None and stored.id not in self._members_done:
                        await self._on_membership(update.my_chat_member)
                        self._remember_done(stored.id)  # a batch tried again (the database away) skips it
                        # marked now, not with the next quiet flush: a restart must not greet the group twice
                        with contextlib.suppress(*DATABASE_AWAY):  # the quiet flush marks it too
                            await self.core.aside(inbox.handled, self.core.engine, [stored.id],
                                                  self.core.clock.now())
                    self.finished += 1
            await self._finish(steps)
            steps = []
        finally:
            for step in steps:  # not finished: a failure while translating
                await step.forget()
            self.finished += len(steps)

    async def _finish(self, steps: list[Step]) -> None:
        handled = [step for step in steps if step.incoming is not None]
        self.handled += len(handled)
        try:
            unkept = iter(await self.handle_many([(step.incoming, step.stored) for step in handled]))  # type: ignore[misc]
            for step in steps:
                await step.after(next(unkept) if step.incoming is not None else [])
        finally:
            for step in steps:
                await step.forget()
            self.finished += len(steps)

    async def _prepare_message(self, message: Message, stored: Stored) -> Step:
        chat, me = message.chat, self._me()
        await self._learn(message.from_user)
        group = chat.type in GROUP_TYPES
        admin = False
        if group:
            admins = await self._admins(chat.id)
            admin = message.from_user is not None and message.from_user.id in admins
        await self._recall_usernames(message)
        incoming = message_incoming(message, me, sender_is_admin=admin, user_id_of=self._user_id_of,
                                    addressed=await self._answers_the_bot(message))

        async def after(unkept: list[Outgoing]) -> None:
            await self.deliver(unkept)
            if group:
                await self._tell_if_blind(str(chat.id))
            elif incoming is not None and message.from_user is not None:
                await self._release_direct(str(message.from_user.id))

        return Step(stored, incoming, after)

    async def _answers_the_bot(self, message: Message) -> bool:
        """A reply to one of the bot's messages that is about no order (its greeting, a question):
        the person is talking to the bot. Replies to cards act on their order instead."""
        reply = message.reply_to_message
        if reply is None or reply.from_user is None or reply.from_user.id != self._me().id:
            return False
        return await self.core.call(self.core.order_for_message, SERVICE, str(message.chat.id),
                                    str(reply.message_id)) is None

    async def _prepare_press(self, query: CallbackQuery, stored: Stored) -> Step:
        await self._learn(query.from_user)
        key = press_id(query.id)
        message = query.message
        admin = False
        if message is not None and message.chat.type in GROUP_TYPES:
            admin = query.from_user.id in await self._admins(message.chat.id)
        incoming = callback_incoming(query, sender_is_admin=admin)
        if incoming is None or message is None:
            await self._answer(query, None)
            return Step(stored, None, _nothing)
        self._queries[key] = query
        self._pressed[key] = message.message_id

        async def after(unkept: list[Outgoing]) -> None:  # what is kept went to the chat's lane meanwhile
            alerts = [a for a in unkept if a.kind is Kind.ALERT and a.reply_to == key]
            self._queries.pop(key, None)
            await self._answer(query, alert_text(alerts))
            await self.deliver([a for a in unkept if not (a.kind is Kind.ALERT and a.reply_to == key)])

        async def forget() -> None:
            if self._queries.pop(key, None) is not None:  # every press is answered, even when handling failed
                await self._answer(query, None)
            self._pressed.pop(key, None)

        return Step(stored, incoming, after, forget)

    async def _answer(self, query: CallbackQuery, text: str | None) -> None:
        """Every press is answered: with a short alert for who pressed it, or silently."""
        try:
            if text:
                await query.answer(text=text, show_alert=True)
            else:
                await query.answer()
        except TelegramError as error:  # too old, or answered on a first delivery
            log.info("Telegram: could not answer a button press: %s", error)

    def _remember_done(self, update_id: int) -> None:
        if len(self._members_done) > 10_000:
            self._members_done.clear()
        self._members_done.add(update_id)

    async def _on_membership(self, change: ChatMemberUpdated) -> None:
        chat = change.chat
        if chat.type not in GROUP_TYPES:
            return
        self._admin_cache.pop(chat.id, None)
        old, new = change.old_chat_member.status, change.new_chat_member.status
        lang = self.core.community.lang
        if new in PRESENT and old not in PRESENT:
            inviter = change.from_user
            if not await self.core.call(self.core.may_invite, SERVICE, str(inviter.id)):
                log.info("Telegram: %s may not add the bot; leaving %s", inviter.id, chat.id)
                await self._say(chat.id, say("declined", lang))
                with contextlib.suppress(TelegramError):
                    await self._app().bot.leave_chat(chat.id)
                return
            log.info("Telegram: added to %s (%s) by %s", chat.title, chat.id, inviter.id)
            if self.greet:
                await self._say(chat.id, say("joined", lang))
            self._told.discard(str(chat.id))
            await self._admins(chat.id)
            await self._tell_if_blind(str(chat.id))
        elif new not in PRESENT:
            log.info("Telegram: no longer in %s (%s)", chat.title, chat.id)
            await self._forget_blind(str(chat.id))
        else:
            await self._admins(chat.id)  # promoted or demoted: may it read the group now?
            if str(chat.id) not in self._blind:
                await self._forget_blind(str(chat.id))

    # --- who is who --------------------------------------------------------------------------
    async def _admins(self, chat_id: int) -> frozenset[int]:
        """The group's admins (dispatchers in zero-config), asked again after `admin_ttl` seconds."""
        now = time.monotonic()
        cached = self._admin_cache.get(chat_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        bot = self._app().bot
        try:
            members = await self._call(lambda: bot.get_chat_administrators(chat_id))
            ids, ttl = frozenset(m.user.id for m in members), self.admin_ttl
            for member in members:
                await self._learn(member.user)
        except (Undeliverable, TelegramError) as error:
            log.warning("Telegram: could not read the admins of %s: %s", chat_id, error)
            ids, ttl = (cached[1] if cached else frozenset()), min(30.0, self.admin_ttl)
        self._admin_cache[chat_id] = (now + ttl, ids)
        me = self._me()
        if me.reads_all or me.id in ids:
            self._blind.discard(str(chat_id))
        else:
            self._blind.add(str(chat_id))
        return ids

    async def _learn(self, user: User | None) -> None:
        """Remember who has an @username, so "/派单 #3 @liu" finds the person behind it."""
        if user is None or not user.username or user.is_bot:
            return
        name, uid = user.username.lower(), str(user.id)
        if self._usernames.get(name) != uid:
            self._usernames[name] = uid
            await self._keep(f"u:{name}", uid)

    async def _kept(self, key: str) -> str | None:
        """The transport's own state, read on the bookkeeping thread: on the event loop it would wait for
        the core's write transaction (SQLite transactions take the write lock when they begin)."""
        return await self.core.aside(self.state.get, key)

    async def _keep(self, key: str, value: str) -> None:
        await self.core.aside(self.state.put, key, value)

    async def _recall_usernames(self, message: Message) -> None:
        """The ids of the @usernames a message names, read from the bookkeeping (on its thread, not the
        event loop) into memory, where translating the message looks them up (`_user_id_of`)."""
        entities = message.parse_entities() if message.text else message.parse_caption_entities()
        for entity, covered in entities.items():
            name = covered.lstrip("@").lower()
            if entity.type == MessageEntity.MENTION and name not in self._usernames:
                found = await self._kept(f"u:{name}")
                if found:
                    self._usernames[name] = found

    def _user_id_of(self, username: str) -> str | None:
        return self._usernames.get(username.lower())

    # --- privacy mode ------------------------------------------------------------------------
    async def _tell_if_blind(self, chat: str) -> None:
        """Say once per group when privacy mode hides its ordinary messages: never ignore a group silently."""
        if chat not in self._blind or chat in self._told:
            return
        self._told.add(chat)
        key = f"privacy:{chat}"
        if await self._kept(key):
            return
        if await self._say(int(chat), say("privacy", self.core.community.lang, bot=self._me().username)):
            await self._keep(key, "1")
        else:
            self._told.discard(chat)

    async def _forget_blind(self, chat: str) -> None:
        self._told.discard(chat)
        if await self._kept(f"privacy:{chat}"):
            await self._keep(f"privacy:{chat}", "")

    # --- actions out -------------------------------------------------------------------------
    async def carry(self, action: Outgoing) -> None:
        match action.kind:
            case Kind.ALERT:
                query = self._queries.pop(action.reply_to or "", None)
                if query is not None:
                    await self._answer(query, alert_text([action]))
                # an alert belongs to its button press: once that is gone, it has nowhere to go
            case Kind.UPDATE_CARD:
                await self._edit_cards(action)
            case Kind.DIRECT:
                await self._direct(action)
            case _:
                if action.chat_id:
                    await self._post(action, action.chat_id, self._reply_target(action.reply_to))

    def _reply_target(self, ref: str | None) -> int | None:
        if ref and ref.startswith("cb:"):
            return self._pressed.get(ref)  # an answer to a press replies to the pressed message
        return message_ref(ref)

    def _html(self, action: Outgoing, limit: int = 4096) -> str:
        extra = None
        if action.kind is Kind.SEND and action.text.key in HINTED and action.chat_id in self._blind:
            extra = say("privacy.hint", action.lang, bot=self._me().username)
        return html_text(action, limit=limit, extra=extra)

    async def _post(self, action: Outgoing, chat: str | int, reply_to: int | None,
                    extra_rows: list[list[InlineKeyboardButton]] | None = None, text: str | None = None) -> Message:
        """Send one message (a photo with its caption where there is one); the core learns its id."""
        bot = self._bot()
        markup = keyboard(action.buttons, action.lang, extra_rows)
        text = text or self._html(action)
        chat_id: int | str = int(chat) if str(chat).lstrip("-").isdigit() else chat
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        if action.photo and is_file_id(action.photo):
            short = len(text) <= CAPTION_LIMIT
            shown = await self._photo(chat_id, action.photo, text if short else None,
                                      markup if short else None, reply)
            if shown is not None:
                await self.posted(action, str(shown.message_id))  # replies to it act on the order
                if short:
                    return shown
                reply = ReplyParameters(shown.message_id, allow_sending_without_reply=True)
        for _ in range(2):
            try:
                sent = await self._call(lambda c=chat_id: bot.send_message(  # type: ignore[misc]
                    c, text, parse_mode=ParseMode.HTML, reply_markup=markup, reply_parameters=reply))
                break
            except ChatMigrated as moved:  # a group became a supergroup: same chat, new id
                chat_id = moved.new_chat_id
        else:
            raise Undeliverable(f"chat {chat} moved more than once")
        await self.posted(action, str(sent.message_id))
        return sent

    async def _photo(self, chat_id: int | str, file_id: str, caption: str | None, markup: InlineKeyboardMarkup | None,
                     reply: ReplyParameters | None) -> Message | None:
        """The photo by its file_id (a photo sent "as a file" goes back as a file); None if Telegram won't."""
        bot = self._bot()
        try:
            return await self._call(lambda: bot.send_photo(chat_id, file_id, caption=caption,
                                                           parse_mode=ParseMode.HTML, reply_markup=markup,
                                                           reply_parameters=reply))
        except BadRequest as error:
            if "document" not in str(error).lower():
                log.info("Telegram: photo %s not shown: %s", file_id[:16], error)
                return None
        try:
            return await self._call(lambda: bot.send_document(chat_id, file_id, caption=caption,
                                                              parse_mode=ParseMode.HTML, reply_markup=markup,
                                                              reply_parameters=reply))
        except BadRequest as error:
            log.info("Telegram: photo %s not shown: %s", file_id[:16], error)
            return None

    async def _edit_cards(self, action: Outgoing) -> None:
        links = await self.core.call(self.core.cards, action.order_id or 0, SERVICE)
        if not links:
            return
        bot = self._bot()
        text = self._html(action)
        # without reply_markup an edit removes the buttons: always send the ones the card has now
        markup = keyboard(action.buttons, action.lang)
        for link in links:
            chat_id, message_id = int(link.chat), int(link.message_ref)
            try:
                await self._call(lambda c=chat_id, m=message_id: bot.edit_message_text(
                    text, chat_id=c, message_id=m, parse_mode=ParseMode.HTML, reply_markup=markup))
            except BadRequest as error:
                reason = str(error).lower()
                if "not modified" in reason:
                    continue  # the card already says this
                if "no text" in reason:  # a card posted as a photo: its caption is the card
                    with contextlib.suppress(BadRequest):
                        await self._call(lambda c=chat_id, m=message_id: bot.edit_message_caption(
                            chat_id=c, message_id=m, caption=self._html(action, CAPTION_LIMIT),
                            parse_mode=ParseMode.HTML, reply_markup=markup))
                    continue
                log.info("Telegram: card %s in %s not edited: %s", message_id, chat_id, error)

    async def _direct(self, action: Outgoing) -> None:
        """To the person's private chat; if they have not started the bot, it waits for them, and the
        group the order lives in is asked to tell them (without the message itself)."""
        contact = await self.core.call(self.core.contact, action.person_id or 0, SERVICE)
        if contact is None or contact.external_id is None or not contact.external_id.isdigit():
            return  # no Telegram account: another transport carries it
        self._bot()
        try:
            await self._post(action, contact.direct_chat or contact.external_id, None)
        except (Forbidden, BadRequest) as error:  # 403: not started, or blocked; 400: never met at all
            if isinstance(error, BadRequest) and "chat not found" not in str(error).lower():
                raise
            log.info("Telegram: %s has not started the bot (%s); holding a direct message", contact.external_id,
                     error)
            await self._hold_direct(action, contact.external_id, contact.name)

    async def _hold_direct(self, action: Outgoing, user_id: str, name: str) -> None:
        key = f"dm:{user_id}"
        held = json.loads(await self._kept(key) or "[]")
        first = not held
        held = [*held, to_json(action)][-HELD_MAX:]
        await self._keep(key, json.dumps(held, ensure_ascii=False))
        if not first:
            return  # the group was asked already
        # the order's own group (its card may still be on its way there, in that group's lane)
        group = await self.core.call(self.core.order_chat, action.order_id, SERVICE) if action.order_id else None
        if group is None:
            return
        number = action.text.params.get("number")
        about = say("dm.about", action.lang, number=number) if number is not None else ""
        marker = "\x00who\x00"
        text = escape(say("dm.fallback", action.lang, who=marker, about=about), quote=False)
        text = text.replace(marker, user_link(user_id, f"@{name}"))
        start = [[InlineKeyboardButton(say("dm.button", action.lang),
                                       url=f"https://t.me/{self._me().username}?start=dm")]]
        try:
            await self._post(replace(action, kind=Kind.SEND, chat_id=group, mentions=()), group, None,
                             extra_rows=start, text=text)
        except (TelegramError, Undeliverable) as error:  # the message itself is kept all the same
            log.warning("Telegram: could not ask %s in %s to start the bot: %s", user_id, group, error)

    async def _release_direct(self, user_id: str) -> None:
        """Someone wrote to the bot in private: the direct messages held for them go now."""
        key = f"dm:{user_id}"
        held = await self._kept(key)
        if not held:
            return
        await self._keep(key, "")
        await self.deliver([from_json(data) for data in json.loads(held)])

    async def _say(self, chat_id: int, text: str) -> bool:
        """A message of the transport's own (greeting, privacy mode); not kept if it cannot go."""
        bot = self._bot()
        try:
            await self._call(lambda: bot.send_message(chat_id, escape(text, quote=False), parse_mode=ParseMode.HTML))
            return True
        except (Undeliverable, TelegramError) as error:
            log.warning("Telegram: could not say %r… in %s: %s", text[:20], chat_id, error)
            return False

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call. 429s are the rate limiter's (it waits `retry_after` and tries again);
        network errors are tried again here with growing pauses; then `Undeliverable`."""
        pause = 0.5
        for attempt in range(self.network_tries):
            try:
                return await make()
            except (BadRequest, Forbidden, ChatMigrated):
                raise
            except RetryAfter as error:
                self.rate_limited += 1
                raise Undeliverable(f"rate limited: {error}", limited=True) from error
            except InvalidToken as error:
                raise Undeliverable("the Bot API no longer accepts the token", limited=True) from error
            except NetworkError as error:  # TimedOut included; also Telegram's 5xx
                if attempt + 1 >= self.network_tries:
                    raise Undeliverable(f"{type(error).__name__}: {error}", limited=True) from error
                log.info("Telegram: %s; trying again in %.1f s", error, pause)
                await asyncio.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")

    # --- small things ------------------------------------------------------------------------
    def _app(self) -> Application:
        if self.app is None:
            raise RuntimeError("the Telegram transport is not started")
        return self.app

    def _bot(self) -> Any:
        if self.app is None or not self._online:
            raise Undeliverable("not connected to the Bot API yet", limited=True)
        return self.app.bot

    def _me(self) -> Me:
        assert self.me is not None
        return self.me




async def _nothing(unkept: list[Outgoing]) -> None:
    return None


@dataclass
class Step:
    """One update of a batch between its translation and the core's answer."""

    stored: Stored
    incoming: Incoming | None
    after: Callable[[list[Outgoing]], Awaitable[None]]  # with what the core did not keep (a press's alert)
    cleanup: Callable[[], Awaitable[None]] | None = None
    _forgotten: bool = False

    async def forget(self) -> None:
        """Clean up once, whatever happened (a press left unanswered is answered silently)."""
        if self._forgotten or self.cleanup is None:
            return
        self._forgotten = True
        await self.cleanup()


def _lane_of(update: dict[str, Any]) -> str:
    """The chat an update belongs to (its lane: updates of one chat are handled in order)."""
    for kind in ("message", "edited_message", "my_chat_member"):
        if isinstance(found := update.get(kind), dict) and isinstance(chat := found.get("chat"), dict):
            return f"chat:{chat.get('id')}"
    query = update.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        if isinstance(message, dict) and isinstance(chat := message.get("chat"), dict):
            return f"chat:{chat.get('id')}"
        return f"user:{(query.get('from') or {}).get('id')}"
    return "other"
