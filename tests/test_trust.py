"""Trust: nobody takes over a community, private matters stay private, nobody games the rates or the 积分."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bot.settings import load_community
from handlers import ownership
from handlers.community import CommunityConfig, PersonConfig
from storage.db import session
from tests.neighbourhood import EXAMPLE, GROUP, Neighbourhood, quiet_days

STRANGERS = "陌生群"


def with_building_head() -> CommunityConfig:
    """The example community plus 楼长老王, dispatcher of building 3 only."""
    config = quiet_days(load_community(EXAMPLE))
    head = PersonConfig(name="楼长老王", dispatcher_of=["YG-A-3"])
    return config.model_copy(update={"people": [*config.people, head]})


# --- takeover ------------------------------------------------------------------------------------------
def test_the_admin_of_a_strangers_chat_takes_over_nothing(hood: Neighbourhood) -> None:
    number = hood.report("王阿姨", "3栋2单元楼道灯坏了")
    hood.chat.admins.add("外人")
    hood.say("外人", "/绑定 YG", chat=STRANGERS)
    hood.expect("已请 阳光社区 的书记、网格长或督办确认绑定", "外人 请求把群「陌生群」绑定到 阳光社区")
    hood.say("外人", f"/撤销 #{number} 我说了算", chat=STRANGERS)
    hood.expect("只有")
    hood.say("外人", f"/派单 #{number} @刘师傅", chat=STRANGERS)
    hood.expect("只有书记或网格长可以派单")
    assert hood.order(number).state == "reported", "the takeover changed nothing"


def test_a_binding_request_waits_for_the_grids_dispatcher(hood: Neighbourhood) -> None:
    hood.chat.admins.add("楼主")
    hood.say("楼主", "/绑定 YG-A-3", chat="3栋新群")
    asked = [p for p in hood.heard if p.chat.startswith("私聊:")]
    assert {p.chat for p in asked} == {"私聊:张书记", "私聊:周主任"}, "the grid's dispatchers and supervisors"
    assert "楼主 请求把群「3栋新群」绑定到 阳光小区3栋" in asked[0].text
    hood.press("外人", "批准", asked[0])
    hood.expect("只有这个网格的书记或网格长可以绑定群")
    hood.press("张书记", "批准", asked[0])
    assert any(p.chat == "3栋新群" and "本群已绑定到 阳光小区3栋" in p.text for p in hood.heard)
    hood.press("周主任", "批准", asked[1])
    hood.expect("这个问题已经处理过了")


def test_zero_config_gets_its_first_supervisor_from_a_one_time_code(tmp_path: Path) -> None:
    hood = Neighbourhood(f"sqlite:///{tmp_path / 'zero.db'}", CommunityConfig())
    hood.chat.admins.add("群主")
    hood.say("群主", "/绑定 LINLI", chat="幸福小区群")
    hood.expect("还没有书记、网格长或督办可以确认绑定", "linli owner-code")
    with session(hood.engine) as db:
        code = ownership.issue(db, hood.clock.now())
    hood.say("群主", f"/认证 {code}", chat="幸福小区群")
    hood.expect("认证码请私聊发给我")
    hood.say("外人", "/认证 LINLI-AAAA-BBBB-CCCC", chat="私聊")
    hood.expect("认证码不对或已过期")
    hood.say("群主", f"/认证 {code.lower()}", chat="私聊")
    hood.expect("认证成功：您现在是 邻里社区 的督办")
    hood.say("外人", f"/认证 {code}", chat="私聊")
    hood.expect("认证码不对或已过期")  # once only
    hood.say("群主", "/绑定 LINLI", chat="幸福小区群")
    hood.expect("本群已绑定到")
    hood.engine.dispose()


def test_an_owner_code_lasts_a_day(tmp_path: Path) -> None:
    hood = Neighbourhood(f"sqlite:///{tmp_path / 'zero.db'}", CommunityConfig())
    with session(hood.engine) as db:
        code = ownership.issue(db, hood.clock.now())
    hood.clock.advance(hours=25)
    hood.say("群主", f"/认证 {code}", chat="私聊")
    hood.expect("认证码不对或已过期")
    hood.engine.dispose()


# --- who may do what, where ---------------------------------------------------------------------------
ACTORS = {  # who → (the chat they speak in, is a chat admin there)
    "王阿姨": (GROUP, False),  # a resident
    "刘师傅": (GROUP, False),  # a handler, not holding the order
    "群主A": (GROUP, True),  # admin of the chat the orders come from
    "群主B": (STRANGERS, True),  # admin of another chat
    "楼长老王": (GROUP, False),  # dispatcher of building 3 only
    "张书记": (GROUP, False),  # dispatcher of the community
    "周主任": (GROUP, False),  # supervisor of the community
}
WHERE = {  # where the order comes from → (chat, text)
    "own chat, building 3": (GROUP, "3栋2单元楼道灯坏了"),
    "own chat, building 5": (GROUP, "5栋门口垃圾没人清"),
    "another chat": (STRANGERS, "7栋路灯坏了"),
}
ACTIONS = {  # action → (command, how the order looks once it happened)
    "assign": ("/派单 #{n} @陈师傅", lambda o: o.state == "assigned"),
    "cancel": ("/撤销 #{n} 重复了", lambda o: o.state == "cancelled"),
    "escalate": ("/吹哨 #{n} 太慢", lambda o: o.level == 1),
    "correct": ("/修改 #{n} 紧急=红", lambda o: o.urgency == "red"),
    "merge": ("/合并 #{n} #{other}", lambda o: o.state == "merged"),
}
ALLOWED = {  # who → the places whose orders they may dispatch, cancel, escalate, correct and merge
    "王阿姨": set(),
    "刘师傅": set(),
    "群主A": {"own chat, building 3", "own chat, building 5"},
    "群主B": {"another chat"},
    "楼长老王": {"own chat, building 3"},
    "张书记": set(WHERE),
    "周主任": set(WHERE),
}


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Neighbourhood:
    hood = Neighbourhood(f"sqlite:///{tmp_path_factory.mktemp('scope') / 'scope.db'}", with_building_head())
    hood.chat.admins.update({"群主A", "群主B"})
    yield hood
    hood.engine.dispose()


@pytest.mark.parametrize(("who", "action", "where"), list(itertools.product(ACTORS, ACTIONS, WHERE)))
def test_every_cell_of_the_scope_table(scoped: Neighbourhood, who: str, action: str, where: str) -> None:
    chat, text = WHERE[where]
    other = scoped.report("赵大爷", text) if action == "merge" else None
    scoped.say("赵大爷", f"/报事 {text}", chat=chat)
    number = scoped.order_count()
    command, happened = ACTIONS[action]
    speaks_in, _ = ACTORS[who]
    scoped.say(who, command.format(n=number, other=other), chat=speaks_in)
    done = happened(scoped.order(number))
    assert done == (where in ALLOWED[who]), f"{who} {action} on an order from {where}: {scoped.answer()}"


# --- private matters ----------------------------------------------------------------------------------
PRIVATE = "我家卫生间马桶堵了，3栋2单元502，能不能帮忙找个师傅"


def private_order(hood: Neighbourhood) -> int:
    number = hood.report("王阿姨", PRIVATE)
    hood.say("张书记", f"/修改 #{number} 事项=私事")
    assert hood.order(number).matter == "private"
    return number


def test_a_private_matter_is_never_listed_with_its_text(hood: Neighbourhood) -> None:
    number = private_order(hood)
    for who, chat in (("李姐", GROUP), ("外人", "私聊"), ("张书记", GROUP), ("王阿姨", GROUP)):
        hood.say(who, "/待办", chat=chat)
        said = hood.answer()
        assert f"#{number} 私事" in said and "马桶" not in said and "502" not in said, (who, chat, said)
    hood.say("张书记", "/待办", chat="私聊")
    hood.expect("马桶")  # the grid's dispatcher, by direct message
    hood.say("王阿姨", "/我的", chat="私聊")
    hood.expect("马桶")  # its reporter, by direct message


def test_neither_the_duplicate_question_nor_a_correction_tells_the_group(hood: Neighbourhood) -> None:
    number = private_order(hood)
    hood.say("李姐", "3栋2单元马桶堵了，找个师傅")
    assert "马桶堵了，3栋" not in hood.answer() and "502" not in hood.answer()
    hood.say("张书记", f"/修改 #{number} 位置=3栋2单元602")
    assert "602" not in hood.answer() and "502" not in hood.answer()


# --- ratings and 积分 ------------------------------------------------------------------------------------
def test_a_stranger_cannot_follow_a_finished_order_to_rate_it(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.resolved(number)
    hood.say("外人", f"/关注 #{number}")
    hood.expect("已经结束")
    hood.say("外人", f"/评价 #{number} 1")
    hood.expect("只有报事人和关注人可以评价")
    assert hood.order(number).state == "resolved"


def test_nobody_rates_an_order_they_worked_on(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.say("刘师傅", f"/关注 #{number}")
    hood.say("张书记", f"/关注 #{number}")
    hood.resolved(number)
    hood.say("刘师傅", f"/评价 #{number} 5")
    hood.expect("是您经手的工单，不能自己评价")
    hood.say("张书记", f"/评价 #{number} 5")  # he dispatched it
    hood.expect("是您经手的工单，不能自己评价")
    hood.say("陈师傅", f"/评价 #{number} 5")  # a member of the team that holds it
    assert "谢谢评价" not in hood.answer()
    assert hood.order(number).state == "resolved"


def test_a_volunteer_earns_no_points_on_an_order_of_their_own(hood: Neighbourhood) -> None:
    hood.say("小李", "/报事 5栋门口垃圾没人清")
    number = hood.order_count()
    hood.say("小李", f"/认领 #{number}")
    hood.say("小李", "清理好了", photos=("done.jpg",), reply_to=hood.card(number))
    hood.say("小李", f"/评价 #{number} 5")
    hood.expect("是您经手的工单，不能自己评价")
    hood.say("小李", "/积分")
    hood.expect("还没有人获得积分")


def test_a_strangers_chat_can_neither_follow_nor_show_another_chats_order(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.say("外人", f"/关注 #{number}", chat=STRANGERS)
    hood.expect("不是本群的工单")
    hood.say("外人", f"/进度 #{number}", chat=STRANGERS)
    hood.expect("不是本群的工单")
    hood.resolved(number)
    hood.say("外人", f"/评价 #{number} 1 垃圾", chat=STRANGERS)
    hood.expect("只有报事人和关注人可以评价")
    assert hood.order(number).state == "resolved"
    hood.say("张书记", f"/进度 #{number}", chat="私聊")  # the grid's dispatcher may look from anywhere
    hood.expect(f"#{number}", "状态")


def test_an_argument_with_a_stray_letter_keeps_the_answer_in_chinese(hood: Neighbourhood) -> None:
    hood.say("外人", "/撤销 #1 x")
    hood.expect("没有")  # #1 does not exist: said in Chinese


def test_a_private_matter_briefs_its_reporter_and_its_handler_by_direct_message(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 3栋门口的路灯不亮了，我家502门口黑乎乎的")  # filed as a public matter
    number = hood.order_count()
    hood.say("张书记", f"/修改 #{number} 事项=私事")
    told = [p for p in hood.heard if p.chat == "私聊:王阿姨"]
    assert told and "502" in told[0].text, "made private after filing: the reporter gets the details"
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    briefed = [p for p in hood.heard if p.chat == "私聊:刘师傅"]
    assert briefed and "502" in briefed[0].text, "the handler gets the words and the room"
    assert not any("502" in p.text for p in hood.heard if not p.chat.startswith("私聊"))
