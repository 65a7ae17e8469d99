"""Rules that overrule the model where a rule is reliably better: follows, bare media, notices, red cues.

They read the simplified, lower-case caption (see `features.caption`).
"""

from __future__ import annotations

import itertools
import re

# Whatever is left of a message after this is removed is what the sender actually wrote.
_NOISE = re.compile(r"[\s\W_]+|[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d]+")
_EMOJI = re.compile(r"[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]+")

_PLACE = r"(?:\d+|[一二三四五六七八九十两]+)\s*(?:号楼|栋|幢|座|单元|楼|层|号|户)?"
_WHO = (r"(?:我|我们|我家|我们家|俺|俺家|俺们|咱家|咱们|我们这|我们那|这边|那边|对门|隔壁|楼上|楼下"
        rf"|同楼|同楼层|同单元|{_PLACE})")
# A bare "+1", "我也是", "同上", "Same in block 5": it follows an order, it is not a new one.
FOLLOW_ONLY = re.compile(
    r"^(?:"
    r"(?:\+|＋|➕|加)\s*(?:\d+|一)|同上|同楼上|同一楼上|附议|顶|帮顶|up|同|同问|同感|"
    r"一样|一样的|一样一样|同样|同样情况|情况一样|一样的情况|也是|"
    rf"(?:{_WHO}\s*){{0,3}}也\s*(?:是|一样|这样|是这样|是的|中招了?|碰到了?|遇到了?|有|同样|如此)?|"
    r"me too|same|same here|same for us|same (?:for us )?in (?:block|building) \w+|ditto|likewise"
    r")(?:[\s,，。.!！~～…]*(?:\+|＋|➕)\s*\d+|[\s,，。.!！~～…]*(?:同上|here|啊|呀|呢|的|吧|哦|了))*$",
    re.I,
)
_FOLLOW_HEAD = re.compile(r"^(?:(?:\+|＋|➕)\s*\d+\s*)+")  # "+1 我家也是" is still only a follow

# Staff announcements: a 【通知】-style tag or a message to everyone. A resident's 【求助】 is not one.
_NOTICE_TAG = re.compile(r"^(?:📢\s*)?【([^】]{1,16})】")
_RESIDENT_TAGS = re.compile(r"求助|报修|投诉|紧急|急|反映|举报|救|问题|咨询|求问|请问|曝光|吐槽|建议")
_TO_EVERYONE = re.compile(r"^@(?:全体成员|全体|所有人|all|everyone)\b", re.I)

# Danger now (docs/taxonomy.md, red): fire, smoke, sparks, gas, someone trapped, fallen or missing, flooding, a
# fight, something falling from height, an open manhole. Each cue is specific enough on its own.
_FIRE = (
    r"(?<![不打点])[着著]火|起火|失火|火灾|火苗(?!小)|火光|明火|烧起来|燃起来|自燃|冒烟|浓烟|黑烟|白烟|冒火|火星|火花|火烛",
    r"烧焦|焦糊味|焦味|糊味|火一直烧|汽油味|烟雾报警|烟感.{0,4}响|(?:全|都)(?:是|系)烟|烟好大|好大烟",
    r"油锅起火|(?<!\d)119(?!\d)",
)
_GAS = (
    r"煤气味|燃气味|天然气味|液化气味|煤气泄漏|燃气泄漏|漏气|泄漏.{0,3}(?:燃气|煤气)",
    r"(?:燃气|煤气)报警器.{0,4}(?:响|叫)|(?:燃气|煤气|天然气)管.{0,6}(?:断|破|裂|漏)",
)
_TRAPPED = (
    r"困人|被困|困在|困住|困了|关人|关在电梯|卡在电梯|(?:关|困|锁)在.{0,6}(?:电梯|货梯|客梯|梯|升降机)里",
    r"电梯里.{0,8}(?:出不来|出不去|打不开)|(?:人|孩|娃|老人|小孩).{0,6}(?:关在|卡在|困在)(?:电梯|轿厢)里",
    r"电梯.{0,12}(?:卡住|卡在|停在).{0,12}(?:里面|在里面|人)|电梯.{0,6}(?:冲顶|蹲底|往下掉|坠)|升降机.{0,4}(?:困|关)",
    r"反锁在|锁在车里|出不来了|卡在.{0,10}中间|探出.{0,4}身子|窗台外|坐在窗户上",
)
_FALLEN = (
    r"摔倒|跌倒|摔了一跤|摔下|倒在|躺着.{0,4}(?:一个|个)?(?:老人|人|大爷|阿姨)|掉(?:进)?水里|落水|溺水",
    r"晕倒|昏倒|晕过去|昏迷|叫不醒|没有意识|意识不清|抽搐|口吐白沫|嘴歪|胸口闷|心脏病发|中风",
    r"脑梗发作|不省人事|倒地不起|起不来|站不起来|救护车|(?<!\d)120(?!\d)|急救|救命|跳楼|轻生|触电",
    r"叫.{0,3}不(?:答应|应)|喊.{0,3}不应",
)
_KIN = r"(?:孩子|儿子|女儿|老人|爸|妈|奶奶|爷爷|老太|大爷|阿伯|伯伯|老伯|外婆|外公|阿姨|小孩|男孩|女孩)"
_MISSING = (
    rf"走丢|走失|失踪|{_KIN}.{{0,6}}不见了|{_KIN}.{{0,16}}(?:还没回来|没回来|未回家)|找不到(?:了|妈妈|爸爸|家|路)",
    r"没回家|认不到路|认唔到路|不认识路|失智|老年痴呆",
)
_FLOOD = (
    r"淹了|被淹|水淹|淹到|淹没|(?<!不)进水了|倒灌|往下灌|灌进|往外翻|溢水|漫进|漫到|水浸|泡着|泡住",
    r"爆管|水管爆|管爆了|管道爆|爆了.{0,6}(?:水|喷)|喷水|往外喷|水一直喷|水漫|积水.{0,6}(?:没过|到膝盖|到腰)",
    r"水还在涨",
)
_VIOLENCE = (
    r"打起来|打架|动手|动刀|拿刀|持刀|拿着刀|砍人|拿着棍|打人|被打|打老婆|家暴|流血|出血|头破|磕破|血口子",
    r"咬伤|咬了.{0,12}(?:血|伤)|(?:快|赶紧|已经|马上)报警|报警了",
)
_FALLING = (
    r"高空抛物|高空坠物|往下扔.{0,6}(?:砖|瓶|花盆|刀|石|玻璃)|往下砸|扔下来|掉下来.{0,10}(?:砸|人|车)",
    r"砸到|砸中|砸在|砸坏|砸碎|砸断|砸伤|差点(?:砸|扎)|摇摇欲坠|塌了|倒塌|坍塌",
    r"刮下来|吹下来|刮倒|吹倒|刮断|吹断|雷劈",
)
_OPEN_HOLE = (
    r"井盖(?:没了|丢了|.{0,4}偷|不见|翻了|塌|碎|掀开|被掀)|井盖子被掀|盖子被掀|没有?井盖|井盖.{0,4}敞着",
    r"没(?:有)?盖子.{0,20}(?:掉|栽|摔)|栽进|掉进(?:井|坑|洞)|空井道",
    r"漏电|电线.{0,6}(?:冒|烧|掉)|短路|嘶嘶",
)
# Danger said indirectly: someone alone and silent for days, a medical crisis, a child at a window, something
# about to fall, a tree on the wires, a broken manhole, a fight about to start, a stove that will not go out.
_AT_RISK = (
    r"(?:好几|几|两|三|四|五|多)天.{0,12}(?:没见|没出门|没开门|不开门|没人应|没动静|没露面|没下楼|冇开门|冇见|冇出"
    r"|联系不上|打不通)|敲门.{0,8}(?:没人应|不应|没反应|没人开|冇人应)|(?:独居|一个人住).{0,20}(?:联系不上|没动静)",
    r"胸口痛|胸痛|胸口疼|心口痛|心口疼|喘不上气|喘不过气|呼吸困难|透不过气|羊水破|破水了|要生了",
    r"(?:孕妇|怀孕|大肚).{0,10}(?:出血|流血|肚子痛|晕)|高烧|烧到(?:39|40|41|三十九|四十)|惊厥",
    r"(?:孩子|小孩|娃|小朋友|宝宝|细路|仔).{0,10}(?:窗台|窗户外|窗外|阳台边|栏杆外|爬上窗|爬出)"
    r"|(?:窗台|窗户外|窗沿).{0,10}(?:孩子|小孩|娃|小朋友|宝宝)",
    r"(?:空调外机|空调架|外机|支架|铁皮|彩钢瓦|广告牌|招牌|外墙|雨棚|遮阳棚|屋顶|顶棚).{0,10}"
    r"(?:松动|松了|晃|摇|要掉|快掉|悬着|吊着|翘起|脱落)",
    r"树.{0,12}(?:压|靠|倒|搭|挂).{0,6}(?:电线|高压线|电缆)|(?:电线|高压线).{0,8}(?:被树|压着|搭在)",
    r"井盖.{0,6}(?:坏|破|裂|松|歪|移位|开着|没盖|打开|凹|陷)|(?:窨井|化粪池).{0,6}(?:口|盖).{0,4}(?:开|没|破)",
    r"(?:快|要|马上就?)打起来|吵.{0,10}(?:动手|拿刀|拿棍|抄家伙|推搡)|抄家伙",
    r"(?:灶|火|煤气|燃气).{0,6}(?:关不掉|关不了|关不上|拧不紧|熄不了)|燃气表.{0,6}(?:响|嘶|转得飞快)"
    r"|烧塑料|塑料烧|胶皮味|橡胶味|电线.{0,4}味",
)
_ENGLISH = (
    r"\bfire\b(?! (?:lane|exit|door|truck|engine|hydrant|extinguisher|escape|alarm test|drill))|on fire|burning",
    r"flames?\b|smoke(?! detector| alarm)|smoking|sparks?\b|gas (?:smell|leak)|smell(?:s|ing)? (?:of )?gas",
    r"trapped|stuck (?:in|inside) (?:the |a )?(?:lift|elevator)|(?:lift|elevator)\b.{0,30}\b(?:inside|stuck between)",
    r"collapsed|unconscious|not responding|fainted|fell (?:down|over)|has fallen|can't get up",
    r"(?:child|kid|boy|girl|son|daughter|mum|mom|dad|father|mother|grand\w+|man|woman|elderly|old)\b.{0,40}missing",
    r"gone missing|missing (?:child|kid|boy|girl|person)|wandering alone|lost child|can't find (?:my|her|his)",
    r"flood(?:ing|ed)?|\bburst\b|water (?:is )?(?:pouring|gushing|spraying)|wandered off",
    r"(?<!water )(?<!pillow )fight(?:ing)?\b|bleeding|blood(?! pressure| test| donat)|knife|attacked|bitten",
    r"fell from|thrown from|falling from|manhole (?:cover )?(?:missing|open|gone)|open manhole",
    r"electric shock|electrocut|call (?:the )?(?:police|120|119|an ambulance)|\bhelp!",
    r"(?:haven't|have not|hasn't|not) (?:seen|heard).{0,30}(?:days|week)|not answering.{0,20}(?:door|days|phone)"
    r"|(?:mail|milk|newspapers?|deliver\w*).{0,20}piling",
    r"chest (?:pain|hurts)|can'?t breathe|short of breath|water (?:has |just )?broke|in labou?r"
    r"|pregnant.{0,30}(?:bleed|blood|pain)|high fever|fever of (?:39|40|41)|seizure",
    r"window (?:ledge|sill)|on the ledge|(?:child|kid|toddler|boy|girl).{0,30}(?:balcony railing|window)",
    r"(?:bracket|air ?con|a/?c unit|\bac\b|sign|billboard|panel|roof(?:ing)?|sheet).{0,30}"
    r"(?:loose|swaying|hanging|about to fall|wobbl|flapping|coming off)",
    r"tree.{0,30}(?:power ?lines?|wires?|cables?)|manhole|about to (?:fight|get physical|come to blows)"
    r"|squaring up|(?:stove|hob|burner|gas).{0,20}(?:won'?t|can'?t|doesn'?t) (?:turn|switch|shut) off"
    r"|hissing|burning smell|smell(?:s|ing)? (?:of )?(?:burning|smoke)",
)
# Chinese and English apart: one case-insensitive pattern for both is twice as slow.
RED_CUES = re.compile("|".join((*_FIRE, *_GAS, *_TRAPPED, *_FALLEN, *_MISSING, *_FLOOD, *_VIOLENCE, *_FALLING,
                                *_OPEN_HOLE, *_AT_RISK)))
RED_CUES_EN = re.compile("|".join(_ENGLISH), re.I)
_MISSING_CUES = re.compile("|".join((*_MISSING, _ENGLISH[4], _ENGLISH[5])), re.I)
_LATIN = re.compile("[a-z]")
_PET = re.compile(r"猫|狗|鸟|鹦鹉|宠物|龟|兔|\bcat\b|\bdog\b|\bpet\b|parrot", re.I)  # a lost cat is not red
# Words that take the edge off a red cue: safety notices, drills, tips, things already fixed.
_NOT_NOW = re.compile(
    r"演练|演习|培训|讲座|知识|科普|提醒大家|注意安全|预防|防范|如何|怎么办理|宣传|以前|去年|上次.{0,4}(?:已经|都)"
    r"|已经(?:修好|处理好|解决)|转发|^转|分享|逃生|小知识|常识|drill|training|reminder|last year|tips|forwarded",
    re.I,
)
# "万一起火怎么办", "差点打起来", "幸好没砸到人": a danger that has not happened is yellow at most.
_WHAT_IF = re.compile(
    r"万一|要是|如果|假如|一旦|怕|担心|会不会|差点|快要|都快|容易|再这样|防止|避免|没|不会|不是"
    r"|if |what if|in case|almost",
    re.I,
)

_THEN = re.compile(r"\s*了?\s*(?:就|怎么办|咋办|的话|can\b|would\b)")  # "着火了就跑不出去", "着火怎么办"
LONG_LETTER = 150


def words_of(caption_text: str) -> str:
    """The caption without spaces, punctuation and emoji: empty for a bare photo or a sticker."""
    return _NOISE.sub("", caption_text)


def is_follow_only(caption_text: str) -> bool:
    text = caption_text.strip()
    if len(text) > 24:
        return False
    text = _FOLLOW_HEAD.sub("", text).strip(" ,，。.!！~～…")
    text = _EMOJI.sub("", text).strip()
    return bool(FOLLOW_ONLY.match(text or "+1"))


def is_notice(caption_text: str) -> bool:
    """A staff announcement or a message to everyone, not a resident's report."""
    text = caption_text.lstrip()
    if _TO_EVERYONE.match(text):
        return True
    tag = _NOTICE_TAG.match(text)
    return bool(tag) and not _RESIDENT_TAGS.search(tag[1])


# What makes danger words in chatter no alarm: it is over, help is there, it is elsewhere or hearsay, a pet.
_SETTLED = re.compile(
    r"已解救|已处理|正在处理|人员平安|没事了|没事的|虚惊|误会|已经灭|灭了|到了|已经来了|已经到了|不是我们|别的区|外地|老家"
    r"|新闻|朋友圈|在传|传说|听说|视频|猫|狗|false alarm|nvm|never ?mind|all good|on the news|video|\bcat\b|\bdog\b",
    re.I,
)


def alarm_settled(caption_text: str) -> bool:
    """Danger words in a message that is not a request, but about a danger that is over, attended to,
    elsewhere, hearsay or a pet's: no alert for the dispatchers."""
    return bool(_SETTLED.search(caption_text))


def red_cue(caption_text: str) -> str | None:
    """The first words that say 'danger now', unless the message is about drills, tips or what might happen.

    A long letter that mentions a fire or a fall tells a story; an emergency is written short."""
    if len(caption_text) > LONG_LETTER or _NOT_NOW.search(caption_text):
        return None
    matches = RED_CUES.finditer(caption_text)
    if _LATIN.search(caption_text):
        matches = itertools.chain(matches, RED_CUES_EN.finditer(caption_text))
    for match in matches:
        before = caption_text[max(0, match.start() - 8):match.start()]
        if _WHAT_IF.search(before) or before.endswith(("要", "会", "再这样")) or _THEN.match(caption_text, match.end()):
            continue
        if _MISSING_CUES.fullmatch(match[0]) and _PET.search(caption_text):
            continue
        return match[0]
    return None
