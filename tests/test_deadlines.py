"""Deadlines that bite: milestones, the reminder ladder, 吹哨报到, working days, quiet hours, digests."""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlmodel import select

from handlers.clock import ManualClock
from handlers.protocol import Outgoing
from scheduler.runner import SweepRunner
from scheduler.sweep import sweep
from storage.models import Digest, Reminder
from tests.neighbourhood import SHANGHAI, Neighbourhood, hood_with, local


def test_53522_deadlines_start_at_dispatch(hood: Neighbourhood) -> None:
    small = hood.report(text="3栋楼道灯坏了")
    hood.later(minutes=10)
    hood.say("张书记", f"/派单 #{small} @刘师傅")
    order = hood.order(small)
    assert order.respond_due - order.assigned_at == timedelta(minutes=5)
    assert order.resolve_due - order.assigned_at == timedelta(minutes=30)
    big = hood.report(text="整栋楼从昨晚就停电了")
    hood.say("张书记", f"/派单 #{big} @刘师傅")
    order = hood.order(big)
    assert order.urgency == "yellow" and order.plan_due is not None
    assert "出方案" in hood.card(big).text


def test_red_orders_need_someone_on_the_scene(hood: Neighbourhood) -> None:
    number = hood.report(text="5栋电梯卡住了，我爸被困在里面！")
    hood.expect("🔴", "紧急", "@张书记")
    hood.in_progress(number)
    order = hood.order(number)
    assert order.on_scene_due - order.assigned_at == timedelta(minutes=15)
    hood.later(minutes=16)
    hood.expect(f"#{number} 已到到场时限", f"#{number} 距办结时限还有 14 分钟")
    hood.say("刘师傅", f"/到场 #{number}")
    hood.expect(f"#{number} 刘师傅已到场")
    heard = hood.later(minutes=2)
    assert not any("到场" in p.text for p in heard)


def test_reminder_before_and_at_the_deadline_then_the_dispatcher(hood: Neighbourhood) -> None:
    number = hood.report(text="3栋楼道灯坏了")
    hood.in_progress(number)
    hood.later(minutes=14)
    hood.expect_silence()
    hood.later(minutes=1)
    hood.expect("@刘师傅", f"#{number} 距办结时限还有 15 分钟")
    assert hood.card(number).text.startswith("🟡"), "half the time gone: the warning turns yellow"
    hood.later(minutes=15)
    hood.expect("@刘师傅", f"#{number} 已到办结时限")
    hood.later(minutes=3)
    hood.expect(f"⚠ #{number} 已超过办结时限 3 分钟", "@张书记")
    assert "已超时" in hood.card(number).text and hood.card(number).text.startswith("🔴")


def test_a_slipping_order_is_escalated_and_climbs_until_someone_reports(hood: Neighbourhood) -> None:
    number = hood.report(text="3栋楼道灯坏了")
    hood.in_progress(number)
    hood.later(minutes=33)
    hood.later(minutes=27)
    hood.expect(f"📣 #{number} 办结超时未完成，已自动吹哨上报至社区", "请在", "前报到", "@周主任")
    assert hood.order(number).level == 1
    hood.later(minutes=30)
    hood.expect("@周主任", f"#{number} 已吹哨，请尽快报到")
    hood.later(minutes=15)
    hood.expect(f"📣 #{number}", "已自动吹哨上报至街道")
    assert hood.order(number).level == 2
    hood.say("周主任", f"/报到 #{number}")
    hood.expect(f"#{number} 周主任已报到")
    hood.later(hours=2)
    hood.expect_silence()


def test_every_reminder_is_sent_once(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    hood.clock.advance(minutes=40)
    first = sweep(hood.engine, hood.core.community, hood.clock.now())
    second = sweep(hood.engine, hood.core.community, hood.clock.now())
    assert first >= 3 and second == 0
    with hood.db() as db:
        sent = [r for r in db.exec(select(Reminder)) if r.sent_at]
    assert len(sent) == len({(r.milestone, r.step) for r in sent})


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


def test_waiting_on_the_resident_pauses_the_clock(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    hood.later(minutes=10)
    hood.say("刘师傅", f"/等待 #{number} 家里没人，约了晚上")
    hood.expect(f"#{number} 等待居民：家里没人，约了晚上", "时限暂停", "@王阿姨")
    assert "⏸" in hood.card(number).text
    hood.later(hours=3)
    hood.expect_silence()
    hood.say("王阿姨", f"/继续 #{number}")
    hood.expect(f"#{number} 继续处理")
    order = hood.order(number)
    assert order.resolve_due - hood.clock.now() == timedelta(minutes=20), "twenty minutes were left"
    hood.later(minutes=21)
    hood.expect(f"#{number} 已到办结时限", f"#{number} 距办结时限还有 1 分钟")


def test_a_bad_rating_resumes_the_clock_where_it_stood(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    hood.later(minutes=20)
    hood.say("刘师傅", "好了", photos=("a.jpg",), reply_to=hood.card(number))
    hood.later(hours=2)
    hood.press("王阿姨", "★1")
    assert hood.order(number).resolve_due - hood.clock.now() == timedelta(minutes=10)
    hood.say("张书记", f"/派单 #{number} @陈师傅")
    assert hood.order(number).resolve_due - hood.clock.now() == timedelta(minutes=10)


def test_days_are_working_days_national_day_and_a_working_saturday(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hood = hood_with(tmp_path, start=local(2026, 9, 30, 10))
    number = hood.report(text="整栋楼从昨晚就停水了，一直没人管")
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    plan_due = hood.order(number).plan_due.astimezone(UTC) + SHANGHAI
    assert plan_due.date().isoformat() == "2026-10-09", "1–7 October are holidays"
    hood.clock = hood.core.clock = ManualClock(local(2026, 10, 9, 10))
    other = hood.report(text="整个小区都没有热水，好几户了")
    hood.say("张书记", f"/派单 #{other} @刘师傅")
    plan_due = hood.order(other).plan_due.astimezone(UTC) + SHANGHAI
    assert plan_due.date().isoformat() == "2026-10-12", "Saturday 10 October is a working day (调休)"
    hood.engine.dispose()


def test_quiet_hours_hold_nags_except_for_red(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hood = hood_with(tmp_path, start=local(2026, 11, 23, 21, 50), quiet_hours="22:00-07:00")
    blue = hood.report(text="3栋楼道灯坏了")
    red = hood.report(text="7栋有煤气味，很浓")
    hood.in_progress(blue)
    hood.in_progress(red, handler="陈师傅")
    heard = hood.later(minutes=40)
    assert any(f"#{red}" in p.text for p in heard), "red orders are nagged at night"
    assert not any(f"#{blue} " in p.text for p in heard), "blue ones wait for the morning"
    heard = hood.later(hours=8)  # 06:30: still quiet
    assert not any(f"#{blue} " in p.text for p in heard)
    heard = hood.later(minutes=31)  # 07:01
    assert any(f"#{blue} " in p.text for p in heard), "the held nags come in the morning"
    hood.engine.dispose()


def test_after_downtime_one_summary_per_chat(hood: Neighbourhood) -> None:
    numbers = [hood.report(text=f"{n}号楼路灯坏了") for n in (3, 5, 7)]
    for number in numbers:
        hood.in_progress(number)
    heard = hood.later(hours=3)
    assert len(heard) == 1 + 3, "one summary and the three cards marked late"
    summary = heard[0].text
    assert summary.startswith("⏰ 离线期间的提醒汇总")
    assert all(f"#{n} " in summary for n in numbers) and "@张书记" in summary


def test_daily_digest_once_per_group_and_supervisors_get_every_grid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hood = hood_with(tmp_path, start=local(2026, 11, 22, 15), daily_digest="08:30")
    hood.report(text="3栋楼道灯坏了")
    done = hood.report(text="5栋门口垃圾没人清")
    hood.resolved(done)
    late = hood.report(text="7栋楼道灯不亮了")
    hood.in_progress(late)
    hood.clock.advance(hours=17, minutes=20)  # 08:20 the next morning
    hood.later(minutes=5)
    assert not any("每日简报" in p.text for p in hood.heard)
    hood.later(minutes=10)
    daily = [p for p in hood.heard if "每日简报" in p.text]
    assert [p.chat for p in daily] == ["阳光小区业主群", "私聊:周主任"]
    assert "昨日新单 3 · 昨日办结 1 · 待办 2 · 超时 1" in daily[0].text and "🔴#3" in daily[0].text
    hood.later(minutes=10)
    assert not any("每日简报" in p.text for p in hood.heard)
    with hood.db() as db:
        assert len(db.exec(select(Digest)).all()) == 2
    hood.engine.dispose()


def test_weekly_ranking(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hood = hood_with(tmp_path, start=local(2026, 11, 22, 10), weekly_ranking="mon 09:00")
    first = hood.report(text="3栋楼道灯坏了")
    hood.resolved(first)
    hood.press("王阿姨", "★5")
    second = hood.report(text="5栋门口垃圾没人清")
    hood.resolved(second, handler="赵网格员")
    hood.clock.advance(hours=23)
    hood.later(minutes=5)
    weekly = [p for p in hood.heard if "本周三率排名" in p.text]
    assert weekly and weekly[0].chat == "阳光小区业主群"
    assert "1. 物业维修组" in weekly[0].text and "网格员队伍" in weekly[0].text
    hood.engine.dispose()


async def test_the_real_scheduler_wakes_the_sweep_and_delivers(hood: Neighbourhood) -> None:
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
    assert [a.text.key for a in delivered] == ["remind.before", "card"]


def test_a_follow_up_visit_a_working_day_after_closing(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.resolved(number)
    hood.press("王阿姨", "★5")
    hood.later(hours=5)
    assert not any(p.chat == "私聊:王阿姨" for p in hood.heard)
    hood.later(days=3)
    visit = [p for p in hood.heard if p.chat == "私聊:王阿姨"]
    assert visit and f"回访：您反映的 #{number}" in visit[0].text
    hood.press("李姐", "问题还在", visit[0])
    hood.expect("这是问报事人的")
    hood.press("王阿姨", "问题还在", visit[0])
    hood.expect("已转告书记", f"#{number} 回访：报事人反映问题还在", "@张书记")
