"""`linli run`: every configured transport and the scheduler, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from bot.settings import Settings, SettingsError
from bot.transport import Transport
from bot.wiring import configure_logging, open_core
from handlers import outbox
from handlers.protocol import Kind, Outgoing
from handlers.router import Linli, Queued
from scheduler.runner import SweepRunner
from storage.db import Checkpointer

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


def _owners(core: Linli, running: list[Transport]) -> Callable[[list[Outgoing]], Awaitable[list[str]]]:
    """The service that carries each action: its own; a direct message goes through the first service the
    person has an account on (the order's own service first); "" for every service (a card edit)."""

    def owner(action: Outgoing) -> str:
        if action.kind is not Kind.DIRECT:
            return action.service
        services = [action.service] if action.service else []
        services += [t.service for t in running if t.service not in services]
        return next((s for s in services if (c := core.contact(action.person_id or 0, s)) and c.external_id), "")

    async def owners(actions: list[Outgoing]) -> list[str]:
        if not any(action.kind is Kind.DIRECT for action in actions):
            return [action.service for action in actions]
        return await core.call(lambda: [owner(action) for action in actions])

    return owners


def _takes(transport: Transport, service: str, action: Outgoing) -> bool:
    return service in ("", transport.service) and (action.kind is not Kind.DIRECT or service == transport.service)


def route(core: Linli, running: list[Transport]) -> Callable[[list[Outgoing]], Awaitable[None]]:
    """What the scheduler hands back from the outbox goes to the lanes of its service's transport (which
    mark each row sent as it goes); it does not wait for them."""
    owners = _owners(core, running)

    async def deliver(actions: list[Outgoing]) -> None:
        chosen = list(zip(await owners(actions), actions, strict=True))
        for transport in running:
            mine = [action for service, action in chosen if _takes(transport, service, action)]
            if mine:
                await transport.deliver(mine, wait=False)

    return deliver


def route_queued(core: Linli, running: list[Transport]) -> Callable[[list[Queued]], Awaitable[list[Queued]]]:
    """What the core queued while handling an update goes to the lanes of its service's transport; a row no
    transport can carry (a direct message to someone with no account anywhere) is done with."""
    owners = _owners(core, running)

    async def dispatch(queued: list[Queued]) -> list[Queued]:
        chosen = list(zip(await owners([action for _, action in queued]), queued, strict=True))
        for transport in running:
            mine = [item for service, item in chosen if _takes(transport, service, item[1])]
            if mine:
                await transport.post_queued(mine)
        nowhere = [item for service, item in chosen if not any(_takes(t, service, item[1]) for t in running)]
        rows = [row for row, _ in nowhere if row is not None]
        if rows:
            await core.call(outbox.settle, core.engine, rows, core.clock.now())
        return nowhere

    return dispatch


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
    checkpointer = Checkpointer(core.engine)  # SQLite's log copied back beside the core, not in its commits
    try:
        asyncio.run(_serve(core, settings, running))
    finally:
        checkpointer.stop()


async def _serve(core: Linli, settings: Settings, running: list[Transport]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await core.warm_up()  # the triage model loads on the worker, not on the first resident's message
    dispatch = route_queued(core, running)
    for transport in running:
        transport.dispatch = dispatch
        await transport.start()
        log.info("%s transport started", transport.service)
    sweeper = SweepRunner(core.engine, core.community, core.clock, route(core, running),
                          every=settings.sweep_seconds, offload=core.call, owner=core.owner)
    sweeper.start()
    try:
        await stop.wait()
    finally:
        sweeper.shutdown()
        for transport in reversed(running):
            await transport.stop()
        core.close()
        log.info("stopped")
