"""Telegram payloads ↔ the core's values, with no network: updates in, message texts and keyboards out.

Messages and button presses become `Incoming` values; the core's `Outgoing` actions become HTML texts
(Telegram's `parse_mode=HTML`) and inline keyboards. People named in a message are linked with
`tg://user?id=…` so Telegram notifies them even when they have no @username.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, User

from bot.render import card_of, render
from handlers.commands import COMMANDS
from handlers.protocol import Button, Incoming, Mention, Outgoing

SERVICE = "telegram"
GROUP_TYPES = ("group", "supergroup")
TEXT_LIMIT = 4096  # characters of a message, after entities are parsed
CAPTION_LIMIT = 1024
ALERT_LIMIT = 200  # an answerCallbackQuery text
# Telegram file ids are URL-safe base64; anything else (a console path, an mxc:// URI) is no photo here,
# and a string that names a local file would be uploaded by python-telegram-bot: never send those.
_FILE_ID = re.compile(r"^[A-Za-z0-9_-]{20,}$")
_LATIN_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,32}))?(?=\s|$)")
_CHINESE_NAME = {name: next(n for n in names if not n.isascii())
                 for names in COMMANDS.values() for name in names if name.isascii()}


@dataclass(frozen=True, slots=True)
class Me:
    """The bot's own account, as getMe describes it."""

    id: int
    username: str
    reads_all: bool  # can_read_all_group_messages: privacy mode is off

    @property
    def handle(self) -> str:
        return f"@{self.username}"


# --- updates in ------------------------------------------------------------------------------------
def message_incoming(message: Message, me: Me, *, sender_is_admin: bool = False,
                     user_id_of: Callable[[str], str | None] = lambda _: None,
                     addressed: bool = False) -> Incoming | None:
    """A message as the core's `Incoming`; None for what the core should not see.

    `user_id_of` turns an @username into a Telegram user id where the transport has met that person;
    `addressed` says the message answers one of the bot's own messages that is about no order."""
    chat = message.chat
    if chat.type not in (*GROUP_TYPES, "private"):
        return None  # channels
    sender = message.from_user
    anonymous_admin = message.sender_chat is not None and message.sender_chat.id == chat.id
    if message.sender_chat is not None and not anonymous_admin:
        return None  # a channel speaking in the group, or its posts forwarded automatically
    if sender is None or (sender.is_bot and not anonymous_admin) or sender.id == me.id:
        return None
    text = chinese_command(message.text or message.caption or "", sender.language_code, me)
    photos = _photos(message)
    if not text and not photos:
        return None  # service messages, stickers, voice, locations: not reports
    entities = message.parse_entities() if message.text else message.parse_caption_entities()
    mentions, to_bot = _mentions(entities, me, user_id_of)
    if me.handle.lower() in text.lower():
        to_bot = True
    reply = message.reply_to_message
    if reply is not None and message.is_topic_message and reply.message_id == message.message_thread_id:
        reply = None  # in a forum topic every message "answers" the topic's first message
    if anonymous_admin:
        sender_id, name, sender_is_admin = str(chat.id), chat.title or str(chat.id), True
    else:
        sender_id, name = str(sender.id), sender.full_name
    return Incoming(
        service=SERVICE, chat_id=str(chat.id), sender_id=sender_id, sender_name=name, text=text,
        message_id=f"{chat.id}:{message.message_id}", chat_title=chat.title or chat.full_name,
        is_direct=chat.type == "private", photos=photos,
        reply_to=str(reply.message_id) if reply is not None else None,
        mentions=mentions, mentions_bot=to_bot or addressed, sender_is_admin=sender_is_admin,
    )


def callback_incoming(query: CallbackQuery, *, sender_is_admin: bool = False) -> Incoming | None:
    """A button press as the core's `Incoming`: the button's data, on the message that carries it."""
    message = query.message
    if message is None or not query.data:
        return None
    chat = message.chat
    return Incoming(
        service=SERVICE, chat_id=str(chat.id), sender_id=str(query.from_user.id),
        sender_name=query.from_user.full_name, message_id=press_id(query.id),
        chat_title=chat.title or chat.full_name, is_direct=chat.type == "private",
        reply_to=str(message.message_id), button=query.data, sender_is_admin=sender_is_admin,
    )


def chinese_command(text: str, language_code: str | None, me: Me) -> str:
    """"/report …" as "/报事 …" for someone whose Telegram speaks Chinese.

    Telegram's menu, the START button and tappable commands only know Latin names, so a Chinese
    speaker who taps /report did not choose English; the core answers in the language of the command's
    name. A command addressed to another bot ("/report@OtherBot") is left alone."""
    if not (language_code or "").lower().startswith("zh"):
        return text
    match = _LATIN_COMMAND.match(text)
    if match is None or (match[2] and match[2].lower() != me.username.lower()):
        return text
    name = _CHINESE_NAME.get(match[1].lower())
    return f"/{name}{text[match.end():]}" if name else text


def press_id(query_id: str) -> str:
    """The `Incoming.message_id` of a button press: a press is handled once, however often it arrives."""
    return f"cb:{query_id}"


def _photos(message: Message) -> tuple[str, ...]:
    if message.photo:
        return (message.photo[-1].file_id,)  # the largest size
    document = message.document
    if document is not None and (document.mime_type or "").startswith("image/"):
        return (document.file_id,)  # a photo sent "as a file", uncompressed
    return ()


def _mentions(entities: dict[MessageEntity, str], me: Me,
              user_id_of: Callable[[str], str | None]) -> tuple[tuple[Mention, ...], bool]:
    found: list[Mention] = []
    to_bot = False
    for entity, covered in entities.items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None:
            if entity.user.id == me.id:
                to_bot = True
                continue
            found.append(Mention(covered.lstrip("@") or entity.user.full_name, str(entity.user.id)))
        elif entity.type == MessageEntity.MENTION:
            username = covered.lstrip("@")
            if username.lower() == me.username.lower():
                to_bot = True
                continue
            found.append(Mention(username, user_id_of(username)))
    return tuple(found), to_bot


# --- actions out -----------------------------------------------------------------------------------
def plain_text(action: Outgoing, limit: int = TEXT_LIMIT) -> str:
    text = render(action.text, action.lang)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_text(action: Outgoing, *, limit: int = TEXT_LIMIT, extra: str | None = None) -> str:
    """The action's text as Telegram HTML: escaped, card heads in bold, people linked so they are notified."""
    card = card_of(action.text, action.lang)
    text = card.text if card else render(action.text, action.lang)
    if extra:
        text = f"{text}\n\n{extra}"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    head = card.head if card else None  # the card says which line is its head: nothing is guessed from emoji
    shown = [f"<b>{html.escape(line, quote=False)}</b>" if line == head else html.escape(line, quote=False)
             for line in text.split("\n")]
    return link_mentions("\n".join(shown), action.mentions)


def link_mentions(escaped: str, mentions: tuple[Mention, ...]) -> str:
    """Turn each "@name" of a person with a Telegram id into a link that notifies them."""
    ids = {m.name: m.external_id for m in mentions if m.external_id and m.external_id.isdigit() and m.name}
    if not ids:
        return escaped
    written = {html.escape(f"@{name}", quote=False): uid for name, uid in ids.items()}
    pattern = re.compile("|".join(re.escape(w) for w in sorted(written, key=len, reverse=True)))
    return pattern.sub(lambda m: user_link(written[m[0]], m[0], escaped=True), escaped)


def user_link(user_id: str | int, label: str, *, escaped: bool = False) -> str:
    shown = label if escaped else html.escape(label, quote=False)
    return f'<a href="tg://user?id={user_id}">{shown}</a>'


def keyboard(rows: tuple[tuple[Button, ...], ...], lang: str,
             extra: list[list[InlineKeyboardButton]] | None = None) -> InlineKeyboardMarkup | None:
    """Inline buttons; their data goes back to the core unchanged when pressed."""
    board = [[InlineKeyboardButton(render(b.label, lang)[:64], callback_data=b.data) for b in row]
             for row in rows if row]
    board += extra or []
    return InlineKeyboardMarkup(board) if board else None


def alert_text(actions: list[Outgoing]) -> str | None:
    texts = [render(a.text, a.lang) for a in actions]
    text = "\n".join(t for t in texts if t)
    if not text:
        return None
    return text if len(text) <= ALERT_LIMIT else text[: ALERT_LIMIT - 1] + "…"


def message_ref(ref: str | None) -> int | None:
    """The Telegram message id in a reference the core hands back ("-100123:45" or "45")."""
    if not ref:
        return None
    tail = ref.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and not ref.startswith("cb:") else None


def is_file_id(ref: str | None) -> bool:
    return bool(ref) and bool(_FILE_ID.match(ref or ""))


def display_name(user: User) -> str:
    return user.full_name or user.username or str(user.id)
