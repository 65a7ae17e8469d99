"""Putting the parts together: storage, the community, the core; shared by every `linli` command."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from bot.settings import Settings, SettingsError, load_community
from handlers.clock import Clock, SystemClock
from handlers.community import CommunityConfig, zero_config
from handlers.roster import stored_community
from handlers.router import Linli
from handlers.triage import ModelError, use_model
from storage.db import make_engine, session
from storage.migrate import upgrade


def open_storage(url: str) -> Engine:
    """An engine on `url`, migrated to the newest schema."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def open_core(settings: Settings, *, clock: Clock | None = None, config: CommunityConfig | None = None,
              bot_names: frozenset[str] = frozenset()) -> Linli:
    if settings.triage_model is not None:  # a community's own model; the shipped one loads on first use
        try:
            use_model(settings.triage_model)
        except ModelError as error:
            raise SettingsError(f"LINLI_TRIAGE_MODEL: {error}") from None
    engine = open_storage(settings.database_url)
    community = config or _community(engine, Path(settings.config))
    return Linli(engine, community, clock or SystemClock(), bot_names=bot_names)


def _community(engine: Engine, path: Path) -> CommunityConfig:
    """The community file if there is one; else the community this database last ran; else zero-config."""
    if path.exists():
        return load_community(path)
    with session(engine) as db:
        return stored_community(db) or zero_config()


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
