"""Shared fixtures. Servers (Bot API, Synapse, PostgreSQL) start once per test session."""

pytest_plugins = [
    "tests.servers.telegram_api",
    "tests.servers.synapse",
    "tests.servers.postgres",
]
