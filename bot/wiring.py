"""Putting the parts together: storage, the community, the core; shared by every `linli` command."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from bot.settings import Settings, load_community
from handlers.clock import Clock, SystemClock
from handlers.community import CommunityConfig
from handlers.router import Linli
from storage.db import make_engine
from storage.migrate import upgrade


def open_storage(url: str) -> Engine:
    """An engine on `url`, migrated to the newest schema."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def open_core(settings: Settings, *, clock: Clock | None = None, config: CommunityConfig | None = None,
              bot_names: frozenset[str] = frozenset()) -> Linli:
    engine = open_storage(settings.database_url)
    community = config or load_community(Path(settings.config))
    return Linli(engine, community, clock or SystemClock(), bot_names=bot_names)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
