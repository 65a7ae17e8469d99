"""Every text a user sees, in Chinese and English, in one place; and the order card.

The core hands over `Text(key, params)`; `render(text, lang)` turns it into words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.commands import SPECS
from handlers.protocol import Text
from handlers.stats import percent

Entry = str | Callable[[dict[str, Any], str], str]

NAMES: dict[str, dict[str, dict[str, str]]] = {
    "category": {
        "zh": {"utilities": "水电气暖", "facilities": "公共设施", "sanitation": "环境卫生", "noise": "噪音扰民",
               "parking": "停车交通", "safety": "治安消防", "dispute": "邻里纠纷", "property": "物业服务",
               "assistance": "帮扶关爱", "services": "政务服务", "construction": "违建占道", "other": "其他"},
        "en": {"utilities": "Utilities", "facilities": "Facilities", "sanitation": "Sanitation",
               "noise": "Noise", "parking": "Parking", "safety": "Safety", "dispute": "Dispute",
               "property": "Property service", "assistance": "Assistance", "services": "Public services",
               "construction": "Illegal building", "other": "Other"},
    },
    "urgency": {"zh": {"red": "红", "yellow": "黄", "blue": "蓝"},
                "en": {"red": "red", "yellow": "yellow", "blue": "blue"}},
    "marker": {"zh": {"red": "🔴", "yellow": "🟡", "blue": "🔵"}, "en": {"red": "🔴", "yellow": "🟡", "blue": "🔵"}},
    "matter": {"zh": {"major": "大事", "minor": "小事", "private": "私事"},
               "en": {"major": "major", "minor": "minor", "private": "private"}},
    "state": {
        "zh": {"reported": "待派单", "assigned": "已派单", "in_progress": "处理中", "resolved": "已办结待评价",
               "closed": "已关闭", "reopened": "已重新打开", "merged": "已合并", "cancelled": "已撤销"},
        "en": {"reported": "waiting for dispatch", "assigned": "assigned", "in_progress": "in progress",
               "resolved": "done, waiting for rating", "closed": "closed", "reopened": "reopened",
               "merged": "merged", "cancelled": "cancelled"},
    },
    "reason": {
        "zh": {"not_mine": "不归我们管", "need_info": "信息不全", "no_access": "进不了门", "too_big": "需要上级协调",
               "other": "其他原因", "undo": "报事人撤销"},
        "en": {"not_mine": "not ours", "need_info": "needs more information", "no_access": "no access",
               "too_big": "needs the level above", "other": "another reason", "undo": "taken back"},
    },
    "period": {"zh": {"today": "今天", "week": "本周", "month": "本月", "all": "全部"},
               "en": {"today": "today", "week": "this week", "month": "this month", "all": "all time"}},
    "level": {"zh": {"1": "社区", "2": "街道", "3": "区级部门"},
              "en": {"1": "the community", "2": "the sub-district", "3": "the district"}},
}


def name(kind: str, code: Any, lang: str) -> str:
    return NAMES[kind][lang].get(str(code), str(code)) if code is not None else ""




def _time_span(minutes: int, lang: str) -> str:
    """120 minutes and more as hours, two days and more as days: "2880 分钟" reads as a riddle."""
    if minutes >= 48 * 60:
        amount, zh, en = round(minutes / 1440, 1), "天", "days"
    elif minutes >= 120:
        amount, zh, en = round(minutes / 60, 1), "小时", "hours"
    else:
        return f"{minutes} 分钟" if lang == "zh" else f"{minutes} minutes"
    shown = f"{amount:g}"
    return f"{shown} {zh}" if lang == "zh" else f"{shown} {en}"


def _mentions(p: dict[str, Any]) -> str:
    return " ".join(f"@{n}" for n in p.get("names") or [])


# --- the order card ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Card:
    """An order card as structure: each transport formats it (a bold head, a colour); `text` is the plain form."""

    head: str  # "🔴 #1 楼道灯坏了 · 3栋": the line a transport sets apart
    fields: tuple[str, ...]  # 分类…, 状态…, 时限…, notes
    warning: str  # red, yellow or blue: late or urgent by nature, past half its time, on track
    banner: str | None = None  # "已登记" above a newly filed card

    def lines(self) -> list[tuple[str, bool]]:
        """Each line and whether it is the head."""
        return [*([(self.banner, False)] if self.banner else []), (self.head, True),
                *((line, False) for line in self.fields)]

    @property
    def text(self) -> str:
        return "\n".join(line for line, _ in self.lines())


def card_of(text: Text, lang: str) -> Card | None:
    """The card an action shows, or None when its text is no card."""
    if text.key not in ("card", "card.filed"):
        return None
    return _card_structure(text.params, lang, filed=text.key == "card.filed")


def _card_structure(p: dict[str, Any], lang: str, filed: bool = False) -> Card:
    zh = lang == "zh"
    place = p.get("place") or ""
    warning = p.get("warning") or p["urgency"]
    marker = name("marker", warning, lang)
    private = "私事，详情已私信报事人" if zh else "private matter, details sent to the reporter"
    title = private if p.get("private") else p["title"]
    head = f"{marker} #{p['number']} {title}" + (f" · {place}" if place else "")
    tags = " · ".join([name("category", p["category"], lang), name("urgency", p["urgency"], lang),
                       name("matter", p["matter"], lang)])
    who = _holder(p, lang)
    state = name("state", p["state"], lang) + (f" → {who}" if who else "")
    lines = [("分类：" if zh else "Type: ") + tags, ("状态：" if zh else "State: ") + state]
    deadlines = [
        (f"{p[key]} 前{zh_word}" if zh else f"{en_word} by {p[key]}")
        for key, zh_word, en_word in (("respond_due", "响应", "respond"), ("on_scene_due", "到场", "on the scene"),
                                      ("plan_due", "出方案", "plan"), ("resolve_due", "办结", "finish"))
        if p.get(key)
    ]
    if deadlines:
        late = ("（已超时）" if zh else " (overdue)") if p.get("overdue") else ""
        lines.append(("时限：" if zh else "Due: ") + " · ".join(deadlines) + late)
    if p.get("paused"):
        lines.append("⏸ 等待居民，时限暂停" if zh else "⏸ waiting on the resident; the clock is paused")
    if p.get("level"):
        lines.append(("已吹哨：" if zh else "Escalated to: ") + name("level", p["level"], lang))
    return Card(head, tuple(lines), warning, ("已登记" if zh else "Filed") if filed else None)


def _card(p: dict[str, Any], lang: str, filed: bool = False) -> str:
    return _card_structure(p, lang, filed).text


def _items(p: dict[str, Any], lang: str) -> str:
    rows = []
    for item in p.get("items") or []:
        late = (" ⚠超时" if lang == "zh" else " ⚠overdue") if item.get("overdue") else ""
        place = f" · {item['place']}" if item.get("place") else ""
        rows.append(f"{name('marker', item['urgency'], lang)} #{item['number']} {item['title']}{place}"
                    f" · {name('state', item['state'], lang)}{late}")
    return "\n".join(rows)


def _stats(p: dict[str, Any], lang: str) -> str:
    zh = lang == "zh"
    period = name("period", p["period"], lang)
    o = p.get("overall")
    if not o:
        return f"{period} {p['grid']}：还没有工单。" if zh else f"{p['grid']}, {period}: no orders yet."
    if zh:
        lines = [f"{period} {p['grid']}：新单 {o['reported']} · 已办结 {o['resolved']} · 超时 {o['overdue']}",
                 f"响应率 {percent(o['response_rate'])}  解决率 {percent(o['resolution_rate'])}  "
                 f"满意率 {percent(o['satisfaction_rate'])}"]
    else:
        lines = [f"{p['grid']}, {period}: new {o['reported']} · done {o['resolved']} · overdue {o['overdue']}",
                 f"response {percent(o['response_rate'])}  resolution {percent(o['resolution_rate'])}  "
                 f"satisfaction {percent(o['satisfaction_rate'])}"]
    for team in p.get("teams") or []:
        avg = team.get("avg_resolve_minutes")
        if zh:
            avg_text = f" · 平均办结 {avg:.0f} 分钟" if avg is not None else ""
            lines.append(f"{team['name']} {team['reported']} 单{avg_text} · 满意 {percent(team['satisfaction_rate'])}")
        else:
            avg_text = f" · avg {avg:.0f} min to finish" if avg is not None else ""
            lines.append(f"{team['name']} {team['reported']} orders{avg_text} · "
                         f"satisfied {percent(team['satisfaction_rate'])}")
    return "\n".join(lines)


def _points(p: dict[str, Any], lang: str) -> str:
    head = "积分榜：" if lang == "zh" else "Points ranking:"
    unit = ("分", "单") if lang == "zh" else (" pts", " orders")
    rows = [f"{i}. {n} {pts}{unit[0]} · {k}{unit[1]}" for i, (n, pts, k) in enumerate(p["items"], 1)]
    return "\n".join([head, *rows])


def _change(change: dict[str, Any], lang: str) -> str:
    field = change["field"]
    kinds = {"category": "category", "urgency": "urgency", "matter": "matter"}
    labels = {"zh": {"category": "分类", "urgency": "紧急程度", "matter": "事项", "building": "楼栋", "unit": "单元",
                     "room": "房号"},
              "en": {"category": "category", "urgency": "urgency", "matter": "matter", "building": "building",
                     "unit": "unit", "room": "room"}}[lang]
    show = (lambda v: name(kinds[field], v, lang)) if field in kinds else (lambda v: v or "—")
    return f"{labels[field]} {show(change['from'])} → {show(change['to'])}"


def _holder(p: dict[str, Any], lang: str) -> str:
    """物业维修组（刘师傅）: the team and, where one is named, the person."""
    team, person = p.get("team"), p.get("assignee")
    if team and person:
        return f"{team}（{person}）" if lang == "zh" else f"{team} ({person})"
    return team or person or ""


def _late_list(items: list[dict[str, Any]], lang: str) -> str:
    return " ".join(f"{name('marker', i.get('warning', 'red'), lang)}#{i['number']}" for i in items)


def _daily(p: dict[str, Any], lang: str) -> str:
    if lang == "zh":
        text = (f"📋 {p['grid']} 每日简报：昨日新单 {p['new']} · 昨日办结 {p['finished']} · "
                f"待办 {p['open']} · 超时 {p['overdue']}")
        return text + (f"\n超时：{_late_list(p['late'], lang)}" if p.get("late") else "")
    text = (f"📋 {p['grid']} daily: new yesterday {p['new']} · finished yesterday {p['finished']} · "
            f"open {p['open']} · overdue {p['overdue']}")
    return text + (f"\nOverdue: {_late_list(p['late'], lang)}" if p.get("late") else "")


def _daily_all(p: dict[str, Any], lang: str) -> str:
    return "\n".join(_daily(row, lang) for row in p["rows"])


def _weekly(p: dict[str, Any], lang: str) -> str:
    zh = lang == "zh"
    lines = [f"🏆 {p['grid']} 本周三率排名" if zh else f"🏆 {p['grid']}: this week's ranking"]
    for title, rows in (("队伍" if zh else "Teams", p["teams"]), ("网格" if zh else "Grids", p["grids"])):
        if not rows:
            continue
        lines.append(f"{title}：" if zh else f"{title}:")
        for i, r in enumerate(rows, 1):
            lines.append(f"{i}. {r['name']} {r['reported']}{'单' if zh else ' orders'} · "
                         f"{'响应' if zh else 'resp.'} {percent(r['response_rate'])} · "
                         f"{'解决' if zh else 'resol.'} {percent(r['resolution_rate'])} · "
                         f"{'满意' if zh else 'satisf.'} {percent(r['satisfaction_rate'])}")
    return "\n".join(lines)


def _catch_up(p: dict[str, Any], lang: str) -> str:
    head = "⏰ 离线期间的提醒汇总：" if lang == "zh" else "⏰ While I was away these fell due:"
    rows = [f"{name('marker', i['warning'], lang)} #{i['number']} {i['title']}"
            + ((" ⚠超时" if lang == "zh" else " ⚠overdue") if i.get("overdue") else "") for i in p["items"]]
    return "\n".join([head, *rows, _mentions(p)]).rstrip()


def _reason(p: dict[str, Any], lang: str) -> str:
    text = name("reason", p.get("reason"), lang)
    return f"{text}：{p['note']}" if p.get("note") and lang == "zh" else (
        f"{text}: {p['note']}" if p.get("note") else text)


def _help(lang: str) -> str:
    """The command list, made from the one command spec (handlers/commands.py)."""
    zh = lang == "zh"
    lines = ["邻里助手 · 用法" if zh else "Linli · how to use"]
    lines += [f"{spec.usage_zh} — {spec.help_zh}" if zh else f"{spec.usage_en} — {spec.help_en}" for spec in SPECS]
    return "\n".join(lines)


CATALOGUE: dict[str, dict[str, Entry]] = {
    "zh": {
        "card": lambda p, lang: _card(p, lang),
        "card.filed": lambda p, lang: _card(p, lang, filed=True),
        "btn.assign": "派单", "btn.claim": "认领", "btn.cancel": "撤销", "btn.accept": "接单",
        "btn.return": "退单", "btn.done": "办结", "btn.star": "★{score}", "btn.yes": "要登记",
        "btn.no": "不用", "btn.team": "{name}", "btn.follow": "我也是", "btn.status": "查看",
        "reason.not_mine": "不归我们管", "reason.need_info": "信息不全", "reason.no_access": "进不了门",
        "reason.too_big": "需要上级协调", "reason.other": "其他原因",
        "report.empty": "请在 /报事 后面写上要反映的问题，例如：/报事 3栋2单元楼道灯坏了",
        "alert.red": lambda p, lang: f"🔴 紧急！#{p['number']} {name('category', p['category'], lang)}，"
                                      f"请立即处理 {_mentions(p)}".rstrip(),
        "chat.unbound": lambda p, lang: "本群还没有绑定网格，工单暂记在“未分组”。"
                                         f"请管理员发送 /绑定 网格编码 {_mentions(p)}".rstrip(),
        "prompt.file": "这条要登记为工单吗？",
        "prompt.gone": "这个问题已经处理过了。",
        "prompt.not_yours": "这是问发消息的人的，谢谢。",
        "prompt.dropped": "好的，不登记。",
        "follow.added": "已把{name}加为 #{number} 的关注人，进展会通知您。",
        "dup.ask": "#{number} 是不是和 #{same}（{title}）同一个问题？",
        "visit.ask": "回访：您反映的 #{number}（{title}）处理后还好吗？",
        "btn.visit_ok": "很好", "btn.visit_bad": "问题还在",
        "visit.thanks": "谢谢回复！",
        "visit.noted": "已转告书记，会尽快再处理 #{number}。",
        "visit.failed": lambda p, lang: f"#{p['number']} 回访：报事人反映问题还在，请重新处理。"
                                         f" {_mentions(p)}".rstrip(),
        "done.private": "#{number} 已办结，评价邀请已私信报事人。",
        "done.rate_direct": "您反映的 #{number} 已办结（附照片），请为这次服务打分：",
        "visit.not_yours": "这是问报事人的，谢谢。",
        "correct.done": lambda p, lang: f"已更正 #{p['number']}：" + "，".join(_change(c, lang) for c in p["changes"]),
        "usage.correct": "用法：/修改 #12 类别=公共设施 紧急=红 事项=小事 位置=3栋2单元（写其中几项即可）",
        "refuse.correct.role": "只有书记或网格长可以修改工单的分类。",
        "refuse.correct.state": "#{number} 已经结束，不能修改。",
        "refuse.correct.nothing": "请写明要改成什么。",
        "dup.kept": "好的，#{number} 单独处理。",
        "btn.dup_yes": "是，并入 #{number}",
        "btn.dup_no": "不是",
        "refuse.follow.already": "您已经在关注 #{number} 了。",
        "assign.done": lambda p, lang: f"#{p['number']} 已派给 {_holder(p, lang)}，请在 {p.get('respond_due')} 前接单，"
                                        f"{p.get('resolve_due')} 前办结。 {_mentions(p)}".rstrip(),
        "assign.pick": lambda p, lang: f"#{p['number']} 派给哪个队伍？"
                                        + (f"（建议：{p['suggested']}）" if p.get("suggested") else ""),
        "assign.unknown_target": "找不到“{target}”：请 @ 一位处理人，或写队伍名称。",
        "assign.no_teams": "还没有配置处理队伍，请在 linli.toml 里添加 [[teams]]。",
        "accept.done": lambda p, lang: f"#{p['number']} {p['name']}已接单，正在处理。 {_mentions(p)}".rstrip(),
        "claim.done": lambda p, lang: f"#{p['number']} 已由{p['name']}认领，请在 {p['resolve_due']} 前办结。"
                                       f" {_mentions(p)}".rstrip(),
        "return.pick": "#{number} 退单原因是？",
        "return.done": lambda p, lang: f"#{p['number']} 被{p['name']}退回（{_reason(p, lang)}），"
                                        f"请重新派单。 {_mentions(p)}".rstrip(),
        "done.rate": lambda p, lang: f"#{p['number']} 已办结（附照片）。{_mentions(p)} 请为这次服务打分：",
        "rate.thanks": "谢谢评价！#{number} 已关闭。",
        "rate.reopened": lambda p, lang: f"#{p['number']} 得到 {p['score']} 星评价，已重新打开，"
                                          f"请重新派单。 {_mentions(p)}".rstrip(),
        "cancel.done": "#{number} 已撤销。",
        "merge.done": "#{number} 与 #{into} 是同一个问题，已合并，报事人会收到 #{into} 的进展。",
        "escalate.done": lambda p, lang: f"📣 #{p['number']} 已吹哨上报至{name('level', p['level'], lang)}"
                                          + (f"（{p['reason']}）" if p.get("reason") else "")
                                          + f"，请报到。 {_mentions(p)}".rstrip(),
        "report_back.done": "#{number} {name}已报到。",
        "bind.done": "本群已绑定到 {grid}（{code}），以后的报事都记在这里。",
        "bind.usage": "用法：/绑定 网格编码，例如 /绑定 YG-A",
        "bind.unknown": "没有编码为 {code} 的网格，请检查 linli.toml。",
        "bind.direct": "请在要绑定的群里发送 /绑定。",
        "bind.requested": "已请 {grid} 的书记、网格长或督办确认绑定，确认后本群的报事就记在那里。",
        "bind.nobody": "{grid} 还没有书记、网格长或督办可以确认绑定。请社区负责人先用 linli owner-code 生成认证码，"
                       "私聊发给我成为督办。",
        "bind.request": "{name} 请求把群「{chat}」绑定到 {grid}（{code}）。批准后该群的报事都记在 {grid}。",
        "bind.approved": "已批准：群已绑定到 {grid}。",
        "bind.declined": "已拒绝绑定到 {grid}。",
        "btn.approve": "批准",
        "usage.stats": "没有“{word}”这个统计周期：请用 /统计 今天、本周、本月 或 全部。",
        "status.elsewhere": "#{number} 不是本群的工单。",
        "refuse.follow.chat": "#{number} 不是本群的工单：请在报事的群里关注它。",
        "report.amended": "已补充到 #{number}。",
        "emergency.possible": lambda p, lang: f"⚠ 可能的紧急情况：这条消息提到了危险。{_mentions(p)} 请确认，"
                                              "需要的话一键登记为紧急工单。".replace("。 请", "。请"),
        "emergency.not_yours": "只有书记、网格长和发消息的人可以确认。",
        "emergency.dismissed": "好的，不登记。",
        "btn.sos_yes": "🔴 登记为紧急工单",
        "btn.sos_no": "不是紧急情况",
        "owner.direct_only": "认证码请私聊发给我，不要发在群里。",
        "owner.bad": "认证码不对或已过期。请让运行邻里助手的人用 linli owner-code 生成新的认证码。",
        "owner.done": "认证成功：您现在是 {community} 的督办，可以派单、批准绑定群，并查看所有网格。",
        "btn.decline": "拒绝",
        "refuse.bind.role": "只有这个网格的书记或网格长可以绑定群。",
        "mine.list": lambda p, lang: "您的工单：\n" + _items(p, lang),
        "mine.none": "您现在没有进行中的工单。",
        "open.list": lambda p, lang: f"{p['grid']} 待办工单：\n" + _items(p, lang),
        "open.none": "{grid} 现在没有待办工单。",
        "stats.summary": _stats,
        "points.list": _points,
        "points.none": "还没有人获得积分。",
        "lang.done": "好的，以后用中文回复您。",
        "lang.usage": "用法：/语言 zh 或 /语言 en",
        "help": lambda p, lang: _help("zh"),
        "direct.hint": "请在小区群里反映问题，我会登记成工单。发送 /帮助 查看用法。",
        "unknown_command": "不认识的命令 /{name}，发送 /帮助 查看用法。",
        "order.unknown": "没有找到 #{number} 号工单。",
        "button.stale": "这个按钮已失效。",
        "error.internal": "抱歉，刚才出了点问题，这条消息没有处理成功，请稍后再发一次。",
        "usage.assign": "用法：/派单 #12 @处理人 或 /派单 #12 队伍名称",
        "usage.accept": "用法：/接单 #12",
        "usage.return": "用法：/退单 #12 原因",
        "usage.claim": "用法：/认领 #12",
        "usage.done": "用法：回复工单并附上照片，或 /办结 #12 附照片",
        "usage.rate": "用法：/评价 #12 5（1 到 5 星）",
        "usage.status": "用法：/进度 #12",
        "usage.cancel": "用法：/撤销 #12 原因",
        "usage.merge": "用法：/合并 #13 #12（把 #13 并入 #12）",
        "usage.escalate": "用法：/吹哨 #12 原因",
        "usage.report_back": "用法：/报到 #12",
        "usage.follow": "用法：/关注 #12",
        "refuse.assign.role": "只有书记或网格长可以派单。",
        "refuse.assign.state": "#{number} 现在不能派单。",
        "refuse.assign.target": "请写明派给谁。",
        "refuse.accept.role": "#{number} 没有派给您，不能接单。",
        "refuse.accept.state": "#{number} 现在不能接单。",
        "refuse.return.role": "#{number} 不在您手上，不能退单。",
        "refuse.return.state": "#{number} 现在不能退单。",
        "refuse.return.reason": "退单请写明原因。",
        "refuse.claim.role": "只有志愿者和处理人员可以认领工单。",
        "refuse.claim.state": "#{number} 已经有人处理了。",
        "refuse.done.role": "#{number} 不在您手上，不能办结。",
        "refuse.done.state": "#{number} 现在不能办结。",
        "refuse.done.photo": "办结 #{number} 需要一张现场照片：请回复这条消息并附上照片。",
        "refuse.rate.role": "#{number} 不是您报的事项，只有报事人和关注人可以评价。",
        "refuse.rate.state": "#{number} 还没有办结，办结后再评价。",
        "refuse.rate.score": "请打 1 到 5 星，例如 /评价 #{number} 5",
        "refuse.rate.twice": "您已经评价过 #{number} 了，谢谢！",
        "refuse.rate.worker": "#{number} 是您经手的工单，不能自己评价；请报事人和关注人来评。",
        "refuse.merge.role": "只有书记或网格长可以合并工单。",
        "refuse.merge.state": "#{number} 已经结束，不能合并。",
        "refuse.merge.target": "不能合并到这个工单。",
        "refuse.cancel.role": "只有报事人或书记、网格长可以撤销 #{number}。",
        "refuse.cancel.state": "#{number} 已经结束，不能撤销。",
        "refuse.cancel.started": "#{number} 已经在处理中，请联系书记或网格长撤销。",
        "refuse.cancel.reason": "撤销别人报的工单请写明原因：/撤销 #{number} 原因",
        "refuse.escalate.role": "只有书记或网格长可以吹哨。",
        "refuse.escalate.state": "#{number} 已经结束，不能吹哨。",
        "refuse.escalate.top": "#{number} 已经上报到最高一级了。",
        "refuse.report_back.role": "只有被吹哨的一级可以报到。",
        "refuse.report_back.state": "#{number} 已经结束。",
        "refuse.report_back.none": "#{number} 没有吹哨，不需要报到。",
        "refuse.follow.role": "不能关注 #{number}。",
        "refuse.follow.state": "#{number} 已经结束。",
        "escalate.auto": lambda p, lang: f"📣 #{p['number']} {_milestone(p, lang)}超时未完成，已自动吹哨上报至"
                                          f"{name('level', p['level'], lang)}，请在 {p.get('report_back_due')} 前报到。"
                                          f" {_mentions(p)}".rstrip(),
        "remind.report_back": lambda p, lang: f"{_mentions(p)} #{p['number']} 已吹哨，请尽快报到"
                                               f"（/报到 #{p['number']}）。".lstrip(),
        "remind.catch_up": _catch_up,
        "digest.daily": _daily,
        "digest.daily_all": _daily_all,
        "digest.weekly": _weekly,
        "calendar.running_out": "📅 节假日日历只到 {until}：{next_year} 年的节假日和调休上班日还不知道，"
                                "之后按周一到周五计算工作日。国务院办公厅公布安排后，"
                                "请在 linli.toml 的 [calendar] 中写入，例如 "
                                "holidays = [{next_year}-01-01] 和 workdays = [...]，或升级 chinesecalendar。",
        "arrive.done": "#{number} {name}已到场。",
        "plan.done": lambda p, lang: f"#{p['number']} 处理方案：{p['plan']} {_mentions(p)}".rstrip(),
        "wait.done": lambda p, lang: f"#{p['number']} 等待居民：{p['reason']}。时限暂停，"
                                      f"回复 /继续 #{p['number']} 恢复。 {_mentions(p)}".rstrip(),
        "resume.done": "#{number} 继续处理，时限恢复。",
        "refuse.arrive.role": "#{number} 不在您手上。",
        "refuse.arrive.state": "#{number} 现在不在处理中。",
        "refuse.arrive.already": "#{number} 已经登记到场了。",
        "refuse.plan.role": "只有处理人或书记可以提交方案。",
        "refuse.plan.state": "#{number} 现在不能提交方案。",
        "refuse.plan.text": "请写上方案内容：/方案 #{number} 内容",
        "refuse.wait.role": "#{number} 不在您手上。",
        "refuse.wait.state": "#{number} 现在不在处理中。",
        "refuse.wait.already": "#{number} 已经在等待中。",
        "refuse.wait.reason": "请写明在等什么：/等待 #{number} 原因",
        "refuse.resume.role": "您不能恢复 #{number}。",
        "refuse.resume.state": "#{number} 现在不在处理中。",
        "refuse.resume.not_waiting": "#{number} 没有在等待。",
        "usage.arrive": "用法：/到场 #12",
        "usage.plan": "用法：/方案 #12 内容",
        "usage.wait": "用法：/等待 #12 原因",
        "usage.resume": "用法：/继续 #12",
        "remind.before": lambda p, lang: f"{_mentions(p)} #{p['number']} 距{_milestone(p, lang)}时限还有 "
                                          f"{_time_span(p['minutes'], lang)}。".lstrip(),
        "remind.due": lambda p, lang: f"{_mentions(p)} #{p['number']} 已到{_milestone(p, lang)}时限，"
                                       f"请尽快处理。".lstrip(),
        "remind.overdue": lambda p, lang: f"⚠ #{p['number']} 已超过{_milestone(p, lang)}时限 "
                                           f"{_time_span(p['minutes'], lang)}，"
                                           f"请跟进。 {_mentions(p)}".rstrip(),
    },
    "en": {
        "card": lambda p, lang: _card(p, lang),
        "card.filed": lambda p, lang: _card(p, lang, filed=True),
        "btn.assign": "Assign", "btn.claim": "Claim", "btn.cancel": "Undo", "btn.accept": "Accept",
        "btn.return": "Return", "btn.done": "Done", "btn.star": "★{score}", "btn.yes": "File it",
        "btn.no": "No", "btn.team": "{name}", "btn.follow": "Me too", "btn.status": "View",
        "reason.not_mine": "Not ours", "reason.need_info": "Needs more information", "reason.no_access": "No access",
        "reason.too_big": "Needs the level above", "reason.other": "Another reason",
        "report.empty": "Please write the problem after /report, e.g. /report corridor light broken in block 3",
        "alert.red": lambda p, lang: f"🔴 Urgent! #{p['number']} {name('category', p['category'], lang)}: "
                                      f"please act now {_mentions(p)}".rstrip(),
        "chat.unbound": lambda p, lang: "This chat is not bound to a grid yet; orders go to 'unsorted'. "
                                         f"An admin please send /bind GRID-CODE {_mentions(p)}".rstrip(),
        "prompt.file": "Shall I file this as an order?",
        "prompt.gone": "That question has been answered already.",
        "prompt.not_yours": "That question is for the sender, thanks.",
        "prompt.dropped": "OK, not filed.",
        "follow.added": "{name} now follows #{number} and will hear about progress.",
        "dup.ask": "Is #{number} the same problem as #{same} ({title})?",
        "visit.ask": "Follow-up: is everything still fine after #{number} ({title})?",
        "btn.visit_ok": "All good", "btn.visit_bad": "Still a problem",
        "visit.thanks": "Thanks for telling us!",
        "visit.noted": "The secretary has been told and will see to #{number} again.",
        "visit.failed": lambda p, lang: f"#{p['number']} follow-up: the reporter says the problem is back; "
                                         f"please see to it. {_mentions(p)}".rstrip(),
        "visit.not_yours": "That question is for the reporter, thanks.",
        "done.private": "#{number} is done; the reporter has been asked to rate it by direct message.",
        "done.rate_direct": "#{number}, which you reported, is done (photo attached). Please rate the service:",
        "correct.done": lambda p, lang: f"#{p['number']} corrected: "
                                         + ", ".join(_change(c, lang) for c in p["changes"]),
        "usage.correct": "Usage: /correct #12 category=facilities urgency=red matter=minor place=3栋2单元 "
                         "(any of them)",
        "refuse.correct.role": "Only a secretary or grid leader may correct an order.",
        "refuse.correct.state": "#{number} is finished and can't be corrected.",
        "refuse.correct.nothing": "Please say what it should be.",
        "dup.kept": "OK, #{number} stays on its own.",
        "btn.dup_yes": "Yes, merge into #{number}",
        "btn.dup_no": "No",
        "refuse.follow.already": "You already follow #{number}.",
        "assign.done": lambda p, lang: f"#{p['number']} assigned to {_holder(p, lang)}: "
                                        f"please accept by {p.get('respond_due')} and finish by "
                                        f"{p.get('resolve_due')}. {_mentions(p)}".rstrip(),
        "assign.pick": lambda p, lang: f"Which team takes #{p['number']}?"
                                        + (f" (suggested: {p['suggested']})" if p.get("suggested") else ""),
        "assign.unknown_target": "I can't find '{target}': @-mention a handler or write a team's name.",
        "assign.no_teams": "No teams are configured yet: add [[teams]] to linli.toml.",
        "accept.done": lambda p, lang: f"#{p['number']} accepted by {p['name']}, work in progress. "
                                        f"{_mentions(p)}".rstrip(),
        "claim.done": lambda p, lang: f"#{p['number']} claimed by {p['name']}; please finish by {p['resolve_due']}. "
                                       f"{_mentions(p)}".rstrip(),
        "return.pick": "Why are you returning #{number}?",
        "return.done": lambda p, lang: f"#{p['number']} returned by {p['name']} ({_reason(p, lang)}): "
                                        f"please dispatch again. {_mentions(p)}".rstrip(),
        "done.rate": lambda p, lang: f"#{p['number']} is done (photo attached). {_mentions(p)} "
                                      "please rate the service:",
        "rate.thanks": "Thanks for rating! #{number} is closed.",
        "rate.reopened": lambda p, lang: f"#{p['number']} was rated {p['score']} stars and is reopened: "
                                          f"please dispatch again. {_mentions(p)}".rstrip(),
        "cancel.done": "#{number} cancelled.",
        "merge.done": "#{number} is the same problem as #{into} and was merged; its reporter follows #{into}.",
        "escalate.done": lambda p, lang: f"📣 #{p['number']} escalated to {name('level', p['level'], lang)}"
                                          + (f" ({p['reason']})" if p.get("reason") else "")
                                          + f": please report in. {_mentions(p)}".rstrip(),
        "report_back.done": "#{number}: {name} reported in.",
        "bind.done": "This chat is now bound to {grid} ({code}); its reports land there.",
        "bind.usage": "Usage: /bind GRID-CODE, e.g. /bind YG-A",
        "bind.unknown": "There is no grid with code {code}: check linli.toml.",
        "bind.direct": "Send /bind in the group you want to bind.",
        "bind.requested": "I asked the secretaries, grid leaders and supervisors of {grid} to approve; once they "
                          "do, this chat's reports land there.",
        "bind.nobody": "Nobody can approve a binding to {grid} yet. The community's lead should first make an "
                       "owner code with linli owner-code and send it to me by direct message.",
        "bind.request": "{name} asks to bind the chat \"{chat}\" to {grid} ({code}). Once approved, its reports "
                        "land in {grid}.",
        "bind.approved": "Approved: the chat is now bound to {grid}.",
        "bind.declined": "Binding to {grid} declined.",
        "btn.approve": "Approve",
        "usage.stats": "\"{word}\" is no period: use /stats today, week, month or all.",
        "status.elsewhere": "#{number} is not an order of this chat.",
        "refuse.follow.chat": "#{number} is not an order of this chat: follow it in the chat it was reported in.",
        "report.amended": "Added to #{number}.",
        "emergency.possible": lambda p, lang: f"⚠ Possible emergency: this message mentions danger. {_mentions(p)} "
                                              "please check; one tap files it as an urgent order.",
        "emergency.not_yours": "Only the secretaries, grid leaders and the sender can answer this.",
        "emergency.dismissed": "OK, not filed.",
        "btn.sos_yes": "🔴 File as urgent",
        "btn.sos_no": "Not an emergency",
        "owner.direct_only": "Send the owner code to me by direct message, not in a group.",
        "owner.bad": "That owner code is wrong or has expired. Ask whoever runs Linli for a new one "
                     "(linli owner-code).",
        "owner.done": "Done: you are now a supervisor of {community}: you may dispatch, approve chat bindings and "
                      "see every grid.",
        "btn.decline": "Decline",
        "refuse.bind.role": "Only the grid's secretary or grid leader may bind a chat.",
        "mine.list": lambda p, lang: "Your orders:\n" + _items(p, lang),
        "mine.none": "You have no open orders.",
        "open.list": lambda p, lang: f"Open orders in {p['grid']}:\n" + _items(p, lang),
        "open.none": "No open orders in {grid}.",
        "stats.summary": _stats,
        "points.list": _points,
        "points.none": "Nobody has earned points yet.",
        "lang.done": "OK, I will answer you in English.",
        "lang.usage": "Usage: /lang en or /lang zh",
        "help": lambda p, lang: _help("en"),
        "direct.hint": "Please report problems in your estate's group and I will file them. Send /help for more.",
        "unknown_command": "I don't know /{name}. Send /help to see what I can do.",
        "order.unknown": "There is no order #{number}.",
        "button.stale": "This button no longer works.",
        "error.internal": "Sorry, something went wrong and this message was not handled; please send it again shortly.",
        "usage.assign": "Usage: /assign #12 @handler or /assign #12 team name",
        "usage.accept": "Usage: /accept #12",
        "usage.return": "Usage: /return #12 reason",
        "usage.claim": "Usage: /claim #12",
        "usage.done": "Usage: reply to the order with a photo, or /done #12 with a photo",
        "usage.rate": "Usage: /rate #12 5 (1 to 5 stars)",
        "usage.status": "Usage: /status #12",
        "usage.cancel": "Usage: /cancel #12 reason",
        "usage.merge": "Usage: /merge #13 #12 (merge #13 into #12)",
        "usage.escalate": "Usage: /escalate #12 reason",
        "usage.report_back": "Usage: /ack #12",
        "usage.follow": "Usage: /follow #12",
        "refuse.assign.role": "Only a secretary or grid leader may dispatch orders.",
        "refuse.assign.state": "#{number} can't be assigned now.",
        "refuse.assign.target": "Please say who should take it.",
        "refuse.accept.role": "#{number} is not assigned to you.",
        "refuse.accept.state": "#{number} can't be accepted now.",
        "refuse.return.role": "#{number} is not yours to return.",
        "refuse.return.state": "#{number} can't be returned now.",
        "refuse.return.reason": "Please give a reason for returning it.",
        "refuse.claim.role": "Only volunteers and handlers may claim orders.",
        "refuse.claim.state": "Someone is already working on #{number}.",
        "refuse.done.role": "#{number} is not yours to finish.",
        "refuse.done.state": "#{number} can't be finished now.",
        "refuse.done.photo": "Finishing #{number} needs a photo of the work: reply to this message with one.",
        "refuse.rate.role": "You didn't report #{number}; only its reporter and followers may rate it.",
        "refuse.rate.state": "#{number} isn't finished yet; rate it when it is.",
        "refuse.rate.score": "Please give 1 to 5 stars, e.g. /rate #{number} 5",
        "refuse.rate.twice": "You have rated #{number} already, thank you!",
        "refuse.rate.worker": "You worked on #{number}, so you can't rate it; the reporter and followers do.",
        "refuse.merge.role": "Only a secretary or grid leader may merge orders.",
        "refuse.merge.state": "#{number} is finished and can't be merged.",
        "refuse.merge.target": "It can't be merged into that order.",
        "refuse.cancel.role": "Only the reporter or a secretary may cancel #{number}.",
        "refuse.cancel.state": "#{number} is already finished.",
        "refuse.cancel.started": "Work on #{number} has started: ask the secretary to cancel it.",
        "refuse.cancel.reason": "Please give a reason: /cancel #{number} reason",
        "refuse.escalate.role": "Only a secretary or grid leader may escalate.",
        "refuse.escalate.state": "#{number} is already finished.",
        "refuse.escalate.top": "#{number} is already at the top level.",
        "refuse.report_back.role": "Only the level it was escalated to may report in.",
        "refuse.report_back.state": "#{number} is already finished.",
        "refuse.report_back.none": "#{number} was not escalated.",
        "refuse.follow.role": "You can't follow #{number}.",
        "refuse.follow.state": "#{number} is already finished.",
        "escalate.auto": lambda p, lang: f"📣 #{p['number']} missed its {_milestone(p, lang)} deadline and was "
                                          f"escalated to {name('level', p['level'], lang)}: please report in by "
                                          f"{p.get('report_back_due')}. {_mentions(p)}".rstrip(),
        "remind.report_back": lambda p, lang: f"{_mentions(p)} #{p['number']} was escalated: please report in "
                                               f"(/ack #{p['number']}).".lstrip(),
        "remind.catch_up": _catch_up,
        "digest.daily": _daily,
        "digest.daily_all": _daily_all,
        "digest.weekly": _weekly,
        "calendar.running_out": "📅 The holiday calendar ends on {until}: {next_year}'s public holidays and "
                                "调休 working days are not known yet, so working days will then be counted "
                                "Monday to Friday. Once the State Council publishes them, add them to linli.toml "
                                "under [calendar], e.g. holidays = [{next_year}-01-01] and workdays = [...], or "
                                "upgrade chinesecalendar.",
        "arrive.done": "#{number}: {name} is on the scene.",
        "plan.done": lambda p, lang: f"#{p['number']} plan: {p['plan']} {_mentions(p)}".rstrip(),
        "wait.done": lambda p, lang: f"#{p['number']} is waiting on the resident: {p['reason']}. The clock is "
                                      f"paused; /resume #{p['number']} to go on. {_mentions(p)}".rstrip(),
        "resume.done": "#{number}: work goes on, the clock runs again.",
        "refuse.arrive.role": "#{number} is not yours.",
        "refuse.arrive.state": "#{number} is not in progress.",
        "refuse.arrive.already": "Arrival at #{number} is already recorded.",
        "refuse.plan.role": "Only the handler or a secretary may post a plan.",
        "refuse.plan.state": "#{number} can't take a plan now.",
        "refuse.plan.text": "Please write the plan: /plan #{number} text",
        "refuse.wait.role": "#{number} is not yours.",
        "refuse.wait.state": "#{number} is not in progress.",
        "refuse.wait.already": "#{number} is already waiting.",
        "refuse.wait.reason": "Please say what you are waiting for: /wait #{number} reason",
        "refuse.resume.role": "You can't resume #{number}.",
        "refuse.resume.state": "#{number} is not in progress.",
        "refuse.resume.not_waiting": "#{number} is not waiting.",
        "usage.arrive": "Usage: /arrive #12",
        "usage.plan": "Usage: /plan #12 text",
        "usage.wait": "Usage: /wait #12 reason",
        "usage.resume": "Usage: /resume #12",
        "remind.before": lambda p, lang: f"{_mentions(p)} #{p['number']}: {_time_span(p['minutes'], lang)} left to "
                                          f"{_milestone(p, lang)}.".lstrip(),
        "remind.due": lambda p, lang: f"{_mentions(p)} #{p['number']}: the {_milestone(p, lang)} deadline "
                                       "is now.".lstrip(),
        "remind.overdue": lambda p, lang: f"⚠ #{p['number']} is {_time_span(p['minutes'], lang)} past its "
                                           f"{_milestone(p, lang)} deadline: please follow up. "
                                           f"{_mentions(p)}".rstrip(),
    },
}


def _milestone(p: dict[str, Any], lang: str) -> str:
    labels = {"zh": {"response": "响应", "on_scene": "到场", "plan": "方案", "resolution": "办结",
                     "report_back": "报到"},
              "en": {"response": "respond", "on_scene": "be on the scene", "plan": "plan", "resolution": "finish",
                     "report_back": "report in"}}
    return labels[lang].get(p.get("milestone", ""), "")


def render(text: Text, lang: str = "zh") -> str:
    catalogue = CATALOGUE.get(lang, CATALOGUE["zh"])
    entry = catalogue.get(text.key) or CATALOGUE["zh"].get(text.key)
    if entry is None:
        return text.key
    if callable(entry):
        return entry(text.params, lang)
    return entry.format(**text.params)


# Texts only a transport says (joining a chat, encrypted rooms, privacy mode, reaction hints, the
# fallback for a direct message nobody can receive yet), with `say(key, lang, **params)`.
TRANSPORT_TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "joined": "大家好，我是邻里助手：在群里说出要反映的问题，我会登记成工单。发送 /帮助 查看用法；书记或网格长"
                  "请发送 /绑定 网格编码 把本群绑定到网格。",
        "declined": "谢谢邀请。按本社区的设置，只有书记、网格长或社区管理员可以邀请我进群，我先退出了。",
        "encrypted": "⚠ 本房间开启了端到端加密，邻里助手读不到这里的消息，也无法登记工单。请建一个不加密的房间（创"
                     "建时关闭“加密”）再邀请我。",
        "choose": "点表情选择：{options}",
        "rate": "点表情评分：1️⃣–5️⃣ 星（或回复数字 1–5）",
        "photo": "照片",
        "privacy": "⚠ 我现在只能看到命令（如 /报事 …）、@{bot} 的消息和回复我的消息，群里直接说的问题我看不到。请群"
                   "主把我设为管理员；或由机器人的主人在 @BotF"
                   "ather 发送 /setprivacy 选 Disable，再把我移出本群后重新拉进来。在那之前，请用 /报事 内容 或 @{b"
                   "ot} 内容 反映问题。",
        "privacy.hint": "⚠ 本群我只能看到命令和 @{bot} 的消息：请把我设为群管理员，或在 @BotFather 用 /setprivacy "
                        "关闭隐私模式后重新拉我进群。",
        "dm.fallback": "{who} 我有一条{about}的消息要私信您：请点下面的按钮打开与我的私聊并按“开始”，我马上发给您。",
        "dm.about": "关于 #{number} ",
        "dm.button": "私聊邻里助手",
    },
    "en": {
        "joined": "Hello, I am Linli: describe a problem here and I will file it as an order. Send "
                  "/help to see how; a secretary or grid leader please send /bind GRID-CODE to bind"
                  " this chat.",
        "declined": "Thanks for the invitation. In this community only a secretary, grid leader o"
                    "r community admin may add me to a group or room, so I am leaving.",
        "encrypted": "⚠ This room is end-to-end encrypted: Linli cannot read its messages or fil"
                     "e orders here. Please create a room without encryption and invite me there"
                     ".",
        "choose": "React to choose: {options}",
        "rate": "Rate with a reaction: 1️⃣–5️⃣ stars (or reply with a number 1–5)",
        "photo": "photo",
        "privacy": "⚠ I can only see commands (like /report …), messages that mention @{bot} and r"
                   "eplies to me; problems written plainly in this group do not reach me. Please m"
                   "ake me an admin of the group, or let the bot's owner send /setprivacy to @BotF"
                   "ather, choose Disable, then remove me from this group and add me again. Until "
                   "then, report with /report text or @{bot} text.",
        "privacy.hint": "⚠ In this group I only see commands and messages that mention @{bot}"
                        ": make me an admin, or turn privacy mode off with /setprivacy in @Bo"
                        "tFather and add me again.",
        "dm.fallback": "{who} I have a message {about}for you in private: press the button bel"
                       "ow to open a chat with me and tap Start, and I will send it.",
        "dm.about": "about #{number} ",
        "dm.button": "Chat with Linli",
    },
}

# Telegram lists only Latin command names in its menu; the Chinese ones reach the bot as plain text.
TELEGRAM_MENU: tuple[tuple[str, str, str], ...] = tuple(
    (spec.en, f"{spec.zh}：{spec.help_zh}", spec.help_en[:1].upper() + spec.help_en[1:]) for spec in SPECS if spec.menu)


def say(key: str, lang: str, **params: object) -> str:
    """A transport's own text."""
    table = TRANSPORT_TEXTS.get(lang) or TRANSPORT_TEXTS["zh"]
    return table[key].format(**params)
