"""Telegram's limits, kept per chat: a group waiting out its limit holds up no other group.

Telegram lets a bot send about 30 messages a second overall and 20 a minute into one group, and answers
`429 Too Many Requests` with `retry_after` beyond that. PTB's own `AIORateLimiter` lets a group start with a
burst (its bucket refills as it goes, so about 40 go out in the first minute, which a strict server
refuses), and on any 429 it pauses every call of the bot, in every chat, for the whole `retry_after`.
Here a group gets at most 20 messages in any 61 seconds, a 429 holds up only the chat it was about, and
calls that post nothing (reading a group's admins, answering a button press) never wait for a group's
window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)
GROUP_MESSAGES, GROUP_WINDOW = 20, 61.0  # a second more than Telegram's minute: the server's clock is not ours
OVERALL_MESSAGES, OVERALL_WINDOW = 30, 1.0
POSTING = ("send", "copy", "forward")  # methods that put a new message in a chat: what the limits count


class ChatRateLimiter(BaseRateLimiter[None]):
    """Spaces what is posted into each group and overall; a 429 waits in its own chat only."""

    def __init__(self, *, group_messages: int = GROUP_MESSAGES, group_window: float = GROUP_WINDOW,
                 overall_messages: int = OVERALL_MESSAGES, overall_window: float = OVERALL_WINDOW,
                 max_retries: int = 3) -> None:
        self.group = (group_messages, group_window)
        self.overall = (overall_messages, overall_window)
        self.max_retries = max_retries
        self._sent: defaultdict[str, deque[float]] = defaultdict(deque)  # when each chat's last messages went
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._held_until: dict[str, float] = {}  # a chat Telegram told to wait (429), until when

    def remember(self, chat: str, ago: float) -> None:
        """A message went into `chat` `ago` seconds ago (sent by the process before a restart): it counts.
        Give them oldest first."""
        when = asyncio.get_running_loop().time() - ago
        if _is_group(chat) and 0 <= ago < self.group[1]:
            self._sent[chat].append(when)
        if 0 <= ago < self.overall[1]:
            self._sent[""].append(when)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | None]],
                              args: Any, kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                              rate_limit_args: None) -> bool | dict[str, Any] | None:
        chat = str(data["chat_id"]) if data.get("chat_id") is not None else ""
        posting = bool(chat) and endpoint.lower().startswith(POSTING)
        for attempt in range(self.max_retries + 1):
            await self._held(chat)
            if posting:
                if _is_group(chat) and self.group[0] > 0:
                    await self._turn(chat, *self.group)
                if self.overall[0] > 0:
                    await self._turn("", *self.overall)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                if attempt >= self.max_retries:
                    raise
                wait = _seconds(error)
                log.info("Telegram: %s in %s rate limited; that chat waits %.1f s", endpoint, chat or "-", wait)
                loop = asyncio.get_running_loop()
                self._held_until[chat] = max(self._held_until.get(chat, 0.0), loop.time() + wait + 0.1)
        raise AssertionError("unreachable")

    async def _held(self, chat: str) -> None:
        """Wait while Telegram told this chat (or, for calls about no chat, the bot) to wait."""
        until = self._held_until.get(chat)
        if until is not None:
            delay = until - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(KeyError):
                    del self._held_until[chat]

    async def _turn(self, key: str, most: int, window: float) -> None:
        """Wait until a message more keeps `key` within `most` messages in any `window` seconds; count it."""
        async with self._locks[key]:  # the chat's next message waits behind this one; other chats do not
            loop = asyncio.get_running_loop()
            sent = self._sent[key]
            while True:
                now = loop.time()
                while sent and now - sent[0] >= window:
                    sent.popleft()
                if len(sent) < most:
                    sent.append(now)
                    return
                await asyncio.sleep(sent[0] + window - now)


def _seconds(error: RetryAfter) -> float:
    """How long Telegram asks to wait (read without PTB's deprecation warning about int seconds)."""
    period = getattr(error, "_retry_after", None)
    return period.total_seconds() if period is not None else 1.0


def _is_group(chat: str) -> bool:
    """Groups and channels have negative ids (or an @name); a person's private chat a positive one."""
    return chat.startswith(("-", "@"))
