"""Privacy: phone and ID numbers never reach a group; private matters (私事) keep their details in a DM."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from handlers.protocol import Kind, Outgoing, Text
from handlers.triage.normalize import mask_private


def shield(actions: list[Outgoing]) -> list[Outgoing]:
    """Mask every phone and ID number in what goes to a chat; direct messages keep them."""
    return [action if action.kind is Kind.DIRECT or (masked := _masked(action.text)) is action.text
            else replace(action, text=masked) for action in actions]


def _masked(text: Text) -> Text:
    """The text with its parameters masked; the same object when there was nothing to mask."""
    params = {name: _mask(value) for name, value in text.params.items()}
    if params == text.params:
        return text
    return Text(text.key, params)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_private(value)
    if isinstance(value, list | tuple):
        return type(value)(_mask(item) for item in value)
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    return value
