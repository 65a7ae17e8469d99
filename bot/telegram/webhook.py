"""Linli's own webhook endpoint for Telegram: it answers 200 only once the update is stored.

PTB's updater answers before the update is handled anywhere, so a crash right then loses it. Here
Telegram hears "received" only after the inbox holds the update; if storing fails it hears 500 and sends
the update again. Any number of `linli run` processes may take webhooks behind one address.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 4 * 1024 * 1024  # an update is a few kilobytes; Telegram's own limit for a message is far below


class WebhookEndpoint:
    """One HTTP endpoint taking Telegram's POSTs at `path`."""

    def __init__(self, path: str, secret: str, store: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        self.path = "/" + path.lstrip("/")
        self.secret = secret
        self.store = store
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port; an address in use raises OSError."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self._update)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _update(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.Response(status=403)
        try:
            update = await request.json()
        except ValueError:
            return web.Response(status=400)
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return web.Response(status=400)
        try:
            await self.store([update])
        except Exception:  # the database is away: Telegram keeps the update and sends it again
            log.exception("Telegram: could not store a webhook update; Telegram will send it again")
            return web.Response(status=500)
        return web.Response(status=200)
