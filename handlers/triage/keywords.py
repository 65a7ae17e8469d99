"""Keyword rules for triage: a transparent baseline that needs no model."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each category's cue words, most specific categories first: the first with the most hits wins.
CATEGORY_CUES: dict[str, tuple[str, ...]] = {
    "safety": (
        "着火", "起火", "失火", "冒烟", "烟味", "火灾", "煤气味", "燃气味", "天然气味", "漏气", "煤气泄漏",
        "燃气泄漏", "火花", "打火", "电瓶车充电", "电动车充电", "飞线充电", "高空抛物", "扔东西", "小偷",
        "被偷", "偷了", "盗", "可疑", "陌生人", "狗咬", "被咬", "外墙脱落", "掉下来", "群租", "fire",
        "smoke", "gas smell", "gas leak", "sparks", "stolen", "thief", "theft",
    ),
    "utilities": (
        "停水", "没水", "没有水", "水压", "水小", "黄水", "浑水", "水管爆", "爆管", "停电", "没电", "断电",
        "跳闸", "停气", "没气", "暖气", "供暖", "不热", "热水", "水表", "电表", "自来水",
        "no water", "power cut", "power outage", "no power", "blackout", "heating", "hot water",
    ),
    "facilities": (
        "电梯", "路灯", "楼道灯", "灯坏", "灯不亮", "不亮", "门禁", "道闸", "栏杆", "井盖", "坑", "路面",
        "屋顶", "健身器材", "滑梯", "充电桩", "公厕", "单元门", "围栏", "扶手", "台阶", "楼梯", "lift",
        "elevator", "street light", "streetlight", "light", "gate", "pothole", "manhole", "door",
    ),
    "sanitation": (
        "垃圾", "清理", "打扫", "卫生", "下水道", "堵了", "堵塞", "化粪池", "臭", "异味", "老鼠", "蟑螂",
        "蚊子", "狗屎", "狗粪", "树枝", "修剪", "绿化", "油烟", "污水", "rubbish", "trash", "garbage",
        "smell", "drain", "rats", "cockroach",
    ),
    "noise": (
        "噪音", "吵", "装修", "砸墙", "电钻", "广场舞", "施工", "狗叫", "唱歌", "KTV", "喇叭", "扰民",
        "noise", "noisy", "loud", "renovation", "drilling", "barking",
    ),
    "parking": (
        "停车", "乱停", "占道停", "消防通道", "堵车", "挪车", "车位", "共享单车", "红绿灯", "僵尸车",
        "parking", "parked", "fire lane", "blocking",
    ),
    "dispute": (
        "漏水到", "渗水", "渗到", "楼上漏", "楼上", "邻居", "吵架", "打架", "纠纷", "不承认", "堆放",
        "杂物", "占用楼道", "赔", "neighbour", "neighbor", "upstairs", "fight", "quarrel",
    ),
    "property": (
        "物业费", "物业公司", "物业态度", "保安", "保洁", "维修基金", "押金", "收费", "公示", "服务态度",
        "management fee", "property fee", "security guard",
    ),
    "assistance": (
        "独居", "老人", "摔倒", "摔伤", "走失", "找不到", "残疾", "看病", "送医", "微心愿", "帮忙买",
        "行动不便", "elderly", "fell", "missing", "wheelchair",
    ),
    "services": (
        "证明", "社保", "医保", "户口", "落户", "补贴", "疫苗", "政策", "选举", "办理", "低保", "居住证",
        "怎么办", "去哪里办", "certificate", "insurance", "subsidy", "vaccine", "register",
    ),
    "construction": (
        "违建", "违章", "搭建", "圈地", "占地", "摆摊", "占道经营", "改成了门面", "私搭", "乱搭",
        "illegal", "stall",
    ),
}

RED_CUES = (
    "着火", "起火", "失火", "冒烟", "火灾", "煤气味", "燃气味", "天然气味", "漏气", "泄漏", "火花",
    "困", "卡在", "关在", "摔倒", "晕倒", "昏迷", "走失", "找不到人", "淹", "进水", "倒灌", "打架",
    "打起来", "动手", "流血", "高空", "砸到", "掉下", "井盖没", "井盖丢", "没有井盖", "救命", "快来",
    "fire", "smoke", "gas", "trapped", "stuck inside", "fell", "fallen", "missing", "flood", "fight",
    "bleeding",
)
YELLOW_CUES = (
    "整栋", "全楼", "一栋楼", "整个小区", "好几户", "多户", "大家都", "再次", "多次", "第二次",
    "第三次", "好几次", "一直没人", "没人管", "没人处理", "还没", "消防通道", "充电", "纠纷", "吵架",
    "停电", "停水", "whole building", "again", "still not", "nobody",
)
REQUEST_CUES = (
    "坏了", "坏", "不亮", "不能", "不了", "没有", "没人", "麻烦", "请", "帮忙", "帮", "处理", "管管",
    "怎么", "能不能", "可以吗", "反映", "投诉", "举报", "报修", "维修", "修", "严重", "太", "受不了",
    "一直", "好几天", "吗", "？", "?", "！", "!", "救", "please", "help", "broken", "not working",
    "can someone", "complain", "again", "since",
)
CHATTER_CUES = (
    "收到", "好的", "谢谢", "感谢", "辛苦", "早上好", "晚上好", "大家好", "哈哈", "【通知】", "通知",
    "公告", "温馨提示", "接龙", "团购", "转发", "有没有人", "谁知道", "有人知道", "推荐", "出租", "转让",
    "已修好", "修好了", "thanks", "thank you", "notice", "good morning", "anyone know",
)
FOLLOW_ONLY = re.compile(r"^\s*(\+1|＋1|我也是|同上|我家也是|一样|顶|\+\+)[。.!！~～]*\s*$")

PRIVATE_CUES = ("我家", "家里", "屋里", "室内", "自家", "my flat", "my apartment", "at home")
MATTER_OF_CATEGORY = {
    "utilities": "major", "safety": "major", "services": "major", "construction": "major",
    "facilities": "minor", "sanitation": "minor", "noise": "minor", "parking": "minor",
    "dispute": "minor", "property": "minor", "assistance": "minor", "other": "private",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    is_request: bool
    category: str
    urgency: str
    matter: str
    confidence: float


def _hits(text: str, cues: tuple[str, ...]) -> int:
    return sum(1 for cue in cues if cue in text)


def classify(text: str) -> Verdict:
    """Judge simplified, folded text by counting cue words."""
    lowered = text.lower()
    scores = {code: _hits(lowered, cues) for code, cues in CATEGORY_CUES.items()}
    category = max(scores, key=lambda code: scores[code])
    topic = scores[category]
    if topic == 0:
        category = "other"
    asks = _hits(lowered, REQUEST_CUES)
    chatter = _hits(lowered, CHATTER_CUES)
    if FOLLOW_ONLY.match(text) or not lowered.strip("[]图片 "):
        chatter += 3
    evidence = topic * 2 + asks - chatter * 2
    is_request = evidence >= 2 and (topic > 0 or asks >= 2)
    confidence = min(0.99, 0.5 + abs(evidence) * 0.1)
    urgency = "red" if _hits(lowered, RED_CUES) else "yellow" if _hits(lowered, YELLOW_CUES) else "blue"
    matter = MATTER_OF_CATEGORY[category]
    if category in ("facilities", "utilities", "other") and _hits(lowered, PRIVATE_CUES):
        matter = "private"
    return Verdict(is_request, category, urgency, matter, confidence)
