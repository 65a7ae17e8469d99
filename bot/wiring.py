"""Putting the parts together: storage, the community, the core; shared by every `linli` command."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

from sqlalchemy import URL, Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError

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
    _no_stranger_file(make_url(url))
    engine = make_engine(url)
    try:
        upgrade(engine)
    except OperationalError as error:
        engine.dispose()
        raise SettingsError(f"LINLI_DATABASE_URL: {unreachable(make_url(url), error)}") from None
    except DatabaseError as error:  # "file is not a database": a document, a typo
        engine.dispose()
        raise SettingsError(f"LINLI_DATABASE_URL: {make_url(url).database} is no SQLite database "
                            f"({str(error.orig).strip()})") from None
    return engine


def _no_stranger_file(url: URL) -> None:
    """A SQLite URL naming a file that is something else (a typo, a document) stops here, untouched."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    if path.is_dir():
        raise SettingsError(f"LINLI_DATABASE_URL: {path} is a folder, not a SQLite file")
    # The file's header is not read here: opening and closing another descriptor on a database this
    # process has open drops SQLite's POSIX locks. A file that is no database fails in `upgrade` instead.


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
    return Linli(engine, community, clock or SystemClock(), bot_names=bot_names,
                 judge_ahead=settings.triage_process and (os.cpu_count() or 1) > 1)


def _community(engine: Engine) -> CommunityConfig:
    """Without a community file: the community this database last ran, else zero-config."""
    with session(engine) as db:
        stored = stored_community(db)
    log.info("no community file: serving %s", "the community this database last ran" if stored else "zero-config")
    return stored or zero_config()


def configure_logging(level: str, secrets: Iterable[object] = ()) -> None:
    """Log to stderr at `level`, with every secret redacted from every line (see `Redactor`).

    `secrets` are the values to hide wherever they turn up: tokens and passwords from the settings, as
    str or pydantic SecretStr (None is skipped). More can be added later with `hide_secret`.
    """
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # a line per long poll at INFO; with DEBUG asked for, they come too (redacted: the URLs hold the token)
    logging.getLogger("httpx").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    # matrix-nio logs every event of every room at INFO: only with DEBUG asked for
    logging.getLogger("nio").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    redactor = Redactor(_secret_values(secrets))
    for handler in logging.getLogger().handlers:
        for earlier in [f for f in handler.filters if isinstance(f, Redactor)]:
            redactor.known |= earlier.known
            handler.removeFilter(earlier)
        handler.addFilter(redactor)


def hide_secret(value: str | None) -> None:
    """Redact `value` from now on (a secret made at run time, such as a webhook's or a fresh login's)."""
    for handler in logging.getLogger().handlers:
        for redactor in handler.filters:
            if isinstance(redactor, Redactor):
                redactor.add(value)


def _secret_values(secrets: Iterable[object]) -> list[str]:
    values = []
    for secret in secrets:
        value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        if isinstance(value, str) and value:
            values.append(value)
    return values


REDACTED = "[REDACTED]"
SHORTEST_SECRET = 6  # shorter values would blank out ordinary words; the patterns below still catch them
_KEY = r"[A-Za-z_-]*(?:token|password|passwd|secret|api[_-]?key)"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # the Bot API token is in every Bot API URL: https://api.telegram.org/bot123456:AA…/getUpdates
    (re.compile(r"(bot\d+|\b\d{5,}):[A-Za-z0-9_-]{30,}"), rf"\g<1>:{REDACTED}"),
    # "password": "…", 'secret_token': '…', access_token=…, password: …  (JSON, repr, query, prose)
    (re.compile(rf"""(?i)(\b{_KEY}["']?\s*[:=]\s*)(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"'&,;}}\])]+)"""),
     rf"\g<1>{REDACTED}"),
    (re.compile(r"\b(Bearer|Basic) +[A-Za-z0-9._~+/=-]{8,}"), rf"\g<1> {REDACTED}"),  # Authorization headers
    (re.compile(r"\bsy[tr]_[A-Za-z0-9_]+"), REDACTED),  # Synapse access and refresh tokens
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\g<1>{REDACTED}@"),  # postgresql://user:password@host
]


class Redactor(logging.Filter):
    """Rewrites each record before any handler writes it: known secret values, in the forms a URL or JSON
    body would carry them, and anything shaped like a token or a password, become [REDACTED]. Installed
    on the root logger's handlers, it sees every library's lines (httpx, httpcore, telegram, nio, urllib3),
    their arguments and their tracebacks, which often repeat the URL of the failed request."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.known: set[str] = set()
        self._known: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < SHORTEST_SECRET:
            return
        forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
        bot_id, colon, key = secret.partition(":")
        if colon and bot_id.isdigit() and len(key) >= SHORTEST_SECRET:
            forms.add(key)  # a Bot API token's secret half, wherever it is cut from its bot id
        self.known |= forms
        self._known = None

    def redact(self, text: str) -> str:
        if self.known:
            if self._known is None:
                self._known = re.compile("|".join(re.escape(s) for s in sorted(self.known, key=len, reverse=True)))
            text = self._known.sub(REDACTED, text)
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the line is written as it came, redacted all the same
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True
