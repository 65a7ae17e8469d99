"""The simulated Telegram world behind the fake Bot API server: people, chats, messages, files."""

from __future__ import annotations

import copy
import io
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from tests.servers.telegram_api_format import u16_slice

ADMIN_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": True,
    "can_edit_stories": True,
    "can_delete_stories": True,
    "can_pin_messages": True,
    "can_manage_topics": False,
}

CHAT_PERMISSIONS = {
    "can_send_messages": True,
    "can_send_audios": True,
    "can_send_documents": True,
    "can_send_photos": True,
    "can_send_videos": True,
    "can_send_video_notes": True,
    "can_send_voice_notes": True,
    "can_send_polls": True,
    "can_send_other_messages": True,
    "can_add_web_page_previews": True,
    "can_change_info": False,
    "can_invite_users": True,
    "can_pin_messages": False,
    "can_manage_topics": False,
}


@dataclass
class User:
    """A simulated Telegram account (a person, or another bot)."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        if self.language_code and not self.is_bot:
            out["language_code"] = self.language_code
        return out

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


@dataclass
class Member:
    user: User
    status: str  # creator | administrator | member | restricted | left | kicked
    custom_title: str | None = None

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "user": self.user.api()}
        if self.status == "creator":
            out["is_anonymous"] = False
        elif self.status == "administrator":
            out.update(ADMIN_RIGHTS)
        elif self.status == "kicked":
            out["until_date"] = 0
        elif self.status == "restricted":
            out.update({"is_member": True, "until_date": 0, "can_edit_tag": False}, **CHAT_PERMISSIONS)
            out["can_send_messages"] = False
        if self.custom_title and self.status in ("creator", "administrator"):
            out["custom_title"] = self.custom_title
        return out

    @property
    def present(self) -> bool:
        return self.status in ("creator", "administrator", "member", "restricted")


@dataclass
class Chat:
    """A group, supergroup or the private chat between the bot and one user."""

    id: int
    type: str  # private | group | supergroup
    title: str | None = None
    username: str | None = None
    user: User | None = None  # private chats: the other side
    members: dict[int, Member] = field(default_factory=dict)
    # private chats
    started: bool = False
    blocked: bool = False
    chat_instance: str = ""
    description: str | None = None

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private" and self.user is not None:
            out["first_name"] = self.user.first_name
            if self.user.last_name:
                out["last_name"] = self.user.last_name
            if self.user.username:
                out["username"] = self.user.username
        else:
            out["title"] = self.title
            if self.username:
                out["username"] = self.username
        return out

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")


@dataclass
class MessageRecord:
    """A message as stored by the server (any sender); ``data`` is the Bot API Message object."""

    chat_id: int
    message_id: int
    data: dict[str, Any]
    from_bot: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    reply_keyboard: dict[str, Any] | None = None  # non-inline reply_markup the bot attached
    reactions: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)


@dataclass
class BotMessage:
    """Snapshot of a message the bot sent (current state plus edit history)."""

    chat_id: int
    message_id: int
    text: str | None
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    reply_keyboard: dict[str, Any] | None
    history: list[dict[str, Any]]
    deleted: bool
    raw: dict[str, Any]
    reactions: list[dict[str, Any]]

    @classmethod
    def from_record(cls, rec: MessageRecord) -> BotMessage:
        data = copy.deepcopy(rec.data)
        text = data.get("text", data.get("caption"))
        entities = data.get("entities", data.get("caption_entities", []))
        return cls(
            chat_id=rec.chat_id,
            message_id=rec.message_id,
            text=text,
            entities=entities,
            reply_markup=data.get("reply_markup"),
            reply_keyboard=copy.deepcopy(rec.reply_keyboard),
            history=copy.deepcopy(rec.history),
            deleted=rec.deleted,
            raw=data,
            reactions=copy.deepcopy(rec.reactions),
        )

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """All inline buttons, flattened row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b for row in rows for b in row]

    @property
    def button_texts(self) -> list[str]:
        return [b["text"] for b in self.buttons]

    @property
    def edited(self) -> bool:
        return bool(self.history)

    @property
    def photo(self) -> list[dict[str, Any]] | None:
        return self.raw.get("photo")

    @property
    def reply_to_message_id(self) -> int | None:
        reply = self.raw.get("reply_to_message")
        return reply["message_id"] if reply else None

    def entity_texts(self, kind: str | None = None) -> list[tuple[str, str]]:
        """(type, covered text) of each entity, optionally of one type."""
        text = self.text or ""
        return [
            (e["type"], u16_slice(text, e["offset"], e["length"]))
            for e in self.entities
            if kind is None or e["type"] == kind
        ]


@dataclass
class CallbackQuery:
    id: str
    user: User
    chat_id: int
    message_id: int
    data: str | None
    created: float = field(default_factory=time.monotonic)
    answered: bool = False


@dataclass
class CallbackAnswer:
    """What the bot answered to a button press (answerCallbackQuery)."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int
    user_id: int
    data: str | None
    chat_id: int
    message_id: int


@dataclass
class ApiCall:
    """One request the bot made: canonical method name, decoded params, and the outcome."""

    method: str
    params: dict[str, Any]
    status: int = 200
    error: str | None = None
    result: Any = None
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class FileRecord:
    file_id: str
    file_unique_id: str
    content: bytes
    file_path: str
    kind: str  # photo | document
    width: int | None = None
    height: int | None = None
    file_name: str | None = None
    mime_type: str | None = None

    def api_file(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.content),
            "file_path": self.file_path,
        }

    def api_photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.content),
            "width": self.width,
            "height": self.height,
        }

    def api_document(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.content),
        }
        if self.file_name:
            out["file_name"] = self.file_name
        if self.mime_type:
            out["mime_type"] = self.mime_type
        return out


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a PNG/JPEG/GIF/WEBP image, or None when it isn't one."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return "gif", w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                return "webp", img.width, img.height
        except Exception:
            return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return "jpeg", w, h
            i += 2 + seg_len
        return None
    return None


def photo_variants(data: bytes, width: int, height: int) -> list[tuple[bytes, int, int]]:
    """The sizes Telegram keeps for a photo (thumbnails up to 1280px), re-encoded as JPEG if
    Pillow is available (as Telegram does), otherwise the original bytes for every size."""
    longest = max(width, height)
    targets = [s for s in (90, 320, 800) if s < longest] + [min(longest, 1280)]
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with the test deps
        Image = None
    out = []
    for target in targets:
        scale = target / longest
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        content = data
        if Image is not None:
            try:
                with Image.open(io.BytesIO(data)) as img:
                    img = img.convert("RGB").resize((w, h))
                    buf = io.BytesIO()
                    img.save(buf, format="JPEG", quality=87)
                    content = buf.getvalue()
            except Exception:
                content = data
        out.append((content, w, h))
    return out


def make_png(width: int = 64, height: int = 48, rgb: tuple[int, int, int] = (200, 60, 30)) -> bytes:
    """A small valid PNG, for simulated users' photos."""
    import zlib

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
