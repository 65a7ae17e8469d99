"""Settings: `LINLI_*` environment variables and the `linli.toml` community file.

A bad setting stops start-up with one line that names it (`SettingsError`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from handlers.community import CommunityConfig, zero_config

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_CONFIG = Path("linli.toml")


class SettingsError(Exception):
    """A setting that cannot work; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINLI_", extra="ignore")

    database_url: str = "sqlite:///linli.db"
    config: Path = DEFAULT_CONFIG
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    matrix_homeserver: str | None = None
    matrix_user: str | None = None
    matrix_password: SecretStr | None = None
    matrix_token: SecretStr | None = None
    sweep_seconds: float = 1.0  # an idle sweep costs about a millisecond; reminders are at most this late
    log_level: str = "INFO"
    triage_model: Path | None = None
    triage_process: bool = True  # `linli run` judges a busy moment's messages ahead on a second core

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as error:
            raise ValueError(f"not a database URL: {value!r}") from error
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return value

    @field_validator("telegram_api_url", "matrix_homeserver")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is no log level; use one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("sweep_seconds")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_one_line(error, prefix="LINLI_")) from None


def community_file(settings: Settings) -> Path | None:
    """The community file to read, or None for zero-config. Only the default path may be missing: a
    LINLI_CONFIG that names no file is a mistake, and zero-config would open dispatching to strangers."""
    path = Path(settings.config)
    if path.is_file():
        return path
    if "config" in settings.model_fields_set:
        raise SettingsError(f"LINLI_CONFIG: no community file at {path}")
    return None


def load_community(path: Path | None) -> CommunityConfig:
    """The community file, or the zero-config community when there is none."""
    if path is None or not path.exists():
        return zero_config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"{path}: {error}") from None
    try:
        config = CommunityConfig.model_validate(data)
    except ValidationError as error:
        raise SettingsError(f"{path}: {_one_line(error)}") from None
    _known_services(config, path)
    return config


SERVICES = ("console", "telegram", "matrix")  # the chat services Linli has a transport for


def _known_services(config: CommunityConfig, path: Path) -> None:
    """Accounts and chats name services the core does not know: a typo there must not pass silently."""
    for person in config.people:
        for service in person.accounts:
            if service not in SERVICES:
                raise SettingsError(f"{path}: person {person.name}: unknown field or service {service!r} "
                                    f"(services: {', '.join(SERVICES)})")
    for chat in config.chats:
        if chat.service not in SERVICES:
            raise SettingsError(f"{path}: chat {chat.id}: unknown service {chat.service!r}")


def _one_line(error: ValidationError, prefix: str = "") -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "file"
    if prefix:
        where = prefix + where.upper()
    more = len(error.errors()) - 1
    return f"{where}: {first['msg']}" + (f" (and {more} more)" if more else "")
