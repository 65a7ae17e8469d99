"""Matrix events out: the core's `Outgoing` as message contents (HTML with a plain-text body).

Matrix has no buttons. A message's buttons become one line of numbered options, and a reaction with
that number (1️⃣, 2️⃣ …) on the message presses the button; a row of stars reads "react 1️⃣–5️⃣".
"""

from __future__ import annotations

import html
from typing import Any

from bot.matrix.events import KEYCAPS
from bot.render import card_of, render, say
from handlers.protocol import Button, Kind, Mention, Outgoing

HTML = "org.matrix.custom.html"


def flat(rows: tuple[tuple[Button, ...], ...]) -> list[Button]:
    return [button for row in rows for button in row][: len(KEYCAPS)]


def button_data(rows: tuple[tuple[Button, ...], ...]) -> list[str]:
    """The data of a message's buttons in the order the option line numbers them."""
    return [button.data for button in flat(rows)]


def options_line(rows: tuple[tuple[Button, ...], ...], lang: str) -> str | None:
    buttons = flat(rows)
    if not buttons:
        return None
    if all(b.data.startswith("rt:") for b in buttons) and len(buttons) == 5:
        return say("rate", lang)
    options = " · ".join(f"{KEYCAPS[i]} {render(b.label, lang)}" for i, b in enumerate(buttons))
    return say("choose", lang, options=options)


def pill(user_id: str, name: str) -> str:
    return f'<a href="https://matrix.to/#/{html.escape(user_id)}">{html.escape(name)}</a>'


def _html_lines(action: Outgoing, text: str) -> str:
    """The card's head in bold (the card says which line it is); other texts as they are."""
    card = card_of(action.text, action.lang)
    lines = card.lines() if card else [(line, False) for line in text.split("\n")]
    return "<br>".join(f"<b>{html.escape(line)}</b>" if head else html.escape(line) for line, head in lines)


def body_and_html(action: Outgoing, to: Mention | None = None) -> tuple[str, str, list[str]]:
    """Plain body, formatted body and the user ids it mentions."""
    text = render(action.text, action.lang)
    formatted = _html_lines(action, text)
    users: list[str] = []
    for mention in action.mentions:
        uid = mention.external_id
        if not uid or not uid.startswith("@") or uid in users:
            continue
        users.append(uid)
        written = html.escape(f"@{mention.name}")
        if written in formatted:
            formatted = formatted.replace(written, pill(uid, mention.name))
    if to is not None and to.external_id:
        text = f"{to.name}: {text}"
        formatted = f"{pill(to.external_id, to.name)}: {formatted}"
        users.append(to.external_id)
    line = options_line(action.buttons, action.lang)
    if line:
        text = f"{text}\n{line}"
        formatted = f"{formatted}<br><i>{html.escape(line)}</i>"
    return text, formatted, users


def message_content(action: Outgoing, *, reply_to: str | None = None, to: Mention | None = None) -> dict[str, Any]:
    body, formatted, users = body_and_html(action, to)
    content: dict[str, Any] = {
        "msgtype": "m.notice" if action.kind is Kind.ALERT else "m.text",
        "body": body,
        "format": HTML,
        "formatted_body": formatted,
        "m.mentions": {"user_ids": users} if users else {},
    }
    if reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def edit_content(action: Outgoing, event_id: str) -> dict[str, Any]:
    """An m.replace of the card `event_id` with the card as it stands now (no one is pinged again)."""
    body, formatted, users = body_and_html(action)
    new = {"msgtype": "m.text", "body": body, "format": HTML, "formatted_body": formatted,
           "m.mentions": {"user_ids": users} if users else {}}
    return {
        "msgtype": "m.text",
        "body": f"* {body}",
        "format": HTML,
        "formatted_body": f"* {formatted}",
        "m.new_content": new,
        "m.mentions": {},
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


def image_content(mxc: str, lang: str, *, mimetype: str | None = None, size: int | None = None,
                  reply_to: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if mimetype:
        info["mimetype"] = mimetype
    if size is not None:
        info["size"] = size
    content: dict[str, Any] = {"msgtype": "m.image", "body": say("photo", lang), "url": mxc, "info": info}
    if reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def notice_content(text: str) -> dict[str, Any]:
    return {"msgtype": "m.notice", "body": text, "m.mentions": {}}
