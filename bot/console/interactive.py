"""`linli console`: type as any member of the neighbourhood; the scheduler nags on the real clock."""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.text import Text as RichText

from bot.console import ConsoleChat, Posted
from bot.settings import Settings
from handlers.router import Linli
from scheduler.runner import SweepRunner
from storage import repo
from storage.db import session

HELP = """控制台命令 console commands:
  /as 名字          speak as someone (e.g. /as 张书记)
  /in 群名          speak in another chat
  /admin           make the speaker a chat admin (a dispatcher in zero-config), again to undo
  /photo 文件 说明   send a photo (with an optional caption)
  /reply N 内容     reply to message N (add a photo with /reply N /photo FILE)
  /press 按钮 [N]   press a button (on message N, or the latest that has it)
  /quit            leave
Anything else is said in the chat: /报事 … /派单 #1 @刘师傅 /帮助 …"""


def _default_chat(core: Linli) -> str:
    configured = [chat.id for chat in core.community.config.chats if chat.service == "console"]
    return configured[0] if configured else "邻里群"


class Screen:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.numbers: dict[str, int] = {}

    def number(self, posted: Posted) -> int:
        return self.numbers.setdefault(posted.id, len(self.numbers) + 1)

    def __call__(self, posted: Posted, edited: bool) -> None:
        n = self.number(posted)
        style = "bold cyan" if posted.author == "邻里助手" else "bold"
        mark = "✎" if edited else f"{n:>3}"
        private = " (仅您可见)" if posted.private_to else ""
        self.console.print(RichText(f"{mark} [{posted.chat}] {posted.author}{private}: ", style=style),
                           RichText(posted.text + (" [照片]" if posted.photo else "")))
        if posted.buttons:
            self.console.print("     ", RichText(" ".join(f"[{label}]" for label, _ in posted.buttons), style="green"))


def run_console(core: Linli, settings: Settings, speaker: str, chat: str | None, console: Console) -> None:
    asyncio.run(_loop(core, settings, speaker, chat or _default_chat(core), console))


async def _loop(core: Linli, settings: Settings, speaker: str, chat_name: str, console: Console) -> None:
    screen = Screen(console)
    chat = ConsoleChat(core, on_post=screen)
    chat.recover()  # what a console killed mid-message left: shown, then handled
    runner = SweepRunner(core.engine, core.community, core.clock, chat.deliver, every=settings.sweep_seconds)
    runner.start()
    console.print(HELP, style="dim")
    with session(core.engine) as db:
        console.print(f"数据库 {settings.database_url} · 工单 {repo.count_orders(db)} 张", style="dim")
    try:
        while True:
            try:
                line = await asyncio.to_thread(console.input, f"[bold]{speaker}@{chat_name}[/]> ")
            except (EOFError, KeyboardInterrupt):
                break
            speaker, chat_name, keep_going = _act(chat, screen, speaker, chat_name, line.strip(), console)
            if not keep_going:
                break
    finally:
        runner.shutdown()


def _act(chat: ConsoleChat, screen: Screen, speaker: str, chat_name: str, line: str,
         console: Console) -> tuple[str, str, bool]:
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if word in ("/quit", "/exit"):
        return speaker, chat_name, False
    if word == "/as" and rest:
        return rest, chat_name, True
    if word == "/in" and rest:
        return speaker, rest, True
    if word == "/admin":
        chat.admins.symmetric_difference_update({speaker})
        console.print(f"{speaker} {'是' if speaker in chat.admins else '不再是'}群管理员", style="dim")
        return speaker, chat_name, True
    if word in ("/?", "/console"):
        console.print(HELP, style="dim")
        return speaker, chat_name, True
    try:
        _speak(chat, screen, speaker, chat_name, word, rest, line)
    except (LookupError, ValueError) as error:
        console.print(f"[yellow]{error}[/]")
    return speaker, chat_name, True


def _speak(chat: ConsoleChat, screen: Screen, speaker: str, chat_name: str, word: str, rest: str,
           line: str) -> None:
    if word == "/press":
        label, _, number = rest.partition(" ")
        chat.press(speaker, label, _by_number(chat, screen, number) if number else None)
    elif word == "/photo":
        path, _, caption = rest.partition(" ")
        chat.say(speaker, caption, chat=chat_name, photos=(path,))
    elif word == "/reply":
        number, _, text = rest.partition(" ")
        target = _by_number(chat, screen, number)
        photos: tuple[str, ...] = ()
        if text.startswith("/photo "):
            path, _, text = text.removeprefix("/photo ").partition(" ")
            photos = (path,)
        chat.say(speaker, text, chat=chat_name, reply_to=target, photos=photos)
    elif line:
        chat.say(speaker, line, chat=chat_name)


def _by_number(chat: ConsoleChat, screen: Screen, number: str) -> Posted:
    wanted = int(number) if number.isdigit() else -1
    for posted in chat.messages:
        if screen.numbers.get(posted.id) == wanted:
            return posted
    raise LookupError(f"没有第 {number} 条消息")
