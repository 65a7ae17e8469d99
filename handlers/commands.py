"""Chat commands: every command has a Chinese and an English name, and full-width forms work too."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.lifecycle import Action
from handlers.triage.normalize import clean, fold


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Everything about one command, in one place: the parser, the help text and the chat services' command menus are
    made from these, and a test checks the router and the permission table agree with them."""

    verb: str
    names: tuple[str, ...]  # Chinese (simplified, traditional), then English; the first of each is shown
    usage_zh: str
    usage_en: str
    help_zh: str
    help_en: str
    action: Action | None = None  # the lifecycle action whose permissions it needs, if it changes an order
    menu: bool = True  # listed in chat services' command menus

    @property
    def zh(self) -> str:
        return next(name for name in self.names if not name.isascii())

    @property
    def en(self) -> str:
        return next(name for name in self.names if name.isascii())


SPECS: tuple[CommandSpec, ...] = (
    CommandSpec("report", ("报事", "報事", "report", "new"), "/报事 内容", "/report text",
                "反映一个问题（也可以直接在群里说，或 @我）",
                "report a problem (or just say it in the group, or @-mention me)", Action.REPORT),
    CommandSpec("assign", ("派单", "派單", "assign", "dispatch"), "/派单 #12 @张师傅 或 队伍",
                "/assign #12 @name or team", "派单给处理人或队伍", "dispatch to a person or a team", Action.ASSIGN),
    CommandSpec("accept", ("接单", "接單", "accept"), "/接单 #12", "/accept #12", "接单，开始处理", "accept an order",
                Action.ACCEPT),
    CommandSpec("return", ("退单", "退單", "return"), "/退单 #12 原因", "/return #12 reason", "退回工单并说明原因",
                "hand an order back with a reason", Action.RETURN),
    CommandSpec("claim", ("认领", "認領", "claim"), "/认领 #12", "/claim #12", "志愿者认领没人接的工单",
                "take an order nobody was given (volunteers)", Action.CLAIM),
    CommandSpec("arrive", ("到场", "到場", "arrive"), "/到场 #12", "/arrive #12", "已到现场", "someone is on the scene",
                Action.ARRIVE),
    CommandSpec("plan", ("方案", "plan"), "/方案 #12 内容", "/plan #12 text", "复杂工单的处理方案",
                "the plan for a complex order", Action.PLAN, menu=False),
    CommandSpec("wait", ("等待", "wait", "pause"), "/等待 #12 原因", "/wait #12 reason", "等待居民，时限暂停",
                "waiting on the resident: the clocks stand still", Action.WAIT, menu=False),
    CommandSpec("resume", ("继续", "繼續", "resume"), "/继续 #12", "/resume #12", "等待结束，时限继续",
                "the wait is over", Action.RESUME, menu=False),
    CommandSpec("done", ("办结", "辦結", "done", "finish"), "/办结 #12 + 照片", "/done #12 + photo",
                "办结（回复工单并附现场照片）", "finish: reply to the order with a photo", Action.DONE),
    CommandSpec("rate", ("评价", "評價", "rate"), "/评价 #12 5", "/rate #12 5", "为服务打 1–5 星",
                "rate the service, 1–5 stars", Action.RATE),
    CommandSpec("follow", ("关注", "關注", "follow"), "/关注 #12", "/follow #12", "关注工单进展（或回复 +1）",
                "follow an order (or reply +1)", Action.FOLLOW),
    CommandSpec("status", ("进度", "進度", "status"), "/进度 #12", "/status #12", "工单进度", "an order's progress"),
    CommandSpec("mine", ("我的", "mine", "my"), "/我的", "/mine", "我的工单", "my orders"),
    CommandSpec("open", ("待办", "待辦", "open", "list"), "/待办", "/open", "待办工单", "open orders"),
    CommandSpec("stats", ("统计", "統計", "stats"), "/统计 本周", "/stats week", "三率统计（今天/本周/本月/全部）",
                "the three rates (today/week/month/all)"),
    CommandSpec("points", ("积分", "積分", "points"), "/积分", "/points", "积分榜", "the points ranking"),
    CommandSpec("cancel", ("撤销", "撤銷", "cancel", "undo"), "/撤销 #12 原因", "/cancel #12 reason",
                "撤销工单", "cancel an order", Action.CANCEL),
    CommandSpec("merge", ("合并", "合併", "merge"), "/合并 #13 #12", "/merge #13 #12", "#13 与 #12 重复，并入 #12",
                "#13 duplicates #12: fold it in", Action.MERGE, menu=False),
    CommandSpec("escalate", ("吹哨", "escalate", "whistle"), "/吹哨 #12 原因", "/escalate #12 reason",
                "吹哨，上报上一级", "escalate to the level above", Action.ESCALATE),
    CommandSpec("report_back", ("报到", "報到", "ack"), "/报到 #12", "/ack #12", "上级报到",
                "report in after a whistle", Action.REPORT_BACK),
    CommandSpec("correct", ("修改", "更正", "改", "correct", "fix"), "/修改 #12 类别=公共设施 紧急=红",
                "/correct #12 category=facilities urgency=red", "更正分类（会用来改进自动分类）",
                "correct the triage (it learns from it)", Action.CORRECT, menu=False),
    CommandSpec("bind", ("绑定", "綁定", "bind"), "/绑定 网格编码", "/bind GRID-CODE", "把本群绑定到网格",
                "bind this group to a grid"),
    CommandSpec("owner", ("认证", "認證", "owner"), "/认证 认证码（私聊）", "/owner CODE (direct message)",
                "用一次性认证码成为督办", "become supervisor with a one-time owner code", menu=False),
    CommandSpec("lang", ("语言", "語言", "lang", "language"), "/语言 en", "/lang zh", "回复您用的语言",
                "the language I answer you in"),
    CommandSpec("help", ("帮助", "幫助", "help", "start"), "/帮助", "/help", "用法", "how to use Linli"),
)
# verb → names people type.
COMMANDS: dict[str, tuple[str, ...]] = {spec.verb: spec.names for spec in SPECS}
_BY_NAME = {name.lower(): verb for verb, names in COMMANDS.items() for name in names}
_LONGEST_FIRST = sorted(_BY_NAME, key=len, reverse=True)
_COMMAND = re.compile(r"^[/／]([^\s@＠/／]+)(?:[@＠](\S+))?[\s\u3000]*(.*)$", re.S)
_ORDER_NUMBER = re.compile(r"[#＃]\s*([0-9０-９]{1,9})(?![0-9０-９])")
_MENTION = re.compile(r"[@＠](\S+)")


@dataclass(frozen=True, slots=True)
class Command:
    verb: str | None  # None: a slash word that is no command of ours
    name: str  # as typed, to quote back
    rest: str  # the text after the command, as the person wrote it (only invisible characters removed)

    @property
    def numbers(self) -> list[int]:
        return [int(fold(n)) for n in _ORDER_NUMBER.findall(self.rest)]

    @property
    def mentions(self) -> list[str]:
        return [fold(name).rstrip(",，。") for name in _MENTION.findall(self.rest)]

    @property
    def words(self) -> list[str]:
        """The arguments that are neither order numbers nor mentions, as written."""
        stripped = _MENTION.sub(" ", _ORDER_NUMBER.sub(" ", self.rest))
        return stripped.split()


def parse(text: str, bot_names: frozenset[str] = frozenset()) -> Command | None:
    """Read a command from the start of a message; None if the message is not a command."""
    match = _COMMAND.match(clean(text))
    if not match:
        return None
    typed, addressee, rest = match[1], match[2], match[3].strip()
    if addressee and bot_names and fold(addressee).lower() not in bot_names:
        return None  # "/report@OtherBot" is for another bot
    name = fold(typed).lower()
    verb = _BY_NAME.get(name)
    if verb is None:  # "/报事3栋灯坏了": the command runs into its text
        known = next((k for k in _LONGEST_FIRST if name.startswith(k) and not k.isascii()), None)
        if known is not None:
            verb, typed, rest = _BY_NAME[known], typed[: len(known)], (typed[len(known):] + " " + rest).strip()
    return Command(verb, typed, rest)
