"""`linli run`: every configured transport and the scheduler, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.settings import Settings, SettingsError
from bot.transport import Transport
from bot.wiring import configure_logging, open_core
from handlers.protocol import Kind, Outgoing
from handlers.router import Linli
from scheduler.runner import SweepRunner

log = logging.getLogger(__name__)


def configured_services(settings: Settings) -> list[str]:
    """The chat services the settings give an account on; none, or half an account, is a bad setting."""
    found = ["telegram"] if settings.telegram_token is not None else []
    if settings.matrix_homeserver:
        if not settings.matrix_user or not (settings.matrix_password or settings.matrix_token):
            raise SettingsError("LINLI_MATRIX_USER and LINLI_MATRIX_PASSWORD (or LINLI_MATRIX_TOKEN) are needed "
                                "with LINLI_MATRIX_HOMESERVER")
        found.append("matrix")
    if not found:
        raise SettingsError("no transport: set LINLI_TELEGRAM_TOKEN, or LINLI_MATRIX_HOMESERVER with "
                            "LINLI_MATRIX_USER and LINLI_MATRIX_PASSWORD (try `linli console` for a local chat)")
    return found


def transports(core: Linli, settings: Settings, *, webhook: str | None, listen: str) -> list[Transport]:
    found: list[Transport] = []
    for service in configured_services(settings):
        if service == "telegram":
            from bot.telegram import TelegramTransport

            found.append(TelegramTransport(core, settings, webhook=webhook, listen=listen))
        else:
            from bot.matrix import MatrixTransport

            found.append(MatrixTransport(core, settings))
    return found


def route(core: Linli, running: list[Transport]):  # type: ignore[no-untyped-def]
    """Deliver each action through the transport of its service; a direct message through the first
    service the person has an account on (the order's own service first)."""

    def owner(action: Outgoing) -> str:
        if action.kind is not Kind.DIRECT:
            return action.service
        services = [action.service] if action.service else []
        services += [t.service for t in running if t.service not in services]
        return next((s for s in services if (c := core.contact(action.person_id or 0, s)) and c.external_id), "")

    async def deliver(actions: list[Outgoing]) -> None:
        chosen = await core.call(lambda: [(owner(action), action) for action in actions])
        for transport in running:
            mine = [a for service, a in chosen if service in ("", transport.service) and
                    (a.kind is not Kind.DIRECT or service == transport.service)]
            if mine:
                await transport.deliver(mine)

    return deliver


def offer_owner_code(core: Linli) -> None:
    """A community without a supervisor (zero-config's first start) needs one: print a one-time code."""
    from handlers import ownership
    from storage.db import session

    with session(core.engine) as db:
        if ownership.has_supervisor(db):
            return
        code = ownership.issue(db, core.clock.now())
    print(f"No supervisor yet: send  /认证 {code}  (or /owner {code}) to the bot by direct message to become "
          f"supervisor of {core.community.config.community.name}. The code works once, for 24 hours; "
          "`linli owner-code` makes a new one.", flush=True)


def serve(settings: Settings, *, webhook: str | None = None, listen: str = "127.0.0.1:8443") -> None:
    configure_logging(settings.log_level, (settings.telegram_token, settings.matrix_password, settings.matrix_token))
    configured_services(settings)  # before any database is opened or created
    core = open_core(settings)
    running = transports(core, settings, webhook=webhook, listen=listen)
    offer_owner_code(core)
    asyncio.run(_serve(core, settings, running))


async def _serve(core: Linli, settings: Settings, running: list[Transport]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await core.warm_up()  # the triage model loads on the worker, not on the first resident's message
    for transport in running:
        await transport.start()
        log.info("%s transport started", transport.service)
    sweeper = SweepRunner(core.engine, core.community, core.clock, route(core, running),
                          every=settings.sweep_seconds, offload=core.call)
    sweeper.start()
    try:
        await stop.wait()
    finally:
        sweeper.shutdown()
        for transport in reversed(running):
            await transport.stop()
        log.info("stopped")
