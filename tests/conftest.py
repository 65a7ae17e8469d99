"""Shared fixtures. Servers (Bot API, Synapse, PostgreSQL) start once per test session."""

pytest_plugins = [
    "tests.servers.telegram_api",
    "tests.servers.synapse",
    "tests.servers.postgres",
    "tests.servers.browser",
]


import pytest  # noqa: E402

from tests.neighbourhood import Neighbourhood  # noqa: E402


@pytest.fixture
def hood(tmp_path) -> Neighbourhood:  # type: ignore[no-untyped-def]
    """The example neighbourhood (linli.example.toml) on a fresh SQLite file."""
    neighbourhood = Neighbourhood(f"sqlite:///{tmp_path / 'linli.db'}")
    yield neighbourhood
    neighbourhood.engine.dispose()
