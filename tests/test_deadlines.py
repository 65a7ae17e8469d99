"""Deadlines are rows; the sweep nags before and at the deadline and tells the dispatcher when late."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from handlers.protocol import Outgoing
from scheduler.runner import SweepRunner
from scheduler.sweep import sweep
from storage.models import Reminder
from tests.neighbourhood import Neighbourhood


def test_53522_deadlines_start_at_dispatch(hood: Neighbourhood) -> None:
    small = hood.report(text="3栋楼道灯坏了")
    hood.later(minutes=10)
    hood.say("张书记", f"/派单 #{small} @刘师傅")
    order = hood.order(small)
    assert (order.respond_due - order.assigned_at).total_seconds() == 5 * 60
    assert (order.resolve_due - order.assigned_at).total_seconds() == 30 * 60
    big = hood.report(text="整栋楼从昨晚就停电了")
    hood.say("张书记", f"/派单 #{big} @刘师傅")
    order = hood.order(big)
    assert order.urgency == "yellow"
    assert (order.resolve_due - order.assigned_at).days == 4


def test_reminder_before_and_at_the_deadline_then_the_dispatcher(hood: Neighbourhood) -> None:
    number = hood.report(text="3栋楼道灯坏了")
    hood.in_progress(number)
    hood.later(minutes=14)
    hood.expect_silence()
    hood.later(minutes=1)
    hood.expect("@刘师傅", f"#{number} 距办结时限还有 15 分钟")
    hood.later(minutes=15)
    hood.expect("@刘师傅", f"#{number} 已到办结时限")
    hood.later(minutes=3)
    hood.expect(f"⚠ #{number} 已超过办结时限 3 分钟", "@张书记")
    assert "已超时" in hood.card(number).text
    hood.later(hours=5)
    hood.expect_silence()


def test_accepting_in_time_stops_the_response_nags(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    hood.later(minutes=4)
    hood.say("刘师傅", f"/接单 #{number}")
    heard = hood.later(minutes=2)
    assert not any("响应" in p.text for p in heard)


def test_finished_orders_are_never_nagged(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.resolved(number)
    hood.later(hours=10)
    hood.expect_silence()
    with hood.db() as db:
        assert all(r.void or r.sent_at for r in db.exec(select(Reminder)))


def test_a_sweep_run_twice_sends_nothing_the_second_time(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    hood.clock.advance(hours=1)
    first = sweep(hood.engine, hood.core.community, hood.clock.now())
    second = sweep(hood.engine, hood.core.community, hood.clock.now())
    assert len(first) >= 3 and second == []


async def test_the_real_scheduler_wakes_the_sweep(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    delivered: list[Outgoing] = []

    async def deliver(actions: list[Outgoing]) -> None:
        delivered.extend(actions)

    runner = SweepRunner(hood.engine, hood.core.community, hood.clock, deliver, every=0.01)
    runner.start()
    try:
        hood.clock.advance(minutes=20)
        await runner.wait_runs(2)
    finally:
        runner.shutdown()
    assert [a.text.key for a in delivered] == ["remind.before"]
    await asyncio.sleep(0)
