"""The console transport: a local group chat in the terminal, and the harness the tests and demo use.

Everyone is typed by name: `/as 王阿姨` switches who speaks, `/in 群名` which chat you are in.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.render import render
from bot.transport import Transport
from handlers import inbox, outbox
from handlers.inbox import Arrival
from handlers.protocol import Button, Incoming, Kind, Mention, Outgoing
from handlers.router import Linli

SERVICE = "console"


@dataclass
class Posted:
    """A message as it stands in the console chat."""

    id: str
    chat: str
    author: str
    text: str
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (label, data)
    order_id: int | None = None
    photo: str | None = None
    edits: int = 0
    private_to: str | None = None  # an alert only its presser sees


class ConsoleChat(Transport):
    """Talks to the core the way a chat service would, and keeps the transcript. Its answers go through
    the same in-order delivery as Telegram's and Matrix's, so the chat tests exercise that path too."""

    service = SERVICE
    title = "Console"

    def __init__(self, core: Linli, *, bot_name: str = "邻里助手",
                 on_post: Callable[[Posted, bool], None] | None = None) -> None:
        super().__init__(core)
        self.bot_name = bot_name
        self.messages: list[Posted] = []
        self._shown: list[Posted] = []  # what the delivery under way posted or edited
        self.admins: set[str] = set()
        self._ids = itertools.count(1)
        self._session = secrets.token_hex(3)  # message ids stay unique across console sessions on one database
        self._on_post = on_post

    # --- people speak ----------------------------------------------------------------------
    def say(self, who: str, text: str = "", *, chat: str = "群", photos: tuple[str, ...] = (),
            reply_to: Posted | str | None = None, message_id: str | None = None,
            direct: bool = False) -> list[Posted]:
        direct = direct or chat.startswith("私聊")  # the console's direct messages: /in 私聊
        posted = self._post(Posted(message_id or f"{self._session}-m{next(self._ids)}", chat, who, text,
                                   photo=photos[0] if photos else None))
        reply_ref = reply_to.id if isinstance(reply_to, Posted) else reply_to
        incoming = Incoming(
            service=SERVICE, chat_id=chat, sender_id=who, sender_name=who, text=text,
            message_id=posted.id, chat_title=chat, is_direct=direct, photos=photos, reply_to=reply_ref,
            mentions_bot=f"@{self.bot_name}" in text, sender_is_admin=who in self.admins, known_by_name=True,
        )
        return self.hand_in(incoming)

    def press(self, who: str, label: str, message: Posted | None = None) -> list[Posted]:
        """Press the button labelled `label` (or with that data) on `message`, or the latest that has it."""
        target, data = self._find_button(label, message)
        incoming = Incoming(
            service=SERVICE, chat_id=target.chat, sender_id=who, sender_name=who, button=data,
            message_id=f"{self._session}-cb{next(self._ids)}", reply_to=target.id, sender_is_admin=who in self.admins,
            known_by_name=True,
        )
        return self.hand_in(incoming)

    def _find_button(self, label: str, message: Posted | None) -> tuple[Posted, str]:
        candidates = [message] if message else reversed(self.messages)
        for posted in candidates:
            for text, data in posted.buttons:
                if label in (text, data):
                    return posted, data
        raise LookupError(f"no button {label!r}")

    def hand_in(self, incoming: Incoming) -> list[Posted]:
        """As every service's updates: stored in the inbox first, then handled from there; what the bot says
        is queued in the outbox and marked sent as it is shown. A console killed in between finishes the
        message on its next start (`recover`). The same message handed in twice is handled once."""
        now = self.core.clock.now()
        arrival = Arrival(f"{incoming.chat_id}\x1f{incoming.message_id}", f"chat:{incoming.chat_id}",
                          as_payload(incoming))
        stored = inbox.store_now(self.engine, SERVICE, [arrival], now)
        return self._handle_stored(incoming, stored[0].id) if stored else []

    def recover(self) -> list[Posted]:
        """What a console stopped or killed mid-message left: its answers not shown yet, then the messages it
        had stored and not handled. Returns what was shown."""
        shown: list[Posted] = []
        for row, action, _ in outbox.claim(self.engine, self.core.owner, self.core.clock.now(), service=SERVICE):
            shown += self._show(action, row)
        for stored in inbox.waiting(self.engine, SERVICE):
            shown += self._handle_stored(from_payload(stored.payload), stored.id)
        return shown

    def _handle_stored(self, incoming: Incoming, inbox_id: int) -> list[Posted]:
        queued = self.core.take(incoming, inbox_id, self.core.owner)
        if not queued:  # nothing to say (chatter) or handled before: marked here, not by the core
            inbox.handled(self.engine, [inbox_id], self.core.clock.now())
        shown: list[Posted] = []
        for row, action in queued:
            if action.service in ("", SERVICE):
                shown += self._show(action, row)
            elif row is not None:  # another service's (a card edit where the order lives): its transport's
                outbox.release(self.engine, [row], self.core.owner)
        return shown

    def _show(self, action: Outgoing, row: int | None) -> list[Posted]:
        """Show one action; its outbox row is marked sent with the messages it became, in one write."""
        if action.kind is Kind.UPDATE_CARD:
            shown, links = self._edit_cards(action), []
        else:
            posted = self._post(self._as_posted(action))
            shown = [posted]
            links = [(action, posted.id)] if action.kind in (Kind.SEND, Kind.CARD) else []
        if row is not None:
            self.core.posted(row, links)
        else:
            for linked, ref in links:
                self.core.sent(linked, ref)
        return shown

    # --- the bot answers -------------------------------------------------------------------
    async def start(self) -> None:
        """Nothing to connect to: the terminal is always there."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def deliver(self, actions: list[Outgoing]) -> None:
        self._shown = []
        await super().deliver(actions)

    def deliver_now(self, actions: list[Outgoing]) -> list[Posted]:
        """`deliver`, for callers without an event loop (the tests, the terminal). Posting to the terminal never
        waits, so the coroutine runs to its end in one step."""
        step = self.deliver(actions)
        try:
            step.send(None)
        except StopIteration:
            return self._shown
        step.close()
        raise RuntimeError("console delivery had to wait: it parked an action")

    async def carry(self, action: Outgoing) -> None:
        self._shown.extend(self._show(action, None))

    def _as_posted(self, action: Outgoing) -> Posted:
        text = render(action.text, action.lang)
        chat = action.chat_id
        private = None
        if action.kind is Kind.DIRECT:
            contact = self.core.contact(action.person_id or 0, SERVICE)
            chat = f"私聊:{contact.name if contact else action.person_id}"
        elif action.kind is Kind.ALERT:
            private = "presser"
        return Posted(f"{self._session}-b{next(self._ids)}", chat, self.bot_name, text,
                      _labels(action.buttons, action.lang), action.order_id, action.photo, private_to=private)

    def _edit_cards(self, action: Outgoing) -> list[Posted]:
        refs = {link.message_ref for link in self.core.cards(action.order_id or 0, SERVICE)}
        edited = []
        for posted in self.messages:
            if posted.id in refs:
                posted.text = render(action.text, action.lang)
                posted.buttons = _labels(action.buttons, action.lang)
                posted.edits += 1
                edited.append(posted)
                if self._on_post:
                    self._on_post(posted, True)
        return edited

    def _post(self, posted: Posted) -> Posted:
        self.messages.append(posted)
        if self._on_post:
            self._on_post(posted, False)
        return posted

    # --- reading the transcript ------------------------------------------------------------
    def bot_said(self, chat: str | None = None) -> list[Posted]:
        return [m for m in self.messages if m.author == self.bot_name and (chat is None or m.chat == chat)]

    def last(self, chat: str | None = None) -> Posted:
        return self.bot_said(chat)[-1]

    def card(self, number: int) -> Posted:
        """The card of order #number: the first message the bot posted about it."""
        return next(m for m in self.bot_said() if m.order_id and f"#{number} " in m.text)


def as_payload(incoming: Incoming) -> dict[str, Any]:
    """How a console message is kept in the inbox."""
    return asdict(incoming)


def from_payload(payload: dict[str, Any]) -> Incoming:
    """An update as stored in the inbox, again (JSON made its tuples lists)."""
    return Incoming(**{**payload, "photos": tuple(payload.get("photos", ())),
                       "mentions": tuple(Mention(**m) for m in payload.get("mentions", ()))})


def _labels(rows: tuple[tuple[Button, ...], ...], lang: str) -> list[tuple[str, str]]:
    return [(render(button.label, lang), button.data) for row in rows for button in row]
