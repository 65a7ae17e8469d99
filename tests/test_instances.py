"""Two schedulers on one real PostgreSQL: every reminder is sent exactly once, also when one is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.settings import load_community
from handlers.community import CommunityConfig
from tests.neighbourhood import EXAMPLE, Neighbourhood, quiet_days

ROOT = Path(__file__).resolve().parent.parent
ORDERS = 12
SPEED = 1200.0  # a minute of the community's time passes in 50 ms


def instance_config() -> CommunityConfig:
    """The example community with one plain ladder: nudge, deadline, overdue; no whistle, no summaries."""
    config = quiet_days(load_community(EXAMPLE))
    sla = config.sla.model_copy(update={"escalate_after": None, "catch_up_after": "10h"})
    return config.model_copy(update={"sla": sla})


def _orders_in_progress(url: str) -> tuple[Neighbourhood, int]:
    hood = Neighbourhood(url, instance_config())
    for n in range(ORDERS):
        number = hood.report(text=f"{n % 9 + 1}号楼路灯坏了")
        hood.in_progress(number)
    expected = ORDERS * 3  # before, due and overdue of the resolution milestone
    return hood, expected


def _start(url: str, hood: Neighbourhood, out: Path, hang_at: int | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "tests.sweeper_process", url, hood.clock.now().isoformat(), str(SPEED), str(out)]
    if hang_at is not None:
        args.append(str(hang_at))
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _sent(*files: Path) -> list[tuple]:
    lines = []
    for path in files:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                if "key" in item:
                    lines.append((item["order"], item["key"], item["milestone"]))
    return lines


def _wait_for(files: tuple[Path, ...], count: int, seconds: float) -> list[tuple]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(_sent(*files)) >= count:
            time.sleep(1.0)  # and a little longer, to catch any message sent twice
            break
        time.sleep(0.05)
    return _sent(*files)


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.parametrize("kill_one", [False, True], ids=["both-live", "one-killed"])
def test_two_schedulers_send_each_reminder_exactly_once(postgres_url: str, tmp_path: Path, kill_one: bool) -> None:
    hood, expected = _orders_in_progress(postgres_url)
    files = (tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    first = _start(postgres_url, hood, files[0], hang_at=1 if kill_one else None)
    second = None
    try:
        if kill_one:  # the first takes the first batch alone, stops dead holding its lease, and is killed
            deadline = time.monotonic() + 30
            while '"hung"' not in (files[0].read_text() if files[0].exists() else ""):
                assert time.monotonic() < deadline and first.poll() is None, first.stderr.read().decode()[-2000:]
                time.sleep(0.02)
            second = _start(postgres_url, hood, files[1])
            os.kill(first.pid, signal.SIGKILL)
        else:
            second = _start(postgres_url, hood, files[1])
        sent = _wait_for(files, expected, seconds=40)
    finally:
        _stop(first, *([second] if second else []))
        hood.engine.dispose()
    assert len(sent) == expected, f"{len(sent)} messages for {expected} reminders"
    assert len(set(sent)) == expected, "a reminder was sent twice"
