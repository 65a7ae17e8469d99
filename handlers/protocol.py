"""The one seam between the core and every chat service.

A transport turns what its service delivers into an `Incoming`, calls the core, and turns the
`Outgoing` actions that come back into its service's calls. Outgoing texts are `Text` values (a
catalogue key plus parameters) so the core never holds user-facing wording: `bot/render.py` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Text:
    """A message to render: a catalogue key and its parameters."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Button:
    label: Text
    data: str  # opaque, short, no secrets: "acc:42"; state lives in the database


@dataclass(frozen=True, slots=True)
class Mention:
    """Someone named in a message, resolved by the transport where the service can."""

    name: str
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Incoming:
    service: str  # the chat service, as its transport names itself
    chat_id: str  # the service's id of the chat or room
    sender_id: str  # the service's id of the sender
    sender_name: str
    text: str = ""
    message_id: str | None = None  # used to drop duplicate deliveries
    chat_title: str | None = None
    is_direct: bool = False
    photos: tuple[str, ...] = ()  # service file references (file_id, mxc://…, path)
    reply_to: str | None = None  # message id this message answers
    button: str | None = None  # Button.data of a pressed button
    mentions: tuple[Mention, ...] = ()
    mentions_bot: bool = False
    sender_is_admin: bool = False  # a chat admin: a dispatcher in zero-config
    known_by_name: bool = False  # the service names people by their name (a local chat): match the roster by it


class Kind(StrEnum):
    SEND = "send"  # a message to a chat
    CARD = "card"  # post an order card to a chat
    UPDATE_CARD = "update_card"  # edit every posted card of an order in place
    DIRECT = "direct"  # a direct message to a person
    ALERT = "alert"  # a short answer to a button press, seen only by who pressed it


@dataclass(frozen=True, slots=True)
class Outgoing:
    kind: Kind
    text: Text
    lang: str = "zh"
    service: str = ""
    chat_id: str = ""  # for SEND and CARD
    person_id: int | None = None  # for DIRECT
    order_id: int | None = None  # the order this is about, so replies to it act on the order
    reply_to: str | None = None
    buttons: tuple[tuple[Button, ...], ...] = ()
    photo: str | None = None  # a service file reference to show with the message
    mentions: tuple[Mention, ...] = ()


@dataclass(frozen=True, slots=True)
class CardRef:
    """Where one of an order's messages stands on a service: what a transport needs to edit it."""

    chat: str
    message_ref: str
    is_card: bool


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach a person on one service, as plain data (never a database row)."""

    person_id: int
    name: str
    lang: str | None
    external_id: str | None  # their id on that service; None when they have no account there
    direct_chat: str | None  # the service's private chat with them, once known


def to_json(action: Outgoing) -> dict[str, Any]:
    """An action as plain data, to park it in the outbox."""
    return {
        "kind": action.kind.value,
        "text": {"key": action.text.key, "params": action.text.params},
        "lang": action.lang,
        "service": action.service,
        "chat_id": action.chat_id,
        "person_id": action.person_id,
        "order_id": action.order_id,
        "reply_to": action.reply_to,
        "buttons": [[{"label": _text_json(b.label), "data": b.data} for b in row] for row in action.buttons],
        "photo": action.photo,
        "mentions": [{"name": m.name, "external_id": m.external_id} for m in action.mentions],
    }


def from_json(data: dict[str, Any]) -> Outgoing:
    return Outgoing(
        kind=Kind(data["kind"]),
        text=Text(data["text"]["key"], data["text"]["params"]),
        lang=data["lang"],
        service=data["service"],
        chat_id=data["chat_id"],
        person_id=data["person_id"],
        order_id=data["order_id"],
        reply_to=data["reply_to"],
        buttons=tuple(
            tuple(Button(Text(b["label"]["key"], b["label"]["params"]), b["data"]) for b in row)
            for row in data["buttons"]
        ),
        photo=data["photo"],
        mentions=tuple(Mention(m["name"], m["external_id"]) for m in data["mentions"]),
    )


def _text_json(text: Text) -> dict[str, Any]:
    return {"key": text.key, "params": text.params}
