"""Texts only the Matrix transport says (joining, leaving, encrypted rooms, the reaction hints).

Kept in one catalogue per language like `bot/render.py`; the core's own texts stay there.
"""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "joined": "大家好，我是邻里助手：在群里说出要反映的问题，我会登记成工单。"
                  "发送 /帮助 查看用法；书记或网格长请发送 /绑定 网格编码 把本群绑定到网格。",
        "declined": "谢谢邀请。按本社区的设置，只有书记、网格长或社区管理员可以邀请我进群，我先退出了。",
        "encrypted": "⚠ 本房间开启了端到端加密，邻里助手读不到这里的消息，也无法登记工单。"
                     "请建一个不加密的房间（创建时关闭“加密”）再邀请我。",
        "choose": "点表情选择：{options}",
        "rate": "点表情评分：1️⃣–5️⃣ 星（或回复数字 1–5）",
        "photo": "照片",
    },
    "en": {
        "joined": "Hello, I am Linli: describe a problem here and I will file it as an order. "
                  "Send /help to see how; a secretary or grid leader please send /bind GRID-CODE to bind this room.",
        "declined": "Thanks for the invitation. In this community only a secretary, grid leader or community "
                    "admin may invite me, so I am leaving.",
        "encrypted": "⚠ This room is end-to-end encrypted: Linli cannot read its messages or file orders here. "
                     "Please create a room without encryption and invite me there.",
        "choose": "React to choose: {options}",
        "rate": "Rate with a reaction: 1️⃣–5️⃣ stars (or reply with a number 1–5)",
        "photo": "photo",
    },
}


def say(key: str, lang: str, **params: object) -> str:
    table = TEXTS.get(lang) or TEXTS["zh"]
    return table[key].format(**params)
