"""Triage in the group: chatter stays chatter, requests are filed, red ones alert, duplicates are caught."""

from __future__ import annotations

from sqlmodel import select

from storage.models import Event, Follower
from tests.neighbourhood import Neighbourhood


def test_chatter_files_nothing_and_says_nothing(hood: Neighbourhood) -> None:
    for line in ("大家早上好☀️", "收到", "【通知】明天上午9点到12点3号楼停水检修，请提前储水", "有没有人一起拼车去机场",
                 "[图片]", "谢谢物业，电梯修好了👍", "5栋3单元团购水果接龙"):
        hood.say("李姐", line)
        hood.expect_silence()
    assert hood.order_count() == 0


def test_a_plain_message_about_a_problem_is_filed(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "3栋2单元楼道灯又坏了 晚上黑漆漆的 老人下楼怕摔")
    hood.expect("已登记", "#1", "公共设施", "3栋2单元")
    hood.say("Mr. Smith", "The lift in block 5 has been broken since this morning, please send someone")
    hood.expect("#2", "公共设施", "5栋")


def test_a_red_report_alerts_the_dispatcher_and_the_team_on_duty(hood: Neighbourhood) -> None:
    hood.say("赵先生", "7栋2单元有很浓的煤气味，快来人看看！")
    said = hood.expect("已登记", "🔴", "紧急", "治安消防", "@张书记")
    assert "@钱警官" in said, "the team that would take it hears at once"


def test_plus_one_follows_instead_of_filing(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 3栋停水了，一滴都没有")
    for who, line in (("李姐", "+1"), ("孙大爷", "我家也停水了"), ("吴奶奶", "同上")):
        hood.say(who, line, reply_to=hood.card(1))
        hood.expect(f"已把{who}加为 #1 的关注人")
    assert hood.order_count() == 1
    with hood.db() as db:
        assert len(db.exec(select(Follower)).all()) == 3


def test_undo_removes_the_order_and_keeps_its_history(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 门口路灯坏了")
    hood.press("王阿姨", "撤销", hood.card(1))
    hood.expect("#1 已撤销")
    assert hood.order(1).state == "cancelled"
    with hood.db() as db:
        assert [e.action for e in db.exec(select(Event))] == ["report", "cancel"]


def test_a_phone_number_never_reaches_the_group(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 3栋楼道灯坏了，有事打我电话13812345678，身份证110101199003071234")
    hood.say("张书记", "/派单 #1 @刘师傅")
    hood.say("刘师傅", "/退单 #1 联系不上，电话13812345678没人接")
    group = "\n".join(p.text for p in hood.chat.bot_said("阳光小区业主群"))
    assert "13812345678" not in group and "110101199003071234" not in group
    assert "138****5678" in group
    assert hood.order(1).text.endswith("110101199003071234"), "the order itself keeps what was written"


def test_the_same_problem_twice_asks_and_merges(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "3栋2单元楼道灯坏了，晚上很黑")
    hood.say("李姐", "3栋2单元的楼道灯又坏了，黑乎乎的")
    hood.expect("已登记", "#2 是不是和 #1", "同一个问题")
    hood.press("李姐", "是，并入 #1")
    hood.expect("#2 与 #1 是同一个问题，已合并")
    assert hood.order(2).state == "merged"
    hood.say("孙大爷", "5栋门口的路灯也不亮了")
    assert "同一个问题" not in hood.answer(), "another building is another problem"


def test_a_private_matter_keeps_its_details_out_of_the_group(hood: Neighbourhood) -> None:
    hood.say("吴奶奶", "/报事 我家厨房水龙头坏了一直滴水，3栋2单元502，谁能帮忙修一下")
    order = hood.order(1)
    assert order.matter == "private", order
    group = [p for p in hood.heard if p.chat == "阳光小区业主群"]
    direct = [p for p in hood.heard if p.chat == "私聊:吴奶奶"]
    assert "私事，详情已私信报事人" in group[0].text and "水龙头" not in group[0].text and "502" not in group[0].text
    assert direct and "水龙头" in direct[0].text


def test_a_dispatchers_correction_becomes_a_training_example(hood: Neighbourhood) -> None:
    from storage.models import Example

    hood.say("王阿姨", "/报事 北门那边好像有人在烧东西")
    hood.say("王阿姨", "/修改 #1 紧急=红")
    hood.expect("只有书记或网格长可以修改工单的分类")
    hood.say("张书记", "/修改 #1 类别=治安消防 紧急=红 位置=3栋")
    hood.expect("已更正 #1", "分类", "治安消防", "紧急程度", "→ 红", "楼栋")
    order = hood.order(1)
    assert (order.category, order.urgency, order.building) == ("safety", "red", "3")
    assert "治安消防" in hood.card(1).text
    with hood.db() as db:
        example = db.exec(select(Example)).one().payload
    assert example["category"] == "safety" and example["urgency"] == "red" and example["source"] == "correction"
    hood.say("张书记", "/修改 #1 乱写")
    hood.expect("用法：/修改 #12")


def test_a_private_matter_is_rated_by_direct_message(hood: Neighbourhood) -> None:
    hood.say("吴奶奶", "/报事 我家厨房水龙头坏了一直滴水，谁能帮忙修一下")
    hood.say("张书记", "/派单 #1 @刘师傅")
    hood.say("刘师傅", "/接单 #1")
    hood.say("刘师傅", "修好了", photos=("tap.jpg",), reply_to=hood.card(1))
    group = [p for p in hood.heard if p.chat == "阳光小区业主群" and p.author == "邻里助手" and not p.edits]
    direct = [p for p in hood.heard if p.chat == "私聊:吴奶奶"]
    assert "#1 已办结，评价邀请已私信报事人" in group[0].text and not group[0].buttons
    assert direct and direct[0].photo == "tap.jpg" and "★5" in [label for label, _ in direct[0].buttons]
    hood.press("吴奶奶", "★5", direct[0])
    hood.expect("谢谢评价")


def test_corrections_export_and_train(hood: Neighbourhood, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess
    import sys

    hood.say("王阿姨", "/报事 北门那边好像有人在烧东西")
    hood.say("张书记", "/修改 #1 类别=治安消防 紧急=红")
    out = tmp_path / "corrections.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    env["LINLI_DATABASE_URL"] = str(hood.engine.url)
    done = subprocess.run([sys.executable, "-m", "bot.cli", "triage", "corrections", str(out)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == [{**lines[0], "category": "safety", "urgency": "red"}] and lines[0]["text"].startswith("北门")


def test_danger_words_in_chatter_are_never_quiet(hood: Neighbourhood, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A message the model does not read as a request but that names a danger: the dispatchers are asked,
    and one tap files it as a red order in the sender's name. (Which texts those are is the model's
    business, checked in tests/test_triage.py; here one verdict is made so.)"""
    from dataclasses import replace

    from handlers import intake
    from handlers.triage import Location, Triage

    text = "刚才好像闻到一股煤气味 也不知道是哪家的"
    judged = intake.judge
    monkeypatch.setattr(intake, "judge", lambda turn, said, *, explicit: replace(
        Triage(False, None, None, None, Location(), 0.9), action="ask", possible_emergency=True)
        if said == text and not explicit else judged(turn, said, explicit=explicit))
    hood.say("李姐", text)
    hood.expect("⚠ 可能的紧急情况", "@张书记")
    hood.press("王阿姨", "🔴 登记为紧急工单")
    hood.expect("只有书记、网格长和发消息的人可以确认")
    hood.press("张书记", "🔴 登记为紧急工单")
    hood.expect("已登记", "🔴", "紧急")
    order = hood.order(1)
    assert order.urgency == "red" and hood.order_count() == 1
    with hood.db() as db:
        from storage.models import Person

        assert db.get(Person, order.reporter_id).name == "李姐", "filed in the sender's name"


def test_one_problem_said_in_pieces_is_one_order(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "电梯又坏了，卡在三楼不动")
    hood.expect("已登记", "#1")
    hood.say("王阿姨", "5栋")  # the place, a moment later
    hood.expect("已补充到 #1")
    hood.say("王阿姨", photos=("lift.jpg",))  # and a photo
    hood.expect("已补充到 #1")
    hood.say("王阿姨", "谢谢")  # not part of it
    hood.expect_silence()
    order = hood.order(1)
    assert order.building == "5" and "5栋" in order.text and hood.order_count() == 1
    hood.later(minutes=3)
    hood.say("王阿姨", "7栋楼道灯也坏了")  # later, another problem: another order
    hood.expect("已登记", "#2")


def test_a_photo_or_a_place_first_joins_the_report_after_it(hood: Neighbourhood) -> None:
    hood.say("李姐", photos=("rubbish.jpg",))
    hood.expect_silence()
    hood.say("李姐", "3栋")
    hood.expect_silence()
    hood.say("李姐", "门口垃圾堆了好几天没人清理，臭得很")
    hood.expect("已登记", "#1")
    order = hood.order(1)
    assert order.building == "3" and order.text.startswith("3栋")
    with hood.db() as db:
        from sqlmodel import select

        from storage.models import Photo

        assert [p.ref for p in db.exec(select(Photo).where(Photo.order_id == order.id))] == ["rubbish.jpg"]
