"""The one command spec: every command has its names, usage, help and permission, and the parser, the router,
the help text and the Telegram menu all follow it."""

from __future__ import annotations

import re

import pytest

from bot.render import TELEGRAM_MENU, render
from handlers.commands import SPECS, parse
from handlers.lifecycle import PERMISSIONS
from handlers.protocol import Text
from tests.neighbourhood import Neighbourhood


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.verb)
def test_every_command_is_whole(spec) -> None:  # type: ignore[no-untyped-def]
    assert spec.zh and spec.en and spec.usage_zh.startswith(f"/{spec.zh}") and spec.usage_en.startswith(f"/{spec.en}")
    assert spec.help_zh and spec.help_en
    assert spec.action is None or spec.action in PERMISSIONS
    for name in spec.names:
        command = parse(f"/{name} #1")
        assert command is not None and command.verb == spec.verb, name
    assert f"{spec.usage_zh} — {spec.help_zh}" in render(Text("help"), "zh")
    assert f"{spec.usage_en} — {spec.help_en}" in render(Text("help"), "en")


def test_no_name_means_two_commands() -> None:
    names = [name.lower() for spec in SPECS for name in spec.names]
    assert len(names) == len(set(names))


def test_the_telegram_menu_is_the_spec() -> None:
    assert [name for name, _, _ in TELEGRAM_MENU] == [spec.en for spec in SPECS if spec.menu]
    for name, zh, en in TELEGRAM_MENU:
        assert re.fullmatch(r"[a-z0-9_]{1,32}", name) and 3 <= len(zh) <= 256 and 3 <= len(en) <= 256


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.verb)
def test_the_router_knows_every_command(hood: Neighbourhood, spec) -> None:  # type: ignore[no-untyped-def]
    hood.say("张书记", f"/{spec.zh}")
    assert hood.heard, f"/{spec.zh} got no answer"
    assert "不认识的命令" not in hood.answer()
