"""What the kill -9 tests of `linli run` on Telegram share: the rule for a card posted twice, and reading cards."""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from tests.servers.telegram_api import BotMessage, Chat, TelegramApiServer

LINLI = Path(sys.executable).with_name("linli")
# Telegram's sendMessage has no idempotency key: a card Telegram accepted just before a SIGKILL, before Linli
# could note that it went out, may honestly be posted again after the restart (the only alternative is to
# risk losing it). A repeated card is forgiven only then: when Telegram accepted the first one at most this
# many seconds before a kill, or from the dying process itself. Set it to 0 to demand one card even then.
IN_FLIGHT = 1.0
LAST_GASP = 0.5  # seconds after a killed process is reaped in which the server may still log its last request
CARD = "已登记"
NUMBER = re.compile(r"#(\d+)")
# Everyday, non-urgent problems: no red alert, no "possible emergency" question to share a group's send budget.
PROBLEMS = ("楼道灯不亮了", "垃圾桶满了没人清", "单元门禁刷不开", "门口路灯坏了", "绿化带杂草太高了",
            "楼下自行车乱停", "楼道墙皮脱落", "快递柜屏幕不亮", "健身器材螺丝松了", "信箱门关不上")


def cards_in(tg: TelegramApiServer, groups: list[Chat]) -> list[BotMessage]:
    return [message for group in groups for message in tg.bot_messages(group) if CARD in (message.text or "")]


def accepted(tg: TelegramApiServer) -> dict[tuple[int, int], float]:
    """When Telegram accepted each message the bot sent: (chat id, message id) → time.time()."""
    sends = ("sendMessage", "sendPhoto", "sendDocument")
    return {(call.result["chat"]["id"], call.result["message_id"]): call.at for call in tg.calls
            if call.ok and call.method in sends and isinstance(call.result, dict)}


def reused_numbers(cards: list[BotMessage], markers_of: Callable[[BotMessage], list[str]]) -> dict[int, list[str]]:
    """Order numbers shown on the cards of different reports (each number must name one report)."""
    numbered: dict[int, set[str]] = defaultdict(set)
    for card in cards:
        for n in NUMBER.findall(card.text or "")[:1]:
            numbered[int(n)].update(markers_of(card))
    return {n: sorted(markers) for n, markers in numbered.items() if len(markers) > 1}
