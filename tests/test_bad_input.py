"""Bad input gets a short polite answer (or none where an answer would be noise); nothing is lost or doubled."""

from __future__ import annotations

from sqlmodel import select

from handlers.protocol import Incoming
from storage.models import Event, Order
from tests.neighbourhood import Neighbourhood


def test_unknown_command(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/开门")
    hood.expect("不认识的命令 /开门", "/帮助")
    hood.say("Bob", "/frobnicate")
    hood.expect("不认识的命令 /frobnicate")  # the community's language: Bob never chose English
    hood.say("Bob", "/lang en")
    hood.say("Bob", "/frobnicate")
    hood.expect("I don't know /frobnicate")


def test_missing_and_unknown_order_numbers(hood: Neighbourhood) -> None:
    hood.say("张书记", "/派单")
    hood.expect("用法：/派单 #12")
    hood.say("张书记", "/派单 #404 物业维修组")
    hood.expect("没有找到 #404 号工单")
    hood.say("王阿姨", "/评价 #999999999999 5")
    hood.expect("用法")


def test_empty_report(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事")
    hood.expect("请在 /报事 后面写上要反映的问题")
    assert hood.order_count() == 0


def test_empty_and_blank_messages_are_ignored(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "")
    hood.expect_silence()
    hood.say("王阿姨", "   \u200b\u200b  ")
    hood.expect_silence()


def test_chatter_files_nothing(hood: Neighbourhood) -> None:
    for line in ("早上好", "收到，谢谢社区", "【通知】本周六上午在活动室开展义诊", "哈哈哈😂"):
        hood.say("李姐", line)
        hood.expect_silence()
    assert hood.order_count() == 0


def test_assign_without_the_role(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.say("王阿姨", f"/派单 #{number} 物业维修组")
    hood.expect("只有书记或网格长可以派单")
    hood.press("李姐", "派单")
    hood.expect("只有书记或网格长可以派单")
    assert hood.heard[0].private_to, "a refused button press is answered privately"
    assert hood.order(number).state == "reported"


def test_rating_someone_elses_order(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.resolved(number)
    hood.say("赵先生", f"/评价 #{number} 5")
    hood.expect(f"#{number} 不是您报的事项，只有报事人和关注人可以评价。")


def test_rating_twice_and_out_of_range(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.resolved(number)
    hood.say("王阿姨", f"/评价 #{number} 7")
    hood.expect("请打 1 到 5 星")
    hood.say("王阿姨", f"/评价 #{number}")
    hood.expect("请打 1 到 5 星")
    hood.say("王阿姨", f"/评价 #{number} 5")
    hood.say("王阿姨", f"/评价 #{number} 4")
    hood.expect(f"您已经评价过 #{number} 了")


def test_done_without_a_photo(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    hood.say("刘师傅", f"/办结 #{number}")
    hood.expect(f"办结 #{number} 需要一张现场照片：请回复这条消息并附上照片。")
    hood.say("刘师傅", "好了", photos=("p.jpg",), reply_to=hood.heard[0])
    hood.expect(f"#{number} 已办结")
    assert hood.order(number).state == "resolved"


def test_done_by_someone_else(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.in_progress(number)
    hood.say("陈师傅", f"/办结 #{number}")
    hood.expect("不在您手上")


def test_a_huge_message_is_kept_whole(hood: Neighbourhood) -> None:
    text = "3栋电梯坏了。" + "很着急" * 6_665
    assert len(text) >= 20_000
    hood.say("王阿姨", "/报事 " + text)
    hood.expect("#1")
    order = hood.order(1)
    assert order.text == text
    assert len(order.title) <= 25


def test_emoji_zero_width_and_right_to_left_characters(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报\u200b事 3栋🚪门禁坏了\u202e😡")
    hood.expect("#1")
    assert hood.order(1).text == "3栋🚪门禁坏了😡"
    hood.say("张书记", "\u2067/派单 #1 @刘师傅\u2069")
    hood.expect("#1 已派给")


def test_the_same_message_delivered_twice_is_handled_once(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 3栋楼道灯坏了", message_id="dup-1")
    hood.expect("#1")
    hood.say("王阿姨", "/报事 3栋楼道灯坏了", message_id="dup-1")
    hood.expect_silence()
    with hood.db() as db:
        assert len(db.exec(select(Order)).all()) == 1
        assert len(db.exec(select(Event)).all()) == 1


def test_buttons_of_a_finished_order_or_garbage_do_no_harm(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.press("王阿姨", "撤销", hood.card(number))
    hood.heard = hood.chat.deliver_now(hood.core.handle(_press("刘师傅", f"acc:{hood.order(number).id}")))
    hood.expect(f"#{number} 现在不能接单")
    hood.heard = hood.chat.deliver_now(hood.core.handle(_press("王阿姨", "zz:abc")))
    hood.expect("这个按钮已失效")
    hood.heard = hood.chat.deliver_now(hood.core.handle(_press("王阿姨", "acc:999")))
    hood.expect("这个按钮已失效")
    assert hood.order(number).state == "cancelled"


def _press(who: str, data: str) -> Incoming:
    return Incoming(service="console", chat_id="阳光小区业主群", sender_id=who, sender_name=who, button=data)


def test_a_report_of_nothing_but_an_emoji_and_an_unknown_period(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 🙂")
    hood.expect("请在 /报事 后面写上要反映的问题")
    assert hood.order_count() == 0
    hood.say("张书记", "/统计 去年")
    hood.expect("没有“去年”这个统计周期")
