"""Putting the parts together: storage, the community, the core; shared by every `linli` command."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, Engine, make_url
from sqlalchemy.exc import OperationalError

from bot.settings import Settings, SettingsError, community_file, load_community
from handlers.clock import Clock, SystemClock
from handlers.community import CommunityConfig, zero_config
from handlers.roster import stored_community
from handlers.router import Linli
from handlers.triage import ModelError, use_model
from storage.db import make_engine, session
from storage.migrate import upgrade

log = logging.getLogger(__name__)


def open_storage(url: str) -> Engine:
    """An engine on `url`, migrated to the newest schema; a database that cannot be reached is a bad setting."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    except OperationalError as error:
        engine.dispose()
        raise SettingsError(f"LINLI_DATABASE_URL: {unreachable(make_url(url), error)}") from None
    return engine


def unreachable(url: URL, error: OperationalError) -> str:
    """Why the database at `url` cannot be used, in one line: where it is and what it answered."""
    reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
    reason = reason.split(" failed: ")[-1]  # psycopg repeats the address before the reason
    if url.get_backend_name() == "sqlite":
        return f"cannot open the SQLite file {url.database}: {reason}"
    return f"cannot reach PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}: {reason}"


@contextmanager
def no_new_empty_database(url: str) -> Iterator[None]:
    """A start that fails leaves no new SQLite file behind (the next one would find a stranger's database)."""
    parsed = make_url(url)
    path = Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None, "", ":memory:") else None
    existed = path is None or path.exists()
    try:
        yield
    except BaseException:
        if not existed and path is not None:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        raise


def open_core(settings: Settings, *, clock: Clock | None = None, config: CommunityConfig | None = None,
              bot_names: frozenset[str] = frozenset()) -> Linli:
    if settings.triage_model is not None:  # a community's own model; the shipped one loads on first use
        try:
            use_model(settings.triage_model)
        except ModelError as error:
            raise SettingsError(f"LINLI_TRIAGE_MODEL: {error}") from None
    path = community_file(settings) if config is None else None
    community_config = config or (load_community(path) if path else None)
    engine = open_storage(settings.database_url)
    community = community_config or _community(engine)
    return Linli(engine, community, clock or SystemClock(), bot_names=bot_names)


def _community(engine: Engine) -> CommunityConfig:
    """Without a community file: the community this database last ran, else zero-config."""
    with session(engine) as db:
        stored = stored_community(db)
    log.info("no community file: serving %s", "the community this database last ran" if stored else "zero-config")
    return stored or zero_config()


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
