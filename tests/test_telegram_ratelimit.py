"""Telegram's limits per chat: a group that must wait holds up no other group."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.telegram.ratelimit import ChatRateLimiter

# PTB's RetryAfter warns about its own int attribute whenever it is made; nothing of ours reads that
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


class Calls:
    """What reached "Telegram": each call's method and chat; the first call into `flooded` gets a 429."""

    def __init__(self, flooded: str | None = None) -> None:
        self.made: list[tuple[str, str]] = []
        self.flooded = flooded

    def request(self, limiter: ChatRateLimiter, method: str, chat: int) -> asyncio.Task[Any]:
        async def call() -> dict[str, Any]:
            if str(chat) == self.flooded:
                self.flooded = None
                raise RetryAfter(timedelta(seconds=30))
            self.made.append((method, str(chat)))
            return {"ok": True}

        return asyncio.ensure_future(limiter.process_request(call, (), {}, method, {"chat_id": chat}, None))


async def test_a_429_in_one_group_holds_up_that_group_only() -> None:
    calls, limiter = Calls(flooded="-100"), ChatRateLimiter()
    busy = calls.request(limiter, "sendMessage", -100)  # Telegram: retry after 30 s
    quiet = calls.request(limiter, "sendMessage", -200)
    admins = calls.request(limiter, "getChatAdministrators", -300)
    await asyncio.wait_for(asyncio.gather(quiet, admins), 2)
    assert not busy.done(), "the flooded group waits its 30 seconds"
    assert calls.made == [("sendMessage", "-200"), ("getChatAdministrators", "-300")]
    busy.cancel()


async def test_a_group_gets_its_messages_a_minute_and_no_burst_beyond() -> None:
    calls, limiter = Calls(), ChatRateLimiter(group_messages=3)
    first = [calls.request(limiter, "sendMessage", -100) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*first), 2)
    fourth = calls.request(limiter, "sendMessage", -100)
    edit = calls.request(limiter, "editMessageText", -100)  # an edit posts nothing new: it does not wait
    private = [calls.request(limiter, "sendMessage", 42) for _ in range(5)]  # a person's chat: no group window
    other = calls.request(limiter, "sendMessage", -200)
    await asyncio.wait_for(asyncio.gather(edit, other, *private), 2)
    assert not fourth.done(), "a fourth message into the same group waits for the window"
    assert calls.made.count(("sendMessage", "-100")) == 3
    fourth.cancel()


async def test_what_was_sent_before_a_restart_still_counts() -> None:
    calls, limiter = Calls(), ChatRateLimiter(group_messages=3)
    for ago in (50.0, 30.0, 10.0):  # the killed process posted three messages into the group lately
        limiter.remember("-100", ago)
    limiter.remember("-100", 90.0)  # this one is older than the window: it no longer counts
    waiting = calls.request(limiter, "sendMessage", -100)
    other = calls.request(limiter, "sendMessage", -200)
    await asyncio.wait_for(other, 2)
    assert not waiting.done(), "the group's window is full from before the restart"
    waiting.cancel()
