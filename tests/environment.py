"""The environment a `linli` subprocess starts with in the tests: this machine's, minus every LINLI_ setting."""

from __future__ import annotations

import os


def without_linli_settings() -> dict[str, str]:
    """os.environ without LINLI_* variables, so a developer's own settings never reach a test."""
    return {key: value for key, value in os.environ.items() if not key.startswith("LINLI_")}
