"""Texts only the Telegram transport says (joining, privacy mode, direct-message fallback) and the
command menu it registers with `setMyCommands`.

Kept in one catalogue per language like `bot/render.py`; the core's own texts stay there.
"""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "joined": "大家好，我是邻里助手：在群里说出要反映的问题，我会登记成工单。"
                  "发送 /帮助 查看用法；书记或网格长请发送 /绑定 网格编码 把本群绑定到网格。",
        "declined": "谢谢邀请。按本社区的设置，只有书记、网格长或社区管理员可以邀请我进群，我先退出了。",
        "privacy": "⚠ 我现在只能看到命令（如 /报事 …）、@{bot} 的消息和回复我的消息，群里直接说的问题我看不到。"
                   "请群主把我设为管理员；或由机器人的主人在 @BotFather 发送 /setprivacy 选 Disable，"
                   "再把我移出本群后重新拉进来。在那之前，请用 /报事 内容 或 @{bot} 内容 反映问题。",
        "privacy.hint": "⚠ 本群我只能看到命令和 @{bot} 的消息：请把我设为群管理员，"
                        "或在 @BotFather 用 /setprivacy 关闭隐私模式后重新拉我进群。",
        "dm.fallback": "{who} 我有一条{about}的消息要私信您：请点下面的按钮打开与我的私聊并按“开始”，我马上发给您。",
        "dm.about": "关于 #{number} ",
        "dm.button": "私聊邻里助手",
    },
    "en": {
        "joined": "Hello, I am Linli: describe a problem here and I will file it as an order. "
                  "Send /help to see how; a secretary or grid leader please send /bind GRID-CODE to bind this group.",
        "declined": "Thanks for the invitation. In this community only a secretary, grid leader or community "
                    "admin may add me to a group, so I am leaving.",
        "privacy": "⚠ I can only see commands (like /report …), messages that mention @{bot} and replies to me; "
                   "problems written plainly in this group do not reach me. Please make me an admin of the group, "
                   "or let the bot's owner send /setprivacy to @BotFather, choose Disable, then remove me from "
                   "this group and add me again. Until then, report with /report text or @{bot} text.",
        "privacy.hint": "⚠ In this group I only see commands and messages that mention @{bot}: make me an admin, "
                        "or turn privacy mode off with /setprivacy in @BotFather and add me again.",
        "dm.fallback": "{who} I have a message {about}for you in private: press the button below to open a chat "
                       "with me and tap Start, and I will send it.",
        "dm.about": "about #{number} ",
        "dm.button": "Chat with Linli",
    },
}

# Telegram only knows Latin command names (a–z, 0–9, _); Chinese names such as /报事 reach the bot as
# plain text and the core reads them the same way. The menu shows the Latin names, described in the
# reader's language.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("report", "报事：反映一个问题（/报事 内容）", "Report a problem (/report text)"),
    ("assign", "派单：/派单 #12 @处理人 或 队伍", "Dispatch: /assign #12 @handler or team"),
    ("accept", "接单：/接单 #12", "Accept an order: /accept #12"),
    ("return", "退单：/退单 #12 原因", "Return an order: /return #12 reason"),
    ("claim", "认领：志愿者认领 /认领 #12", "Claim an order as a volunteer: /claim #12"),
    ("arrive", "到场：/到场 #12", "On the scene: /arrive #12"),
    ("done", "办结：回复工单并附现场照片", "Finish: reply to the order with a photo"),
    ("rate", "评价：/评价 #12 5", "Rate: /rate #12 5"),
    ("status", "进度：/进度 #12", "An order's progress: /status #12"),
    ("follow", "关注：/关注 #12", "Follow an order: /follow #12"),
    ("mine", "我的工单", "My orders"),
    ("open", "待办工单", "Open orders"),
    ("stats", "三率统计：/统计 本周", "Response, resolution, satisfaction rates: /stats week"),
    ("points", "积分榜", "Points ranking"),
    ("cancel", "撤销：/撤销 #12 原因", "Cancel: /cancel #12 reason"),
    ("escalate", "吹哨：/吹哨 #12 原因", "Escalate: /escalate #12 reason"),
    ("ack", "报到：/报到 #12", "Report in after an escalation: /ack #12"),
    ("bind", "绑定网格：/绑定 网格编码", "Bind this group to a grid: /bind GRID-CODE"),
    ("lang", "语言：/语言 zh 或 en", "Language: /lang en or zh"),
    ("help", "帮助", "How to use Linli"),
)


def say(key: str, lang: str, **params: object) -> str:
    table = TEXTS.get(lang) or TEXTS["zh"]
    return table[key].format(**params)
