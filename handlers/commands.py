"""Chat commands: every command has a Chinese and an English name, and full-width forms work too."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.triage.normalize import clean, fold

# verb → names people type. The first Chinese and the first English name are the ones shown in help.
COMMANDS: dict[str, tuple[str, ...]] = {
    "report": ("报事", "報事", "report", "new"),
    "assign": ("派单", "派單", "assign", "dispatch"),
    "accept": ("接单", "接單", "accept"),
    "return": ("退单", "退單", "return"),
    "claim": ("认领", "認領", "claim"),
    "done": ("办结", "辦結", "done", "finish"),
    "rate": ("评价", "評價", "rate"),
    "status": ("进度", "進度", "status"),
    "mine": ("我的", "mine", "my"),
    "open": ("待办", "待辦", "open", "list"),
    "stats": ("统计", "統計", "stats"),
    "cancel": ("撤销", "撤銷", "cancel", "undo"),
    "merge": ("合并", "合併", "merge"),
    "escalate": ("吹哨", "escalate", "whistle"),
    "report_back": ("报到", "報到", "ack"),
    "follow": ("关注", "關注", "follow"),
    "arrive": ("到场", "到場", "arrive"),
    "plan": ("方案", "plan"),
    "wait": ("等待", "wait", "pause"),
    "resume": ("继续", "繼續", "resume"),
    "correct": ("修改", "更正", "改", "correct", "fix"),
    "bind": ("绑定", "綁定", "bind"),
    "owner": ("认证", "認證", "owner"),
    "points": ("积分", "積分", "points"),
    "lang": ("语言", "語言", "lang", "language"),
    "help": ("帮助", "幫助", "help", "start"),
}
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
    lang: str  # the language of the name used

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
    lang = "en" if fold(typed).isascii() else "zh"
    return Command(verb, typed, rest, lang)
