"""The Matrix transport (matrix-nio): rooms in, the core's actions out.

It only translates. A sync response's events become `Incoming` values (bot/matrix/events.py), the
core answers with `Outgoing` actions, and those become room events (bot/matrix/format.py): order
cards are HTML messages edited in place with `m.replace`, buttons are numbered options pressed by
reacting 1️⃣ 2️⃣ … on the message, photos are m.image events.

What must survive a restart lives in the database: the login (access token and device), the sync
token (so a restart neither replays nor misses events), which rooms are direct rooms, the options
of each posted message, and every action that could not be sent yet (the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    LoginResponse,
    MegolmEvent,
    ProfileGetDisplayNameResponse,
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    UnknownEncryptedEvent,
    UploadResponse,
    WhoamiResponse,
)
from nio.api import MessageDirection
from sqlalchemy.engine import make_url

from bot.delivery import Undeliverable, once_key
from bot.matrix.events import (
    ADMIN_LEVEL,
    SERVICE,
    Choice,
    Me,
    Where,
    choice_of,
    creators_of,
    image_caption,
    image_info,
    message_incoming,
    power_of,
    press_for,
    reply_target,
)
from bot.matrix.format import button_data, edit_content, image_content, message_content, notice_content
from bot.matrix.media import MAX_IMAGE_BYTES, MediaStore, TooLarge, find_copy
from bot.render import say
from bot.transport import LoginFailed, Transport
from handlers.inbox import Arrival, Stored
from handlers.protocol import Incoming, Kind, Mention, Outgoing
from handlers.router import Linli
from storage.db import DATABASE_AWAY

log = logging.getLogger(__name__)
T = TypeVar("T")

DISPLAY_NAME = "邻里助手"  # given to the bot's account when it has none
MAX_JOIN_TRIES = 20  # an invitation the homeserver keeps refusing to let us join is let go
BACKFILL_MAX = 1000  # events fetched to close a gap after a long pause
SECRET_KEYS = frozenset({"access_token"})  # kept apart from the ordinary transport state
STOP_GRACE = 30.0  # seconds `stop` lets the current batch finish
PRESSES_KEPT = 1000  # reactions that pressed a button, remembered so their answers reply to the right event
_CONNECTION_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ConnectionError)


@dataclass
class Budget:
    """Seconds one delivery may spend waiting out rate limits before it parks what is left."""

    seconds: float

    def spend(self, wait: float) -> bool:
        if wait > self.seconds:
            return False
        self.seconds -= wait
        return True


@dataclass(frozen=True, slots=True)
class Pressed:
    """A reaction that pressed a button: answers go to the reacted message, naming who reacted."""

    target: str
    who: Mention


def _key(prefix: str, value: str) -> str:
    """A transport-state key (at most 64 characters) for a room or user id of any length."""
    key = f"{prefix}:{value}"
    return key if len(key) <= 64 else f"{prefix}#{hashlib.sha256(value.encode()).hexdigest()[:40]}"


def default_media_dir(database_url: str) -> Path:
    """Next to a SQLite database, else `./linli-media`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "linli-media"
    return Path("linli-media")


class MatrixTransport(Transport):
    """Carries the whole loop in Matrix rooms; `linli run` starts and stops it."""

    service = SERVICE
    title = "Matrix"

    def __init__(self, core: Linli, settings: Any, *, media_dir: Path | None = None, poll_ms: int = 30_000,
                 rate_wait: float = 20.0, max_tries: int = 5,
                 request_timeout: float = 30.0, max_image_bytes: int = MAX_IMAGE_BYTES,
                 timeline_limit: int = 50, greet: bool = True) -> None:
        if not settings.matrix_homeserver or not settings.matrix_user:
            raise ValueError("LINLI_MATRIX_HOMESERVER and LINLI_MATRIX_USER are needed")
        super().__init__(core)
        self.homeserver: str = settings.matrix_homeserver.rstrip("/")
        self.user: str = settings.matrix_user
        self._password = _secret(settings.matrix_password)
        self._token = _secret(settings.matrix_token)
        self._txn_prefix = uuid4().hex[:12]  # replaced by the stored one on login
        if not (self._password or self._token):
            raise ValueError("LINLI_MATRIX_PASSWORD or LINLI_MATRIX_TOKEN is needed")
        self.media = MediaStore(self.homeserver, media_dir or default_media_dir(getattr(
            settings, "database_url", "sqlite:///linli.db")), max_image_bytes)
        self.poll_ms = poll_ms
        self.rate_wait = rate_wait
        self.max_tries = max_tries
        self.request_timeout = request_timeout
        self.timeline_limit = timeline_limit
        self.greet = greet
        self.client: AsyncClient | None = None
        self.me: Me | None = None
        # what tests and `linli bench` read
        self.handled = 0  # events handed to the core
        self.syncs = 0
        self.rate_limited = 0  # M_LIMIT_EXCEEDED answers seen
        self.reconnects = 0
        self.backfilled = 0  # events fetched to close gaps in limited timelines
        self._since: str | None = None
        self._ready = False  # logged in and synced once: sends may go out
        self._creators: dict[str, frozenset[str]] = {}
        self._direct_rooms: dict[str, bool] = {}
        self._said: set[str] = set()
        self._declined: set[str] = set()
        self._invites: dict[str, tuple[list[Any], int]] = {}  # invitations not joined yet: state, tries
        self._pressed: OrderedDict[str, Pressed] = OrderedDict()  # the latest presses: answers go to them
        self._dm_locks: dict[str, asyncio.Lock] = {}
        self._synced = asyncio.Condition()
        self._sync_call: asyncio.Future[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- start and stop ----------------------------------------------------------------------
    async def start(self) -> None:
        """Log in and catch up with the homeserver, then keep syncing in the background.

        Wrong credentials stop start-up (`LoginFailed`); a homeserver that cannot be reached yet is
        tried again in the background, so the other transports start all the same."""
        self.stopping.clear()
        self.client = AsyncClient(self.homeserver, self.user, config=AsyncClientConfig(
            max_limit_exceeded=0, max_timeouts=0, request_timeout=self.request_timeout,
            encryption_enabled=False, store_sync_tokens=False))
        try:
            await self._connect()
            connected = True
        except LoginFailed:
            await self._close()
            raise
        except _CONNECTION_ERRORS as error:
            log.warning("Matrix: %s cannot be reached yet (%s); trying again in the background",
                        self.homeserver, error)
            connected = False
        self._tasks = [asyncio.create_task(self._run(connected), name="matrix-sync")]

    async def _connect(self) -> None:
        await self._login()
        self.me = Me.of(self._client().user_id, await self._display_name(), self.core.bot_names)
        self._since = self._recall("since")
        first = self._since is None
        response = await self._sync_once(full_state=True, timeline_limit=1 if first else self.timeline_limit)
        self._ready = True
        await self.resume()  # what a crash or a stop left to say goes first,
        await self.inbound.recover()  # then what it left to handle
        await self._process(response, history=first)  # first start: history is not ours to handle

    async def _run(self, connected: bool) -> None:
        pauses = self.pauses()
        while not connected and not self.stopping.is_set():
            await self.rest(next(pauses))
            try:
                await self._connect()
                connected = True
            except LoginFailed as error:
                log.error("Matrix: %s", error)
                return
            except _CONNECTION_ERRORS as error:
                self.reconnects += 1
                log.warning("Matrix: still cannot reach %s (%s)", self.homeserver, error)
        await self._sync_loop()

    async def stop(self) -> None:
        self.stopping.set()
        if self._sync_call is not None:
            self._sync_call.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE + self.rate_wait)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.finish_lanes()
        await self._close()

    async def _close(self) -> None:
        self._ready = False
        if self.client is not None:
            await self.client.close()
        await self.media.close()

    async def wait_synced(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until `count` more sync responses have been handled (tests, benchmarks)."""
        async with self._synced:
            target = self.syncs + count
            await asyncio.wait_for(self._synced.wait_for(lambda: self.syncs >= target), timeout)

    # --- login -------------------------------------------------------------------------------
    async def _login(self) -> None:
        """A given token wins; else the stored login of the same account; else a password login."""
        client = self._client()
        if self._token:
            client.restore_login(self.user, "", self._token)
            who = await self._whoami()
            if who is None:
                raise LoginFailed(f"LINLI_MATRIX_TOKEN is not valid on {self.homeserver}")
            self._adopt(who.user_id, who.device_id or "", self._token)
            return
        stored_user, stored_token = self._recall("user_id"), self._recall("access_token")
        if stored_user and stored_token and _same_account(stored_user, self.user):
            client.restore_login(stored_user, self._recall("device_id") or "", stored_token)
            who = await self._whoami()
            if who is not None:
                self._adopt(who.user_id, who.device_id or self._recall("device_id") or "", stored_token)
                return
            log.info("the stored Matrix login is no longer valid; logging in again")
        client.access_token = ""
        client.device_id = self._recall("device_id") if stored_user and _same_account(stored_user, self.user) \
            else None  # type: ignore[assignment]
        response = await asyncio.wait_for(client.login(self._password or "", device_name="linli"),
                                          self.request_timeout)
        if not isinstance(response, LoginResponse):
            _raise_unless_refused(response)
            raise LoginFailed(f"Matrix login as {self.user} failed: {response}")
        self._adopt(response.user_id, response.device_id, response.access_token)

    def _adopt(self, user_id: str, device_id: str, token: str) -> None:
        client = self._client()
        client.restore_login(user_id, device_id, token)
        previous = self._recall("user_id")
        if previous and previous != user_id:
            self._remember("since", "")  # another account's sync token means nothing here
        self._remember("user_id", user_id)
        self._remember("device_id", device_id)
        self._remember("access_token", token)
        self._txn_prefix = self._recall("txn") or ""
        if not self._txn_prefix:  # one per database: its outbox row ids name transactions of this database only
            self._txn_prefix = uuid4().hex[:12]
            self._remember("txn", self._txn_prefix)
        log.info("Matrix: logged in as %s (device %s)", user_id, device_id)

    async def _whoami(self) -> WhoamiResponse | None:
        """Who the token belongs to; None if the homeserver rejects the token."""
        response = await asyncio.wait_for(self._client().whoami(), self.request_timeout)
        if isinstance(response, WhoamiResponse):
            return response
        _raise_unless_refused(response)
        return None

    async def _display_name(self) -> str | None:
        client = self._client()
        response = await client.get_displayname(client.user_id)
        name = response.displayname if isinstance(response, ProfileGetDisplayNameResponse) else None
        if not name:
            with contextlib.suppress(Exception):
                await client.set_displayname(DISPLAY_NAME)
                name = DISPLAY_NAME
        return name

    # --- syncing -----------------------------------------------------------------------------
    def _filter(self, timeline_limit: int) -> dict[str, Any]:
        return {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {"timeline": {"limit": timeline_limit}, "ephemeral": {"types": []},
                     "account_data": {"types": []}, "state": {"lazy_load_members": False}},
        }

    async def _sync_once(self, *, full_state: bool = False, timeline_limit: int | None = None,
                         poll_ms: int = 0) -> SyncResponse:
        client = self._client()
        call = asyncio.ensure_future(client.sync(
            timeout=poll_ms, since=self._since or None, full_state=full_state or None,
            sync_filter=self._filter(timeline_limit or self.timeline_limit)))
        self._sync_call = call
        try:
            response = await asyncio.wait_for(call, poll_ms / 1000 + self.request_timeout)
        finally:
            self._sync_call = None
        if isinstance(response, SyncResponse):
            return response
        if isinstance(response, ErrorResponse) and response.status_code == "M_LIMIT_EXCEEDED":
            self.rate_limited += 1
            await asyncio.sleep((response.retry_after_ms or 5000) / 1000)
        if isinstance(response, ErrorResponse) and response.status_code == "M_UNKNOWN_TOKEN" and self._password:
            self._remember("access_token", "")
            await self._login()
        raise ConnectionError(f"sync failed: {response}")

    async def _sync_loop(self) -> None:
        pauses = self.pauses()
        while not self.stopping.is_set():
            try:
                response = await self._sync_once(poll_ms=self.poll_ms)
            except asyncio.CancelledError:
                if self.stopping.is_set():
                    return
                raise
            except LoginFailed as error:
                log.error("Matrix: the login was revoked and could not be renewed: %s", error)
                return
            except _CONNECTION_ERRORS as error:
                self.reconnects += 1
                pause = next(pauses)
                log.warning("Matrix sync failed (%s); trying again in %.0f s", error, pause)
                await self.rest(pause)
                continue
            try:
                await self._process(response, history=False)
                pauses = self.pauses()
            except Exception:  # not stored (the database away): the same events come again with the old token
                pause = next(pauses)
                log.exception("could not store a Matrix sync response; syncing again in %.0f s", pause)
                await self.rest(pause)

    async def _process(self, response: SyncResponse, *, history: bool) -> None:
        """Store one sync response's events in the inbox together with its token (one transaction: a restart
        goes on from there, missing nothing and repeating nothing); each room's then handled in its lane."""
        for room_id, info in response.rooms.invite.items():
            self._invites.setdefault(room_id, (info.invite_state, 0))
        for room_id, (state, tries) in list(self._invites.items()):
            await self._guard(self._invited(room_id, state, tries))
        arrivals: list[Arrival] = []
        for room_id, info in response.rooms.join.items():
            self._learn(room_id, [*info.state, *info.timeline.events])
            if not history:
                events = list(info.timeline.events)
                if info.timeline.limited and self._since and info.timeline.prev_batch:
                    events = await self._backfill(room_id, info.timeline.prev_batch, self._since) + events
                arrivals += [arrival for event in _since_own_join(events, self._client().user_id)
                             if (arrival := self._arrival(room_id, event)) is not None]
            await self._guard(self._check_encrypted(room_id))
        token = response.next_batch if response.next_batch != self._since else None
        await self.inbound.receive(arrivals, also=lambda db: self.state.put_in(db, "since", token) if token else None)
        if token:
            self._since = token
        async with self._synced:
            self.syncs += 1
            self._synced.notify_all()

    def _arrival(self, room_id: str, event: Any) -> Arrival | None:
        source = getattr(event, "source", None)
        if not isinstance(source, dict) or source.get("sender") in (None, self._client().user_id):
            return None
        encrypted = isinstance(event, MegolmEvent | UnknownEncryptedEvent)
        key = source.get("event_id") or uuid4().hex
        return Arrival(key, f"room:{room_id}", {"room": room_id, "event": source, "encrypted": encrypted})

    async def _guard(self, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception:
            log.exception("Matrix: could not handle an event")

    async def _backfill(self, room_id: str, prev_batch: str, since: str) -> list[Any]:
        """Events between the last sync and a limited timeline, oldest first."""
        found: list[Any] = []
        token = prev_batch
        while len(found) < BACKFILL_MAX:
            response = await self._client().room_messages(room_id, start=token, end=since,
                                                          direction=MessageDirection.back, limit=100)
            if not isinstance(response, RoomMessagesResponse) or not response.chunk:
                break
            found.extend(response.chunk)
            if not response.end or response.end == token:
                break
            token = response.end
        self.backfilled += len(found)
        return list(reversed(found))

    def _learn(self, room_id: str, events: list[Any]) -> None:
        for event in events:
            source = getattr(event, "source", None)
            if isinstance(source, dict) and source.get("type") == "m.room.create":
                self._creators[room_id] = creators_of(source)

    # --- events in ---------------------------------------------------------------------------
    async def take_many(self, batch: list[Stored]) -> None:
        """One room's events from the inbox, in order: translated one by one, handled by the core together."""
        handled: list[tuple[Incoming, Stored]] = []
        for stored in batch:
            try:
                incoming = await self._event(stored.payload["room"], stored.payload["event"],
                                             encrypted=bool(stored.payload.get("encrypted")))
            except DATABASE_AWAY:
                raise  # the database away: the lane tries the batch again
            except Exception:
                log.exception("Matrix: could not read an event")
                continue
            if incoming is not None:
                handled.append((incoming, stored))
        self.handled += len(handled)
        for unkept in await self.handle_many(handled):
            await self.deliver(unkept)

    async def _event(self, room_id: str, source: dict[str, Any], *, encrypted: bool = False) -> Incoming | None:
        kind = source.get("type")
        if encrypted or kind in ("m.room.encrypted", "m.room.encryption"):
            await self._say_encrypted(room_id)
            return None
        if kind == "m.room.message":
            return await self._message(room_id, source)
        if kind == "m.reaction":
            return await self._reaction(room_id, source)
        return None

    async def _message(self, room_id: str, source: dict[str, Any]) -> Incoming | None:
        content = source.get("content") or {}
        photos: tuple[str, ...] = ()
        if content.get("msgtype") == "m.image":
            mxc, size, mimetype = image_info(content)
            if mxc is None:
                return None  # an encrypted attachment: nothing we can read
            if not reply_target(content) and not image_caption(content):
                return None  # a picture shared in the group, not a report or a finished job: not ours
            await self._keep_photo(mxc, size, mimetype)
            photos = (mxc,)
        where = await self._where(room_id, source["sender"])
        incoming = message_incoming(source, where, self._me(), lambda user: self._name(room_id, user), photos)
        if incoming is None or not incoming.reply_to or photos or len(incoming.text) > 3:
            return incoming
        choice = choice_of(incoming.text)
        if choice is None or choice.follow:
            return incoming
        press = await self._press(room_id, incoming.reply_to, choice)
        return replace(incoming, text="", button=press) if press else incoming

    async def _reaction(self, room_id: str, source: dict[str, Any]) -> Incoming | None:
        relates = (source.get("content") or {}).get("m.relates_to") or {}
        target, key = relates.get("event_id"), relates.get("key")
        if not isinstance(target, str) or not isinstance(key, str) or not (choice := choice_of(key)):
            return None
        event_id, sender = source.get("event_id") or "", source["sender"]
        if choice.follow:
            # the core's "+1" rules: a reporter's own thumbs-up is no follow
            if await self.core.call(self.core.order_for_message, SERVICE, room_id, target) is None:
                return None
            press, text = None, "+1"
        else:
            press, text = await self._press(room_id, target, choice), ""
            if press is None:
                return None
        where = await self._where(room_id, sender)
        self._pressed[event_id] = Pressed(target, Mention(where.sender_name, sender))
        while len(self._pressed) > PRESSES_KEPT:
            self._pressed.popitem(last=False)
        return Incoming(service=SERVICE, chat_id=room_id, sender_id=sender, sender_name=where.sender_name,
                        text=text, message_id=event_id, chat_title=where.title, is_direct=where.is_direct,
                        reply_to=target, button=press, sender_is_admin=where.sender_is_admin)

    async def _press(self, room_id: str, target: str, choice: Choice) -> str | None:
        stored = self._recall(_key("btn", target))
        buttons = json.loads(stored) if stored else None
        return press_for(choice, buttons, await self.core.call(self.core.order_for_message, SERVICE, room_id, target))

    async def _where(self, room_id: str, sender: str) -> Where:
        room = self._client().rooms.get(room_id)
        direct = self._is_direct(room_id)
        admin = False
        if room is not None and not direct:
            if room_id not in self._creators:
                await self._fetch_creators(room_id)
            level = power_of(sender, room.power_levels.users, room.power_levels.defaults.users_default,
                             self._creators.get(room_id, frozenset()), room.room_version)
            admin = level >= ADMIN_LEVEL
        return Where(room_id=room_id, title=room.display_name if room else None, is_direct=direct,
                     sender_name=self._name(room_id, sender), sender_is_admin=admin)

    async def _fetch_creators(self, room_id: str) -> None:
        self._creators[room_id] = frozenset()  # asked once: a failure leaves the power levels alone
        response = await self._client().room_get_state(room_id)
        if isinstance(response, RoomGetStateResponse):
            for event in response.events:
                if event.get("type") == "m.room.create":
                    self._creators[room_id] = creators_of(event)

    def _name(self, room_id: str, user_id: str) -> str:
        room = self._client().rooms.get(room_id)
        name = room.user_name(user_id) if room is not None else None
        return name or user_id[1:].split(":", 1)[0]

    async def _keep_photo(self, mxc: str, size: int | None, mimetype: str | None) -> None:
        try:
            path = await self.media.keep(mxc, self._client().access_token, size=size, mimetype=mimetype)
            log.info("Matrix: kept %s as %s", mxc, path)
        except TooLarge as error:
            log.warning("Matrix: no local copy of a photo: %s", error)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("Matrix: could not download %s: %s", mxc, error)

    # --- rooms -------------------------------------------------------------------------------
    async def _invited(self, room_id: str, invite_state: list[Any], tries: int = 0) -> None:
        """Join, then greet; or, when the inviter may not invite the bot, say why and leave."""
        me = self._client().user_id
        inviter, direct, encrypted = None, False, False
        for event in invite_state:
            source = getattr(event, "source", {}) or {}
            if source.get("type") == "m.room.member" and source.get("state_key") == me:
                inviter = source.get("sender")
                direct = bool((source.get("content") or {}).get("is_direct"))
            elif source.get("type") == "m.room.encryption":
                encrypted = True
        budget = Budget(self.rate_wait)
        try:
            await self._call(budget, self._client().join, room_id)
        except Undeliverable as error:
            # an invitation is in one sync response only: try again with the next ones, a few times
            if tries + 1 < MAX_JOIN_TRIES:
                self._invites[room_id] = (invite_state, tries + 1)
            else:
                self._invites.pop(room_id, None)
            log.warning("Matrix: could not join %s (try %d): %s", room_id, tries + 1, error)
            return
        self._invites.pop(room_id, None)
        if not direct and not (inviter and await self.core.call(self.core.may_invite, SERVICE, inviter)):
            self._declined.add(room_id)
            log.info("Matrix: %s may not invite the bot; leaving %s", inviter, room_id)
            with contextlib.suppress(Undeliverable):
                await self._send(room_id, notice_content(say("declined", self.core.community.lang)), budget)
            with contextlib.suppress(Undeliverable):
                await self._call(budget, self._client().room_leave, room_id)
            return
        log.info("Matrix: joined %s (invited by %s%s)", room_id, inviter, ", direct" if direct else "")
        if direct and inviter:
            self._mark_direct(room_id, inviter)
        if encrypted:
            await self._say_encrypted(room_id)
        elif self.greet and not direct:
            with contextlib.suppress(Undeliverable):
                await self._send(room_id, notice_content(say("joined", self.core.community.lang)), budget)

    async def _check_encrypted(self, room_id: str) -> None:
        room = self._client().rooms.get(room_id)
        if room is not None and room.encrypted:
            await self._say_encrypted(room_id)

    async def _say_encrypted(self, room_id: str) -> None:
        """Say once per room that its messages are out of reach: never ignore a room silently."""
        key = _key("enc", room_id)
        if room_id in self._said or room_id in self._declined or self._recall(key):
            self._said.add(room_id)
            return
        self._said.add(room_id)
        try:
            await self._send(room_id, notice_content(say("encrypted", self.core.community.lang)),
                             Budget(self.rate_wait))
        except Undeliverable as error:
            self._said.discard(room_id)
            log.warning("Matrix: could not warn %s about encryption: %s", room_id, error)
            return
        self._remember(key, "1")

    def _is_direct(self, room_id: str) -> bool:
        if room_id not in self._direct_rooms:
            self._direct_rooms[room_id] = bool(self._recall(_key("dmroom", room_id)))
        return self._direct_rooms[room_id]

    def _mark_direct(self, room_id: str, user_id: str) -> None:
        self._direct_rooms[room_id] = True
        self._remember(_key("dmroom", room_id), user_id)
        self._remember(_key("dm", user_id), room_id)

    async def direct_room(self, user_id: str, known: str | None = None) -> str:
        """The direct room with `user_id`: the one they use or we made before, else a new one."""
        lock = self._dm_locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            for room_id in (known, self._recall(_key("dm", user_id))):
                if room_id and self._still_with(room_id, user_id):
                    return room_id
            response = await self._call(Budget(self.rate_wait), self._client().room_create, is_direct=True,
                                        invite=[user_id], preset=RoomPreset.trusted_private_chat)
            assert isinstance(response, RoomCreateResponse)
            self._mark_direct(response.room_id, user_id)
            return response.room_id

    def _still_with(self, room_id: str, user_id: str) -> bool:
        """False only when we know the person left; a room not synced yet is trusted."""
        room = self._client().rooms.get(room_id)
        if room is None:
            return True
        return user_id in room.users or user_id in room.invited_users

    # --- actions out -------------------------------------------------------------------------
    def carrier(self) -> Callable[[Outgoing], Awaitable[None]]:
        """Each batch may spend `rate_wait` seconds in all waiting out rate limits, then what is left parks."""
        budget = Budget(self.rate_wait)
        return lambda action: self._carry(action, budget)

    async def carry(self, action: Outgoing) -> None:
        await self._carry(action, Budget(self.rate_wait))

    async def _carry(self, action: Outgoing, budget: Budget) -> None:
        if self.client is None or not self._ready:
            raise Undeliverable("not connected to the homeserver yet")
        if action.kind is Kind.UPDATE_CARD:
            for link in await self.core.call(self.core.cards, action.order_id or 0, SERVICE):
                await self._send(link.chat, edit_content(action, link.message_ref), budget)
                self._keep_buttons(link.message_ref, action)
            return
        room_id, reply_to, to = action.chat_id, action.reply_to, None
        pressed = self._pressed.get(reply_to or "")
        if pressed is not None:
            reply_to = pressed.target
            to = pressed.who if action.kind is Kind.ALERT else None
        if action.kind is Kind.DIRECT:
            contact = await self.core.call(self.core.contact, action.person_id or 0, SERVICE)
            if contact is None or contact.external_id is None:
                return  # no Matrix account: another transport carries it
            room_id, reply_to = await self.direct_room(contact.external_id, contact.direct_chat), None
        if not room_id:
            return
        if action.photo:
            image = await self._post_photo(room_id, action, budget)
            if image:
                await self.posted(action, image)
        event_id = await self._send(room_id, message_content(action, reply_to=reply_to, to=to), budget)
        await self.posted(action, event_id)
        self._keep_buttons(event_id, action)

    def _keep_buttons(self, event_id: str, action: Outgoing) -> None:
        data = button_data(action.buttons)
        key = _key("btn", event_id)
        if data or self._recall(key):
            self._remember(key, json.dumps(data))

    async def _post_photo(self, room_id: str, action: Outgoing, budget: Budget) -> str | None:
        ref = action.photo or ""
        mxc, mimetype, size = ref, None, None
        if not ref.startswith("mxc://"):
            path = Path(ref)
            if not path.is_file() or path.stat().st_size > self.media.limit:
                log.info("Matrix: photo %r is no file here; posting the text alone", ref)
                return None
            mxc = await self._upload(path, budget)
            size = path.stat().st_size
        else:
            copy = find_copy(self.media.media_dir, ref)
            if copy is not None:
                mimetype, size = mimetypes.guess_type(copy.name)[0], copy.stat().st_size
        return await self._send(room_id, image_content(mxc, action.lang, mimetype=mimetype, size=size), budget)

    async def _upload(self, path: Path, budget: Budget) -> str:
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

        async def upload() -> Any:
            with path.open("rb") as data:
                response, _ = await self._client().upload(data, content_type=mimetype, filename=path.name,
                                                          filesize=path.stat().st_size)
                return response

        response = await self._call(budget, upload)
        assert isinstance(response, UploadResponse)
        return response.content_uri

    async def _send(self, room_id: str, content: dict[str, Any], budget: Budget,
                    event_type: str = "m.room.message") -> str:
        # the same transaction id on every try, and for an outbox row posted again after a crash: the
        # homeserver drops the repeat
        key = once_key()
        txn = f"{self._txn_prefix}-{key}" if key else uuid4().hex
        response = await self._call(budget, self._client().room_send, room_id, event_type, content, tx_id=txn)
        assert isinstance(response, RoomSendResponse)
        return response.event_id

    async def _call(self, budget: Budget, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One homeserver call. M_LIMIT_EXCEEDED waits `retry_after_ms` while the budget lasts, a bounded
        number of times; then, and on any other failure, `Undeliverable`."""
        for attempt in range(self.max_tries):
            try:
                response = await asyncio.wait_for(call(*args, **kwargs), self.request_timeout)
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                raise Undeliverable(f"{type(error).__name__}: {error}") from error
            if not isinstance(response, ErrorResponse):
                return response
            if response.status_code not in ("M_LIMIT_EXCEEDED", 429):
                raise Undeliverable(f"{response.status_code}: {response.message}")
            self.rate_limited += 1
            wait = (response.retry_after_ms or 1000 * 2**attempt) / 1000
            if not budget.spend(wait):
                raise Undeliverable(f"rate limited: retry after {wait:.1f} s", limited=True)
            log.info("Matrix: rate limited; waiting %.1f s as the homeserver asks", wait)
            await asyncio.sleep(wait)
        raise Undeliverable(f"rate limited {self.max_tries} times", limited=True)

    # --- small things ------------------------------------------------------------------------
    def _client(self) -> AsyncClient:
        if self.client is None:
            raise RuntimeError("the Matrix transport is not started")
        return self.client

    def _me(self) -> Me:
        assert self.me is not None
        return self.me

    def _recall(self, key: str) -> str | None:
        return (self.secrets if key in SECRET_KEYS else self.state).get(key)

    def _remember(self, key: str, value: str) -> None:
        (self.secrets if key in SECRET_KEYS else self.state).put(key, value)


def _since_own_join(events: list[Any], me: str) -> list[Any]:
    """Events from our own (latest) join on: what was said before the bot came in is not its business."""
    start = 0
    for index, event in enumerate(events):
        source = getattr(event, "source", None) or {}
        if (source.get("type") == "m.room.member" and source.get("state_key") == me
                and (source.get("content") or {}).get("membership") == "join"
                and ((source.get("unsigned") or {}).get("prev_content") or {}).get("membership") != "join"):
            start = index + 1
    return events[start:]


def _raise_unless_refused(response: Any) -> None:
    """A homeserver that is busy, rate-limiting or failing is a connection problem, not a bad login."""
    code = getattr(response, "status_code", None)
    if code not in ("M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED", "M_INVALID_USERNAME"):
        raise ConnectionError(f"the homeserver answered {response}")


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _same_account(stored: str, configured: str) -> bool:
    """"@bot:example.org" and "bot" name the same account."""
    return stored == configured or stored[1:].split(":", 1)[0] == configured.lstrip("@").split(":", 1)[0]


