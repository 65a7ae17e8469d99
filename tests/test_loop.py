"""The closed loop in a group chat: 点单 → 派单 → 办单 → 评单, and every command on the way."""

from __future__ import annotations

from sqlmodel import select

from storage.models import Event, Follower, Photo, Points, Rating
from tests.neighbourhood import Neighbourhood


def test_a_whole_day_in_the_group(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "3栋2单元楼道灯又坏了 晚上黑漆漆的 老人下楼怕摔")
    hood.expect("已登记", "#1", "公共设施", "3栋2单元", "蓝")
    hood.say("李姐", "+1 我们4楼也不亮")
    hood.expect("已把李姐加为 #1 的关注人")
    hood.say("张书记", "/派单 #1 物业维修组")
    hood.expect("#1 已派给 物业维修组", "@刘师傅", "前办结")
    hood.press("刘师傅", "接单")
    hood.expect("#1 刘师傅已接单")
    hood.say("刘师傅", "换好了", photos=("light.jpg",), reply_to=hood.card(1))
    hood.expect("#1 已办结（附照片）", "@王阿姨", "@李姐", "请为这次服务打分")
    hood.press("王阿姨", "★5")
    hood.expect("谢谢评价！#1 已关闭。")
    hood.say("李姐", "/评价 #1 4")
    hood.expect("谢谢评价")
    assert hood.order(1).state == "closed"
    with hood.db() as db:
        actions = [e.action for e in db.exec(select(Event).order_by(Event.id))]
        assert actions == ["report", "follow", "assign", "accept", "done", "rate", "rate"]
        assert len(db.exec(select(Rating)).all()) == 2
        assert db.exec(select(Photo.purpose)).all() == ["completion"]


def test_the_card_is_edited_in_place_as_the_order_moves(hood: Neighbourhood) -> None:
    number = hood.report()
    card = hood.card(number)
    assert "待派单" in card.text
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    assert "已派单 → 物业维修组（刘师傅）" in card.text
    assert "时限" in card.text
    hood.say("刘师傅", f"/接单 #{number}")
    assert "处理中" in card.text and card.edits == 2
    assert [label for label, _ in card.buttons] == ["办结", "退单"]


def test_english_words_get_english_answers(hood: Neighbourhood) -> None:
    hood.say("Mr. Smith", "/report The lift in block 5 is stuck again")
    hood.expect("已登记", "#1")  # the card is the group's: in the group's language
    hood.say("Mr. Smith", "/rate #1 5 great")
    hood.expect("isn't finished yet")  # "great" is English: so is the answer
    hood.say("Mr. Smith", "/status #1")
    hood.expect("#1", "状态")  # nothing he wrote is English: the community's language
    hood.say("Mr. Smith", "/lang en")
    hood.say("Mr. Smith", "/help")
    hood.expect("Linli · how to use")
    hood.say("Mr. Smith", "/rate #1 5")
    hood.expect("isn't finished yet")


def test_a_latin_command_name_says_nothing_of_the_language(hood: Neighbourhood) -> None:
    """In Telegram every command is Latin: a Chinese resident's /help is answered in Chinese."""
    hood.say("王阿姨", "/help")
    hood.expect("邻里助手 · 用法")
    hood.say("王阿姨", "/foo")
    hood.expect("不认识的命令 /foo")
    hood.say("张书记", "/bind YG-A-3", chat="新建的3栋群")
    hood.expect("本群已绑定到")


def test_full_width_commands_work(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "／报事 5号楼门口的路灯不亮")
    hood.expect("已登记", "#1")
    hood.say("张书记", "／派单 ＃１ ＠刘师傅")
    hood.expect("#1 已派给")


def test_mentioning_the_bot_files_a_report(hood: Neighbourhood) -> None:
    hood.say("孙大爷", "@邻里助手 有点事")
    hood.expect("已登记", "#1")
    assert hood.order(1).text == "有点事"


def test_return_with_a_reason_and_reassign(hood: Neighbourhood) -> None:
    number = hood.report(text="7号楼门口垃圾堆了好几天")
    hood.say("张书记", f"/派单 #{number} 物业维修组")
    hood.say("陈师傅", f"/退单 #{number} 垃圾清运归网格管")
    hood.expect(f"#{number} 被陈师傅退回", "其他原因", "垃圾清运归网格管", "@张书记")
    assert hood.order(number).state == "reported"
    hood.say("张书记", f"/派单 #{number} @赵网格员")
    hood.expect("网格员队伍（赵网格员）")
    hood.press("赵网格员", "接单")
    hood.press("赵网格员", "退单", hood.card(number))
    hood.expect("退单原因是")
    hood.press("赵网格员", "需要上级协调")
    hood.expect("需要上级协调")
    assert hood.order(number).state == "assigned"


def test_dispatch_by_buttons_offers_the_suggested_team(hood: Neighbourhood) -> None:
    number = hood.report(text="3栋电梯坏了")
    hood.press("张书记", "派单")
    hood.expect(f"#{number} 派给哪个队伍？", "建议：物业维修组")
    hood.press("张书记", "物业维修组")
    hood.expect(f"#{number} 已派给 物业维修组")


def test_a_low_rating_reopens_the_order_and_tells_the_dispatcher(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.resolved(number)
    hood.press("王阿姨", "★2")
    hood.expect(f"#{number} 得到 2 星评价，已重新打开", "@张书记")
    assert hood.order(number).state == "reopened"
    hood.say("张书记", f"/派单 #{number} @陈师傅")
    hood.say("陈师傅", f"/接单 #{number}")
    hood.say("陈师傅", "这次彻底修好了", photos=("again.jpg",), reply_to=hood.card(number))
    hood.say("王阿姨", f"/评价 #{number} 5")
    hood.expect("谢谢评价")
    with hood.db() as db:
        assert sorted(r.rating_round for r in db.exec(select(Rating))) == [0, 1]


def test_a_volunteer_claims_and_earns_points(hood: Neighbourhood) -> None:
    number = hood.report("吴奶奶", "对门独居老人好几天没出门了，能不能去看看")
    hood.say("小李", f"/认领 #{number}")
    hood.expect(f"#{number} 已由小李认领")
    hood.say("小李", "去看过了，一切都好", photos=("visit.jpg",), reply_to=hood.card(number))
    hood.say("吴奶奶", f"/评价 #{number} 5")
    hood.say("小李", "/积分")
    hood.expect("积分榜", "1. 小李 10分 · 1单")
    with hood.db() as db:
        assert len(db.exec(select(Points)).all()) == 1


def test_merge_makes_the_reporter_a_follower(hood: Neighbourhood) -> None:
    first = hood.report("王阿姨", "3栋停水了")
    second = hood.report("李姐", "3栋怎么又没水了")
    hood.say("张书记", f"/合并 #{second} #{first}")
    hood.expect(f"#{second} 与 #{first} 是同一个问题")
    assert hood.order(second).state == "merged"
    with hood.db() as db:
        followers = db.exec(select(Follower.order_id)).all()
    assert followers == [hood.order(first).id]


def test_cancel_by_reporter_and_by_dispatcher(hood: Neighbourhood) -> None:
    mine = hood.report()
    hood.press("王阿姨", "撤销")
    hood.expect(f"#{mine} 已撤销")
    theirs = hood.report("李姐", "小区北门有人摆摊")
    hood.say("张书记", f"/撤销 #{theirs}")
    hood.expect("请写明原因")
    hood.say("张书记", f"/撤销 #{theirs} 重复报事")
    hood.expect(f"#{theirs} 已撤销")


def test_escalate_and_report_back(hood: Neighbourhood) -> None:
    number = hood.report(text="小区东边有人私搭违建")
    hood.say("张书记", f"/吹哨 #{number} 需要城管执法")
    hood.expect(f"#{number} 已吹哨上报至社区", "需要城管执法", "@周主任")
    assert hood.order(number).level == 1
    hood.say("周主任", f"/报到 #{number}")
    hood.expect(f"#{number} 周主任已报到")


def test_queries_status_mine_open_and_stats(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.say("王阿姨", f"/进度 #{number}")
    hood.expect(f"#{number}", "待派单")
    hood.say("王阿姨", "/我的")
    hood.expect("您的工单", f"#{number}")
    hood.say("张书记", "/待办")
    hood.expect("待办工单", f"#{number}")
    hood.resolved(number)
    hood.press("王阿姨", "★4")
    hood.say("张书记", "/统计 本周")
    hood.expect("本周", "新单 1", "响应率 100.0%", "解决率 100.0%", "满意率 100.0%", "物业维修组 1 单")


def test_binding_a_new_chat_to_a_grid(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/报事 门口路灯坏了", chat="新建的3栋群")
    hood.expect("已登记", "本群还没有绑定网格", "@张书记")
    hood.say("王阿姨", "/绑定 YG-A-3", chat="新建的3栋群")
    hood.expect("只有这个网格的书记或网格长可以绑定群")
    hood.say("张书记", "/绑定 YG-A-3", chat="新建的3栋群")
    hood.expect("本群已绑定到 阳光小区3栋")
    hood.say("王阿姨", "/报事 楼道里有辆自行车挡路", chat="新建的3栋群")
    hood.expect("#2")
    assert "本群还没有绑定网格" not in hood.answer()


def test_language_can_be_chosen(hood: Neighbourhood) -> None:
    hood.say("王阿姨", "/语言 en")
    hood.expect("I will answer you in English")
    hood.say("王阿姨", "/我的")
    hood.expect("You have no open orders")


def test_followers_hear_of_progress(hood: Neighbourhood) -> None:
    number = hood.report()
    hood.say("李姐", "+1", reply_to=hood.card(number))
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    hood.say("刘师傅", f"/接单 #{number}")
    hood.expect(f"#{number} 刘师傅已接单", "@王阿姨", "@李姐")


def test_overdue_means_the_same_in_the_list_and_the_rates(hood: Neighbourhood) -> None:
    """Ten minutes after dispatch the response deadline (5 minutes) has passed: late everywhere."""
    number = hood.report()
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    hood.clock.advance(minutes=10)
    hood.say("张书记", "/待办")
    hood.expect(f"#{number}", "⚠超时")
    hood.say("张书记", "/统计 今天")
    hood.expect("超时 1")
    hood.say("刘师傅", f"/接单 #{number}")  # late, but the response is now made; 30 minutes to resolve
    hood.say("张书记", "/待办")
    assert "⚠超时" not in hood.answer()
    hood.say("张书记", "/统计 今天")
    hood.expect("超时 0")
