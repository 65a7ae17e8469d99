"""One `linli run`-like scheduler process for the several-instances test: sweeps a shared database on a
fast clock and writes every message it delivers, one JSON line each, to its own file.

python -m tests.sweeper_process URL START_ISO SPEED OUT_FILE [HANG_AT_BATCH]
HANG_AT_BATCH makes the process stop dead when it is about to deliver that batch (it has leased the
rows but sent nothing): the test then kills it, as a crash would.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import datetime, timedelta

from handlers.protocol import Kind, Outgoing
from handlers.router import Linli
from scheduler.runner import SweepRunner
from storage.db import make_engine
from tests.test_instances import instance_config


class FastClock:
    def __init__(self, start: datetime, speed: float) -> None:
        self.start, self.speed, self.began = start, speed, time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.began) * self.speed)


async def main(url: str, start: str, speed: float, out_path: str, hang_at: int | None) -> None:
    engine = make_engine(url)
    clock = FastClock(datetime.fromisoformat(start), speed)
    core = Linli(engine, instance_config(), clock)
    batches = 0
    out = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 (open for the life of the process)

    async def deliver(actions: list[Outgoing]) -> None:
        nonlocal batches
        batches += 1
        if hang_at is not None and batches >= hang_at:
            out.write(json.dumps({"hung": True}) + "\n")
            out.flush()
            await asyncio.sleep(3600)
        for action in actions:
            if action.kind is Kind.SEND:
                params = action.text.params
                line = {"order": action.order_id, "key": action.text.key, "milestone": params.get("milestone"),
                        "pid": os.getpid()}
                out.write(json.dumps(line) + "\n")
        out.flush()
        os.fsync(out.fileno())

    runner = SweepRunner(engine, core.community, clock, deliver, every=0.02, lease=timedelta(minutes=10))
    runner.start()
    await asyncio.sleep(120)


if __name__ == "__main__":
    hang = int(sys.argv[5]) if len(sys.argv) > 5 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], hang))
