"""Benchmarks of the chat transports against the test servers (a local Synapse, the Bot API server):
`make bench-transports`, from a checkout. They need tests/servers, so they live with the tests, and
`linli bench` measures only what an installed package can."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.matrix_transport import bench_matrix
from tests.benchmarks.telegram_transport import bench_telegram
from tests.environment import without_linli_settings
from tests.servers.synapse import start_synapse
from tests.servers.telegram_api import TelegramApiServer


def bench_matrix_transport(url: str, events: int = 100) -> dict[str, Any]:
    """Reports per second through the Matrix transport against a local Synapse the benchmark starts.

    """
    with tempfile.TemporaryDirectory(prefix="linli-bench-synapse-") as scratch:
        server = start_synapse(scratch, relaxed_limits=True)
        try:
            return bench_matrix(server.url, server.shared_secret, events=events, database_url=url)
        finally:
            server.stop()


def bench_telegram_transport(url: str) -> dict[str, Any]:
    """Updates per second through the Telegram transport against a local Bot API server."""
    return bench_telegram(url)


def bench_run_memory(url: str, seconds: float = 8.0) -> dict[str, Any]:
    """`linli run` with both transports, against a local Synapse and Bot API server: its resident memory."""
    bot_api = TelegramApiServer()
    bot_api.start()
    with tempfile.TemporaryDirectory(prefix="linli-bench-run-") as scratch:
        synapse = start_synapse(Path(scratch) / "synapse")
        try:
            synapse.register("linli", "bench-password")
            env = {**without_linli_settings(), "LINLI_DATABASE_URL": url, "LINLI_TELEGRAM_TOKEN": bot_api.token,
                   "LINLI_TELEGRAM_API_URL": bot_api.base_url, "LINLI_MATRIX_HOMESERVER": synapse.url,
                   "LINLI_MATRIX_USER": "linli", "LINLI_MATRIX_PASSWORD": "bench-password"}
            process = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], cwd=scratch, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(seconds)
                alive = process.poll() is None
                rss = _rss_mb(process.pid) if alive else None
            finally:
                process.terminate()
                process.wait(timeout=20)
        finally:
            synapse.stop()
            bot_api.stop()
    return {"rss_mb": rss, "transports": ["telegram", "matrix"], "after_s": seconds, "ran": alive}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    """Each transport on a scratch SQLite file; one JSON object, a key per benchmark."""
    results: dict[str, Any] = {}
    for name, run in (("telegram", bench_telegram_transport), ("matrix", bench_matrix_transport),
                      ("run", bench_run_memory)):
        with tempfile.TemporaryDirectory(prefix=f"linli-bench-{name}-") as scratch:
            print(f"running {name}…", file=sys.stderr)
            results[name] = run(f"sqlite:///{Path(scratch) / 'bench.db'}")
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
