"""Matrix events in: what a room event means for the core, read from the event's own JSON.

Pure functions over the event dicts the homeserver sends (`event.source` in matrix-nio), so they are
tested on recorded payloads as well as against a live Synapse.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from handlers.buttons import Verb, press_data
from handlers.protocol import Incoming, Mention

SERVICE = "matrix"
ADMIN_LEVEL = 50  # Matrix's "moderator": the chat admins who dispatch in zero-config
KEYCAPS = tuple(f"{n}\ufe0f\u20e3" for n in range(1, 10))  # 1️⃣ … 9️⃣: reactions that press buttons

_PILL = re.compile(r'<a\s[^>]*href="https://matrix\.to/#/([^"?]+)[^"]*"[^>]*>(.*?)</a>', re.I | re.S)
_REPLY_HTML = re.compile(r"<mx-reply>.*?</mx-reply>", re.S)
_TAG = re.compile(r"<[^>]+>")
_KEYCAP = re.compile(r"^([0-9])\u20e3$")
_SKIN_TONES = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\u200d ]")
_STARS = frozenset("⭐★🌟")
_FOLLOW_KEYS = frozenset({"👍", "+1", "＋1", "➕1", "➕"})


@dataclass(frozen=True, slots=True)
class Me:
    """The bot's own account: its id and the names people address it by."""

    user_id: str
    names: frozenset[str]  # display name, localpart, the core's bot names

    @classmethod
    def of(cls, user_id: str, display_name: str | None, extra: Iterable[str] = ()) -> Me:
        localpart = user_id[1:].split(":", 1)[0]
        names = {name for name in (display_name, localpart, *extra) if name}
        return cls(user_id, frozenset(names))


@dataclass(frozen=True, slots=True)
class Where:
    """What the transport knows about the room and the sender of one event."""

    room_id: str
    title: str | None
    is_direct: bool
    sender_name: str
    sender_is_admin: bool


@dataclass(frozen=True, slots=True)
class Choice:
    """A reaction (or a one-character reply) read as a choice: the n-th option, n stars, or "me too"."""

    index: int | None = None
    stars: int | None = None
    follow: bool = False


# --- messages ----------------------------------------------------------------------------------
def relation(content: Mapping[str, Any]) -> Mapping[str, Any]:
    relates = content.get("m.relates_to")
    return relates if isinstance(relates, Mapping) else {}


def is_edit(content: Mapping[str, Any]) -> bool:
    """An edit of an earlier message: the original was handled already."""
    return relation(content).get("rel_type") == "m.replace"


def reply_target(content: Mapping[str, Any]) -> str | None:
    """The event this message answers: a reply, or the root of the thread it is written in."""
    relates = relation(content)
    in_reply = relates.get("m.in_reply_to")
    target = in_reply.get("event_id") if isinstance(in_reply, Mapping) else None
    if relates.get("rel_type") == "m.thread" and (target is None or relates.get("is_falling_back")):
        target = relates.get("event_id")
    return target if isinstance(target, str) else None


def plain_body(content: Mapping[str, Any]) -> str:
    """The message's text without the quoted reply some clients still put in front of it."""
    body = content.get("body")
    if not isinstance(body, str):
        return ""
    if reply_target(content) and body.startswith("> "):
        lines = body.split("\n")
        while lines and lines[0].startswith(">"):
            lines.pop(0)
        if lines and not lines[0].strip():
            lines.pop(0)
        body = "\n".join(lines)
    return body


def pills(content: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(user id, shown name) of every user linked in the formatted body."""
    formatted = content.get("formatted_body")
    if not isinstance(formatted, str) or content.get("format") != "org.matrix.custom.html":
        return []
    found = []
    for target, label in _PILL.findall(_REPLY_HTML.sub("", formatted)):
        user = unquote(target)
        if user.startswith("@"):
            found.append((user, html.unescape(_TAG.sub("", label)).strip().lstrip("@")))
    return found


def mentioned_ids(content: Mapping[str, Any]) -> list[str]:
    mentions = content.get("m.mentions")
    ids = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def read_message(content: Mapping[str, Any], me: Me,
                 name_of: Callable[[str], str]) -> tuple[str, tuple[Mention, ...], bool]:
    """The text for the core (mentions written as @name), who is named in it, and whether the bot is."""
    text = plain_body(content)
    named: dict[str, str] = {}
    for user, label in pills(content):
        named.setdefault(user, label or name_of(user))
    for user in mentioned_ids(content):
        named.setdefault(user, name_of(user))
    to_bot = me.user_id in named or me.user_id in text
    text = text.replace(me.user_id, "").strip() if me.user_id in text else text
    for name in sorted(me.names, key=len, reverse=True):
        text, hit = _drop_address(text, name, known=me.user_id in named)
        to_bot = to_bot or hit
    named.pop(me.user_id, None)
    mentions = []
    for user, label in named.items():
        if label and label in text and f"@{label}" not in text:
            text = text.replace(label, f"@{label}", 1)  # so commands read "/派单 #3 @刘师傅" as a person
        mentions.append(Mention(label or user, user))
    return text.strip(), tuple(mentions), to_bot


def _drop_address(text: str, name: str, *, known: bool) -> tuple[str, bool]:
    """Remove "@邻里助手", a leading "邻里助手:", or (when a pill named the bot) the bare name."""
    escaped = re.escape(name)
    patterns = [rf"@{escaped}[:：,，]?\s*", rf"^\s*{escaped}\s*[:：,，]\s*"]
    if known:
        patterns.append(rf"{escaped}[:：,，]?\s*")
    for pattern in patterns:
        new, count = re.subn(pattern, "", text, count=1, flags=re.I)
        if count:
            return new, True
    return text, False


def message_incoming(event: Mapping[str, Any], where: Where, me: Me, name_of: Callable[[str], str],
                     photos: tuple[str, ...] = ()) -> Incoming | None:
    """An m.room.message as the core's `Incoming`; None for what the core should not see."""
    content = event.get("content")
    if not isinstance(content, Mapping) or is_edit(content):
        return None
    msgtype = content.get("msgtype")
    if msgtype == "m.image":
        text, mentions, to_bot = image_caption(content), (), False
    elif msgtype in ("m.text", "m.emote"):
        text, mentions, to_bot = read_message(content, me, name_of)
    else:
        return None  # m.notice is what bots say; files, audio and locations are not reports
    if not text and not photos:
        return None
    return Incoming(
        service=SERVICE, chat_id=where.room_id, sender_id=event["sender"], sender_name=where.sender_name,
        text=text, message_id=event.get("event_id"), chat_title=where.title, is_direct=where.is_direct,
        photos=photos, reply_to=reply_target(content), mentions=mentions,
        mentions_bot=to_bot, sender_is_admin=where.sender_is_admin,
    )


def image_caption(content: Mapping[str, Any]) -> str:
    """Since Matrix 1.10 an image's body is its caption when a separate filename is given."""
    body, filename = content.get("body"), content.get("filename")
    if isinstance(body, str) and isinstance(filename, str) and body != filename:
        return body
    return ""


def image_info(content: Mapping[str, Any]) -> tuple[str | None, int | None, str | None]:
    """(mxc URI, announced size, mimetype) of an m.image; encrypted images carry no plain URL."""
    url = content.get("url")
    info = content.get("info") if isinstance(content.get("info"), Mapping) else {}
    size = info.get("size") if isinstance(info.get("size"), int) else None
    mimetype = info.get("mimetype") if isinstance(info.get("mimetype"), str) else None
    return (url if isinstance(url, str) and url.startswith("mxc://") else None), size, mimetype


# --- reactions and choices ---------------------------------------------------------------------
def choice_of(key: str) -> Choice | None:
    """1️⃣ (or "1") → the first option; ⭐⭐⭐ → three stars; 👍 / +1 → follow."""
    plain = _SKIN_TONES.sub("", key.strip())
    if plain in _FOLLOW_KEYS:
        return Choice(follow=True)
    if plain == "🔟":
        return Choice(index=10)
    keycap = _KEYCAP.match(plain)
    digit = keycap[1] if keycap else plain if len(plain) == 1 and plain.isdigit() else None
    if digit is not None:
        return Choice(index=int(digit)) if digit != "0" else None
    if plain and set(plain) <= _STARS and len(plain) <= 5:
        return Choice(stars=len(plain))
    return None


def press_for(choice: Choice, buttons: list[str] | None, order_id: int | None) -> str | None:
    """The button a choice presses on a message with `buttons` (their data, in order) about `order_id`.

    Numbers pick the message's options; where a message has none, 1–5 and stars rate its order.
    """
    if choice.index is not None and buttons:
        return buttons[choice.index - 1] if choice.index <= len(buttons) else None
    stars = choice.stars or (choice.index if choice.index and choice.index <= 5 else None)
    if stars and order_id is not None:
        return press_data(Verb.RATE, order_id, stars)
    return None


# --- power -------------------------------------------------------------------------------------
def creators_of(create_event: Mapping[str, Any]) -> frozenset[str]:
    """The room's creators: the m.room.create sender and, from room version 12, additional_creators."""
    content = create_event.get("content") if isinstance(create_event.get("content"), Mapping) else {}
    found = {create_event.get("sender"), content.get("creator")}
    extra = content.get("additional_creators")
    if isinstance(extra, list):
        found.update(extra)
    return frozenset(user for user in found if isinstance(user, str))


def creators_rule(room_version: str | None) -> bool:
    """Room version 12 (MSC4289) gives creators unlimited power without listing them in power levels."""
    if not room_version:
        return False
    if room_version.isdigit():
        return int(room_version) >= 12
    return room_version.startswith("org.matrix.hydra")


def power_of(user_id: str, users: Mapping[str, int], users_default: int, creators: frozenset[str],
             room_version: str | None) -> float:
    if creators_rule(room_version) and user_id in creators:
        return math.inf
    return users.get(user_id, users_default)
