"""Text formatting rules of the fake Telegram Bot API server.

Mirrors what Telegram (TDLib's MessageEntity.cpp) does with message text: parse_mode HTML /
MarkdownV2 / Markdown, automatic entities (mentions, /commands, hashtags, URLs, e-mails),
UTF-16 offsets, trimming, length limits and reply-markup validation. Errors are raised as
:class:`ApiError` carrying the exact Bot API description.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit


class ApiError(Exception):
    """A Bot API failure: becomes ``{"ok": false, "error_code": code, "description": ...}``."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


def forbidden(reason: str) -> ApiError:
    return ApiError(403, f"Forbidden: {reason}")


# --------------------------------------------------------------------------------------------
# UTF-16 helpers (Telegram counts offsets/lengths in UTF-16 code units)
# --------------------------------------------------------------------------------------------


def u16len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def u16_index_map(text: str) -> list[int]:
    """``result[i]`` = UTF-16 offset of python index ``i`` (len(text)+1 entries)."""
    out = [0]
    acc = 0
    for ch in text:
        acc += 2 if ord(ch) > 0xFFFF else 1
        out.append(acc)
    return out


def u16_slice(text: str, offset: int, length: int) -> str:
    data = text.encode("utf-16-le")
    return data[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def is_word_char(ch: str) -> bool:
    """TDLib's is_word_character: letters, numbers, underscore."""
    if not ch:
        return False
    if ch == "_":
        return True
    return unicodedata.category(ch)[0] in ("L", "N")


# Order of entities with equal offset+length, from TDLib's get_type_priority.
_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "mention": 50,
    "hashtag": 50,
    "cashtag": 50,
    "bot_command": 50,
    "url": 50,
    "email": 50,
    "phone_number": 50,
    "date_time": 50,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}

ENTITY_TYPES = frozenset(_PRIORITY)


def sort_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"], _PRIORITY.get(e["type"], 50)))


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------

_ALLOWED_SCHEMES = ("http", "https", "tg", "ton", "tonsite", "ftp")


def normalize_url(url: str) -> str | None:
    """TDLib's check_url, simplified: returns the normalized URL or None when invalid."""
    url = url.strip()
    if not url:
        return None
    if "://" not in url and not url.lower().startswith("tg:"):
        url = "http://" + url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        return None
    if scheme == "tg":
        return url
    host = parts.hostname or ""
    if not host or " " in host:
        return None
    if not parts.path:
        url = url.replace(parts.netloc, parts.netloc + "/", 1) if parts.netloc else url
    return url


# --------------------------------------------------------------------------------------------
# Automatic entities (mentions, bot commands, hashtags, cashtags, URLs, e-mails)
# --------------------------------------------------------------------------------------------

_SHORT_USERNAMES = {"gif", "vid", "pic"}
_ALNUM_ = re.compile(r"[A-Za-z0-9_]*")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL_RE = re.compile(r"(?:https?://|tg://|www\.)[^\s<>\"]+", re.IGNORECASE)
_COMMON_TLDS = "com|org|net|io|me|cn|ru|app|dev|info|edu|gov|uk|de|jp|hk|tw|us|co|ai|xyz|top|site|online|tech"
_DOMAIN_RE = re.compile(
    r"(?<![\w@./-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?:" + _COMMON_TLDS + r")(?::\d{1,5})?"
    r"(?:/[^\s<>\"]*)?(?![\w-])",
    re.IGNORECASE,
)


def _find_mentions(text: str) -> list[tuple[int, int]]:
    out = []
    for i, ch in enumerate(text):
        if ch != "@" or (i > 0 and is_word_char(text[i - 1])):
            continue
        m = _ALNUM_.match(text, i + 1)
        end = m.end()
        name = text[i + 1 : end]
        if not 2 <= len(name) <= 32:
            continue
        if end < len(text) and is_word_char(text[end]):
            continue
        if len(name) < 4 and name.lower() not in _SHORT_USERNAMES:
            continue
        out.append((i, end))
    return out


def _find_bot_commands(text: str) -> list[tuple[int, int]]:
    out = []
    for i, ch in enumerate(text):
        if ch != "/":
            continue
        if i > 0 and (is_word_char(text[i - 1]) or text[i - 1] in "/<>"):
            continue
        end = _ALNUM_.match(text, i + 1).end()
        if not 1 <= end - i - 1 <= 64:
            continue
        if end < len(text) and text[end] == "@":
            m_end = _ALNUM_.match(text, end + 1).end()
            if not 3 <= m_end - end - 1 <= 32:
                continue
            end = m_end
        if end < len(text) and (is_word_char(text[end]) or text[end] in "/<>"):
            continue
        out.append((i, end))
    return out


def _is_hashtag_letter(ch: str) -> bool:
    return ch == "_" or ch == "\u200c" or ch == "\xb7" or unicodedata.category(ch) in (
        "Lu", "Ll", "Lt", "Lm", "Lo", "Nd",
    )  # fmt: skip


def _find_hashtags(text: str, sigil: str = "#") -> list[tuple[int, int]]:
    out = []
    for i, ch in enumerate(text):
        if ch != sigil or (i > 0 and (_is_hashtag_letter(text[i - 1]) or text[i - 1] == sigil)):
            continue
        j = i + 1
        letter = False
        while j < len(text) and _is_hashtag_letter(text[j]):
            letter = letter or unicodedata.category(text[j]).startswith("L")
            j += 1
        if j == i + 1 or (j < len(text) and text[j] == sigil):
            continue
        if sigil == "#" and not letter:
            continue
        if sigil == "$" and not re.fullmatch(r"[A-Z]{1,8}", text[i + 1 : j]):
            continue
        out.append((i, min(j, i + 1 + 256)))
    return out


def _strip_url_tail(url: str) -> str:
    while url and url[-1] in ".,;:!?'\"":
        url = url[:-1]
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1]
    return url


def find_auto_entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram detects by itself in any message text (python index based first)."""
    spans: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= x or a >= y for x, y in taken)

    for m in _URL_RE.finditer(text):
        url = _strip_url_tail(m.group(0))
        if url and free(m.start(), m.start() + len(url)):
            spans.append((m.start(), m.start() + len(url), "url"))
            taken.append((m.start(), m.start() + len(url)))
    for m in _EMAIL_RE.finditer(text):
        if (m.start() == 0 or not is_word_char(text[m.start() - 1])) and free(m.start(), m.end()):
            spans.append((m.start(), m.end(), "email"))
            taken.append((m.start(), m.end()))
    for m in _DOMAIN_RE.finditer(text):
        url = _strip_url_tail(m.group(0))
        if free(m.start(), m.start() + len(url)):
            spans.append((m.start(), m.start() + len(url), "url"))
            taken.append((m.start(), m.start() + len(url)))
    for finder, kind in (
        (_find_mentions, "mention"),
        (_find_bot_commands, "bot_command"),
        (_find_hashtags, "hashtag"),
        (lambda t: _find_hashtags(t, "$"), "cashtag"),
    ):
        for a, b in finder(text):
            if free(a, b):
                spans.append((a, b, kind))
                taken.append((a, b))
    idx = u16_index_map(text)
    return [{"type": k, "offset": idx[a], "length": idx[b] - idx[a]} for a, b, k in spans]


def merge_auto_entities(text: str, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add automatic entities that don't collide with code/pre/links/other auto entities."""
    blocking = {"code", "pre", "text_link", "text_mention", "custom_emoji", "date_time"}
    blocked = [(e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] in blocking]
    out = list(entities)
    for e in find_auto_entities(text):
        a, b = e["offset"], e["offset"] + e["length"]
        if all(b <= x or a >= y for x, y in blocked):
            out.append(e)
    return sort_entities(out)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:#[xX]([0-9a-fA-F]{1,8})|#([0-9]{1,10})|([a-zA-Z]{2,4}));?")
_SPACES = " \t\r\n\x0b\x0c"


def _decode_html_entity(text: str, i: int) -> tuple[str, int]:
    """Decode an HTML entity starting at text[i] == '&'. Returns (decoded, next index)."""
    m = _ENTITY_RE.match(text, i)
    if not m:
        return "&", i + 1
    hex_code, dec_code, name = m.groups()
    if name is not None:
        if name in _NAMED:
            return _NAMED[name], m.end()
        return "&", i + 1
    code = int(hex_code, 16) if hex_code is not None else int(dec_code)
    if 0xD800 <= code <= 0xDFFF:
        raise bad_request(
            "can't parse entities: Text contains invalid Unicode characters after decoding HTML "
            "entities, check for unmatched surrogate code units"
        )
    if code == 0 or code > 0x10FFFF:
        return "&", i + 1
    return chr(code), m.end()


def _parse_html_attributes(text: str, i: int, tag: str, begin_byte: int) -> tuple[dict[str, str], int]:
    """Parse attributes of a start tag; ``i`` points after the tag name. Returns (attrs, index of '>')."""
    attrs: dict[str, str] = {}
    n = len(text)
    while True:
        while i < n and text[i] in _SPACES:
            i += 1
        if i >= n:
            raise bad_request(f"can't parse entities: Unclosed start tag at byte offset {begin_byte}")
        if text[i] == ">":
            return attrs, i
        if text[i] == "/" and i + 1 < n and text[i + 1] == ">":
            i += 1
            continue
        start = i
        while i < n and text[i] not in _SPACES and text[i] not in "=>":
            i += 1
        name = text[start:i].lower()
        if not name:
            raise bad_request(
                f'can\'t parse entities: Empty attribute name in the tag "{tag}" at byte offset {begin_byte}'
            )
        while i < n and text[i] in _SPACES:
            i += 1
        if i >= n:
            raise bad_request(f'can\'t parse entities: Unclosed start tag "{tag}" at byte offset {begin_byte}')
        if text[i] != "=":
            attrs[name] = ""
            continue
        i += 1
        while i < n and text[i] in _SPACES:
            i += 1
        if i >= n:
            raise bad_request(f'can\'t parse entities: Unclosed start tag "{tag}" at byte offset {begin_byte}')
        if text[i] in "\"'":
            quote = text[i]
            i += 1
            value = []
            while i < n and text[i] != quote:
                if text[i] == "&":
                    decoded, i = _decode_html_entity(text, i)
                    value.append(decoded)
                else:
                    value.append(text[i])
                    i += 1
            if i >= n:
                raise bad_request(f"can't parse entities: Unclosed start tag at byte offset {begin_byte}")
            i += 1
            attrs[name] = "".join(value)
        else:
            start = i
            while i < n and (text[i].isascii() and (text[i].isalnum() or text[i] in ".-")):
                i += 1
            if i >= n or (text[i] not in _SPACES and text[i] != ">"):
                raise bad_request(
                    f"can't parse entities: Unexpected end of name token at byte offset {_byte_offset(text, start)}"
                )
            attrs[name] = text[start:i]


def parse_html(text: str, resolve_user: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode. Returns (plain text, entities with UTF-16 offsets)."""
    out: list[str] = []
    u16 = 0
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "&":
            decoded, i = _decode_html_entity(text, i)
            out.append(decoded)
            u16 += u16len(decoded)
            continue
        if ch != "<":
            out.append(ch)
            u16 += 2 if ord(ch) > 0xFFFF else 1
            i += 1
            continue
        begin_byte = _byte_offset(text, i)
        if i + 1 < n and text[i + 1] == "/":
            if not stack:
                raise bad_request(f"can't parse entities: Unexpected end tag at byte offset {begin_byte}")
            j = i + 2
            while j < n and text[j] not in _SPACES and text[j] != ">":
                j += 1
            name = text[i + 2 : j].lower()
            while j < n and text[j] in _SPACES:
                j += 1
            if j >= n or text[j] != ">":
                raise bad_request(f"can't parse entities: Unclosed end tag at byte offset {begin_byte}")
            top = stack.pop()
            if name and name != top["tag"]:
                raise bad_request(
                    f"can't parse entities: Unmatched end tag at byte offset {begin_byte}, "
                    f'expected "</{top["tag"]}>", found "</{name}>"'
                )
            length = u16 - top["u16"]
            content = "".join(out[top["out"] :])
            entity = _html_entity(top, length, content, resolve_user)
            if entity is not None:
                entities.append(entity)
            i = j + 1
            continue
        j = i + 1
        while j < n and text[j] not in _SPACES and text[j] not in ">/":
            j += 1
        if j >= n:
            raise bad_request(f"can't parse entities: Unclosed start tag at byte offset {begin_byte}")
        tag = text[i + 1 : j].lower()
        if tag not in _HTML_TAGS:
            raise bad_request(f'can\'t parse entities: Unsupported start tag "{tag}" at byte offset {begin_byte}')
        attrs, gt = _parse_html_attributes(text, j, tag, begin_byte)
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise bad_request(
                f'can\'t parse entities: Tag "span" must have class "tg-spoiler" at byte offset {begin_byte}'
            )
        if tag == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise bad_request(
                f"can't parse entities: Custom emoji entity must contain a valid emoji-id at byte offset {begin_byte}"
            )
        if tag == "tg-time":
            if not attrs.get("unix", "").lstrip("-").isdigit():
                raise bad_request(
                    f'can\'t parse entities: Tag "tg-time" must have attribute "unix" at byte offset {begin_byte}'
                )
            fmt = attrs.get("format", "")
            if fmt and not re.fullmatch(r"r|w?[dD]?[tT]?", fmt):
                raise bad_request("can't parse entities: Invalid date format used")
        stack.append({"tag": tag, "attrs": attrs, "u16": u16, "out": len(out)})
        i = gt + 1
    if stack:
        raise bad_request(f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]['tag']}\"")
    return "".join(out), _merge_pre_code(entities)


def _html_entity(top: dict[str, Any], length: int, content: str, resolve_user: Any) -> dict[str, Any] | None:
    if length <= 0:
        return None
    tag, attrs = top["tag"], top["attrs"]
    kind = _HTML_TAGS[tag]
    entity: dict[str, Any] = {"type": kind, "offset": top["u16"], "length": length}
    if tag == "a":
        href = attrs.get("href", content)
        m = re.fullmatch(r"tg://user\?id=(\d+)", href.strip())
        if m:
            user = resolve_user(int(m.group(1))) if resolve_user else None
            if user is None:
                return None
            return {"type": "text_mention", "offset": top["u16"], "length": length, "user": user}
        url = normalize_url(href)
        if url is None:
            return None
        entity["url"] = url
    elif tag == "code":
        lang = attrs.get("class", "")
        if lang.startswith("language-") and len(lang) > len("language-"):
            entity["_language"] = lang[len("language-") :]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs["emoji-id"]
    elif tag == "tg-time":
        entity["unix_time"] = int(attrs["unix"])
        if attrs.get("format"):
            entity["date_time_format"] = attrs["format"]
    return entity


def _merge_pre_code(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """<pre><code class="language-x"> with the same range becomes one pre entity with language."""
    pres = {(e["offset"], e["length"]): e for e in entities if e["type"] == "pre"}
    out = []
    for e in entities:
        lang = e.pop("_language", None)
        if e["type"] == "code" and lang and (e["offset"], e["length"]) in pres:
            pres[(e["offset"], e["length"])]["language"] = lang
            continue
        out.append(e)
    return sort_entities(out)


# --------------------------------------------------------------------------------------------
# MarkdownV2
# --------------------------------------------------------------------------------------------

_MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    u16 = 0
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    quote_start: int | None = None
    i, n = 0, len(text)

    def emit(s: str) -> None:
        nonlocal u16
        out.append(s)
        u16 += u16len(s)

    def fail_unclosed(entry: dict[str, Any]) -> ApiError:
        name = entry.get("name") or _MDV2_NAMES[entry["type"]]
        return bad_request(f"can't parse entities: Can't find end of {name} entity at byte offset {entry['byte']}")

    while i < n:
        ch = text[i]
        at_line_start = i == 0 or text[i - 1] == "\n"
        if at_line_start:
            if ch == ">" or (text.startswith("**>", i)):
                if quote_start is None:
                    quote_start = u16
                i += 3 if ch == "*" else 1
                continue
            if quote_start is not None:
                # previous line(s) were quoted: close blockquote before the newline we emitted
                end = u16 - 1 if out and out[-1] == "\n" else u16
                if end > quote_start:
                    entities.append({"type": "blockquote", "offset": quote_start, "length": end - quote_start})
                quote_start = None
        if ch == "\\" and i + 1 < n and 0 < ord(text[i + 1]) < 127:
            emit(text[i + 1])
            i += 2
            continue
        if ch == "`":
            is_pre = text.startswith("```", i)
            start_byte = _byte_offset(text, i)
            j = i + (3 if is_pre else 1)
            language = ""
            if is_pre:
                k = j
                while k < n and text[k] not in " \t\r\n`":
                    k += 1
                if k < n and text[k] == "\n":
                    language, j = text[j:k], k + 1
                elif k < n and text[k] in " \t\r" and k > j:
                    language = None  # PreCode candidate without newline → reported as PreCode
            content: list[str] = []
            closed = False
            while j < n:
                if text[j] == "\\" and j + 1 < n and 0 < ord(text[j + 1]) < 127:
                    content.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "`":
                    if not is_pre:
                        closed = True
                        j += 1
                        break
                    if text.startswith("```", j):
                        closed = True
                        j += 3
                        break
                content.append(text[j])
                j += 1
            if not closed:
                name = "Code"
                if is_pre:
                    name = "PreCode" if (language or language is None) else "Pre"
                raise bad_request(f"can't parse entities: Can't find end of {name} entity at byte offset {start_byte}")
            body = "".join(content)
            if body:
                ent: dict[str, Any] = {"type": "pre" if is_pre else "code", "offset": u16, "length": u16len(body)}
                if is_pre and language:
                    ent["language"] = language
                entities.append(ent)
            emit(body)
            i = j
            continue
        top = stack[-1] if stack else None
        if top is not None and _mdv2_closes(top["type"], text, i):
            stack.pop()
            width = 2 if top["type"] in ("underline", "spoiler") else 1
            length = u16 - top["u16"]
            if top["type"] in ("text_link", "custom_emoji"):
                j = i + 1
                url = None
                if j < n and text[j] == "(":
                    k = j + 1
                    buf = []
                    while k < n and text[k] != ")":
                        if text[k] == "\\" and k + 1 < n and 0 < ord(text[k + 1]) < 127:
                            buf.append(text[k + 1])
                            k += 2
                            continue
                        buf.append(text[k])
                        k += 1
                    if k >= n:
                        raise bad_request(
                            f"can't parse entities: Can't find end of a URL at byte offset {_byte_offset(text, j + 1)}"
                        )
                    url = "".join(buf)
                    i = k + 1
                else:
                    i = j
                if top["type"] == "custom_emoji":
                    m = re.fullmatch(r"tg://emoji\?id=(\d+)", url or "")
                    if not m:
                        raise bad_request("can't parse entities: Invalid tg://emoji or tg://time URL specified")
                    if length > 0:
                        entities.append(
                            {"type": "custom_emoji", "offset": top["u16"], "length": length,
                             "custom_emoji_id": m.group(1)}
                        )  # fmt: skip
                    continue
                if url is None:
                    url = "".join(out[top["out"] :])
                norm = normalize_url(url)
                if norm and length > 0:
                    entities.append({"type": "text_link", "offset": top["u16"], "length": length, "url": norm})
                continue
            if length > 0:
                entities.append({"type": top["type"], "offset": top["u16"], "length": length})
            i += width
            continue
        opener = None
        if ch == "*":
            opener = ("bold", 1)
        elif ch == "_":
            opener = ("underline", 2) if text.startswith("__", i) else ("italic", 1)
        elif ch == "~":
            opener = ("strikethrough", 1)
        elif ch == "|" and text.startswith("||", i):
            opener = ("spoiler", 2)
        elif ch == "[":
            opener = ("text_link", 1)
        elif ch == "!" and text.startswith("![", i):
            opener = ("custom_emoji", 2)
        if opener is not None:
            stack.append({"type": opener[0], "u16": u16, "out": len(out), "byte": _byte_offset(text, i)})
            i += opener[1]
            continue
        if ch in _MDV2_RESERVED:
            raise bad_request(
                f"can't parse entities: Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        emit(ch)
        i += 1
    if quote_start is not None and u16 > quote_start:
        entities.append({"type": "blockquote", "offset": quote_start, "length": u16 - quote_start})
    if stack:
        raise fail_unclosed(stack[-1])
    return "".join(out), sort_entities(entities)


def _mdv2_closes(kind: str, text: str, i: int) -> bool:
    ch = text[i]
    if kind == "bold":
        return ch == "*"
    if kind == "italic":
        return ch == "_" and not text.startswith("__", i)
    if kind == "underline":
        return text.startswith("__", i)
    if kind == "strikethrough":
        return ch == "~"
    if kind == "spoiler":
        return text.startswith("||", i)
    if kind in ("text_link", "custom_emoji"):
        return ch == "]"
    return False


# --------------------------------------------------------------------------------------------
# Legacy Markdown
# --------------------------------------------------------------------------------------------


def parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    u16 = 0
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            u16 += 1
            i += 2
            continue
        if ch not in "_*`[":
            out.append(ch)
            u16 += u16len(ch)
            i += 1
            continue
        begin_byte = _byte_offset(text, i)
        if ch == "[":
            end = text.find("]", i + 1)
            if end < 0 or not text.startswith("(", end + 1) or text.find(")", end + 2) < 0:
                raise bad_request(
                    f"can't parse entities: Can't find end of the entity starting at byte offset {begin_byte}"
                )
            close = text.find(")", end + 2)
            label, url = text[i + 1 : end], text[end + 2 : close]
            norm = normalize_url(url)
            if label and norm:
                entities.append({"type": "text_link", "offset": u16, "length": u16len(label), "url": norm})
            out.append(label)
            u16 += u16len(label)
            i = close + 1
            continue
        marker = "```" if text.startswith("```", i) else ch
        end = text.find(marker, i + len(marker))
        if end < 0:
            raise bad_request(
                f"can't parse entities: Can't find end of the entity starting at byte offset {begin_byte}"
            )
        body = text[i + len(marker) : end]
        kind = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}[marker]
        ent: dict[str, Any] = {"type": kind, "offset": u16}
        if marker == "```" and "\n" in body:
            first, rest = body.split("\n", 1)
            if first and " " not in first:
                ent["language"] = first
                body = rest
        if body:
            ent["length"] = u16len(body)
            entities.append(ent)
        out.append(body)
        u16 += u16len(body)
        i = end + len(marker)
    return "".join(out), sort_entities(entities)


# --------------------------------------------------------------------------------------------
# Putting it together: text + parse_mode / entities → (text, entities)
# --------------------------------------------------------------------------------------------

_REQUIRED_ENTITY_FIELDS = {
    "text_link": "url",
    "text_mention": "user",
    "custom_emoji": "custom_emoji_id",
    "date_time": "unix_time",
}


def validate_entities(raw: Any, field: str = "entities") -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise bad_request(f"can't parse {field} JSON object")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad_request("can't parse MessageEntity: MessageEntity must be an Object")
        kind = item.get("type")
        if not isinstance(kind, str):
            raise bad_request('can\'t parse MessageEntity: Field "type" must be of type String')
        if kind not in ENTITY_TYPES:
            raise bad_request(f"can't parse MessageEntity: Unsupported type specified: {kind}")
        for key in ("offset", "length"):
            if not isinstance(item.get(key), int) or isinstance(item.get(key), bool):
                raise bad_request(f'can\'t parse MessageEntity: Field "{key}" must be of type Number')
        need = _REQUIRED_ENTITY_FIELDS.get(kind)
        if need and need not in item:
            raise bad_request(f'can\'t parse MessageEntity: Field "{need}" must be specified for {kind} entity')
        out.append(dict(item))
    return out


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    left = len(text) - len(text.lstrip(_SPACES))
    stripped = text.strip(_SPACES)
    shift = u16len(text[:left])
    total = u16len(stripped)
    out = []
    for e in entities:
        start = max(0, e["offset"] - shift)
        end = min(total, e["offset"] - shift + e["length"])
        if end > start:
            out.append({**e, "offset": start, "length": end - start})
    return stripped, out


def _clamp(text: str, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    total = u16len(text)
    out = []
    for e in entities:
        start, end = max(0, e["offset"]), min(total, e["offset"] + e["length"])
        if end > start:
            out.append({**e, "offset": start, "length": end - start})
    return out


def format_text(
    text: str,
    parse_mode: str | None,
    entities: list[dict[str, Any]] | None,
    *,
    caption: bool = False,
    resolve_user: Any = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Apply parse_mode/entities, trimming, auto entities and the length limit like Telegram."""
    if entities is not None:
        plain, ents = text, _clamp(text, entities)
    elif parse_mode:
        mode = parse_mode.lower()
        if mode == "html":
            plain, ents = parse_html(text, resolve_user)
        elif mode == "markdownv2":
            plain, ents = parse_markdown_v2(text)
        elif mode == "markdown":
            plain, ents = parse_markdown(text)
        else:
            raise bad_request("unsupported parse_mode")
    else:
        plain, ents = text, []
    plain, ents = _trim(plain, ents)
    if not caption and not plain:
        raise bad_request("message text is empty")
    limit = 1024 if caption else 4096
    if u16len(plain) > limit:
        raise bad_request("message caption is too long" if caption else "message is too long")
    return plain, merge_auto_entities(plain, ents)


# --------------------------------------------------------------------------------------------
# Reply markup
# --------------------------------------------------------------------------------------------

_INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def _check_button_url(url: Any) -> None:
    if not isinstance(url, str):
        raise bad_request('can\'t parse inline keyboard button: Field "url" must be of type String')
    norm = normalize_url(url)
    host = urlsplit(norm).hostname if norm else None
    if norm is None or (host or "").lower() == "localhost" or (not norm.lower().startswith("tg:") and not host):
        raise bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")


def validate_reply_markup(markup: Any, *, inline_only: bool = False) -> dict[str, Any]:
    """Validate a reply_markup object like Telegram; returns it unchanged when valid."""
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list):
            raise bad_request('Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
        for row in rows:
            if not isinstance(row, list):
                raise bad_request('Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
            for button in row:
                if not isinstance(button, dict):
                    raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                if not isinstance(button.get("text"), str):
                    raise bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
                if not button["text"].strip():
                    raise bad_request("text buttons are unallowed in the inline keyboard")
                actions = [k for k in _INLINE_ACTIONS if k in button]
                if not actions:
                    raise bad_request(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                if len(actions) > 1:
                    raise bad_request(
                        "can't parse inline keyboard button: InlineKeyboardButton must have exactly one optional field"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
                        raise bad_request("BUTTON_DATA_INVALID")
                if "url" in button:
                    _check_button_url(button["url"])
        return markup
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request('Field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays')
        for row in rows:
            for button in row:
                text = button if isinstance(button, str) else (button or {}).get("text")
                if not isinstance(text, str) or not text:
                    raise bad_request('can\'t parse keyboard button: Field "text" must be of type String')
        return markup
    if markup.get("remove_keyboard") is True or markup.get("force_reply") is True:
        return markup
    raise bad_request("can't parse reply keyboard markup JSON object")


def loads_json_field(value: Any, field: str) -> Any:
    """JSON-serialized parameters (reply_markup, entities, ...) parsed strictly."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        if field == "reply_markup":
            raise bad_request("can't parse reply keyboard markup JSON object") from None
        raise bad_request(f"can't parse {field} JSON object") from None
