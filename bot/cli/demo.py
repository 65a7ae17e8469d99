"""`linli demo`: a scripted neighbourhood played through the real core, storage and scheduler.

The clock is a fast one: the script moves it forward and the real APScheduler job sweeps the
database, so reminders and overdue warnings happen as they would over an afternoon.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.text import Text as RichText

from bot.cli.terminal import rates_table
from bot.console import ConsoleChat, Posted
from bot.settings import load_community
from bot.wiring import open_storage
from handlers import stats
from handlers.clock import ManualClock
from handlers.router import Linli
from scheduler.runner import SweepRunner
from storage.db import session

EXAMPLE = Path(__file__).resolve().parent / "linli.example.toml"  # in the package; linked from the root
GROUP = "阳光小区业主群"
SWEEP_EVERY = 0.02  # seconds of real time between sweeps


class Transcript:
    """Prints the chat as it happens, with the demo clock's time."""

    def __init__(self, console: Console, clock: ManualClock, tz: ZoneInfo) -> None:
        self.console, self.clock, self.tz = console, clock, tz

    def __call__(self, posted: Posted, edited: bool) -> None:
        stamp = self.clock.now().astimezone(self.tz).strftime("%H:%M")
        if edited:
            first = posted.text.splitlines()[1 if posted.text.startswith(("已登记", "Filed")) else 0]
            state = next((line for line in posted.text.splitlines() if line.startswith(("状态", "State"))), "")
            self.console.print(RichText(f"        ✎ 卡片更新 {first.strip()} · {state}", style="dim"),
                               soft_wrap=True)
            return
        bot = posted.author == "邻里助手"
        where = f" → {posted.chat}" if posted.chat != GROUP else ""  # direct messages say whom they went to
        who = RichText(f"{stamp} {posted.author:<6}{where}", style="bold cyan" if bot else "bold")
        body = posted.text + (" [照片]" if posted.photo else "")
        lines = body.splitlines() or [""]
        self.console.print(who, RichText(lines[0]), soft_wrap=True)
        for line in lines[1:]:
            self.console.print(" " * 13, RichText(line), soft_wrap=True)
        if posted.buttons:
            labels = " ".join(f"[{label}]" for label, _ in posted.buttons)
            self.console.print(" " * 13, RichText(labels, style="green"), soft_wrap=True)


def morning_of(day: date, tz: ZoneInfo) -> datetime:
    """08:00 on `day` where the community lives: the demo's first message."""
    return datetime.combine(day, time(8, 0), tz).astimezone(UTC)


async def play(db_path: Path, console: Console, day: date | None = None) -> Linli:
    """The scripted morning, on `day` (today where the community lives, by default), so that what it
    leaves in the database counts in today's, this week's and this month's figures."""
    community = load_community(EXAMPLE)
    tz = ZoneInfo(community.community.timezone)
    clock = ManualClock(morning_of(day or datetime.now(tz).date(), tz))
    engine = open_storage(f"sqlite:///{db_path}")
    core = Linli(engine, community, clock)
    transcript = Transcript(console, clock, core.community.tz)
    chat = ConsoleChat(core, on_post=transcript)
    runner = SweepRunner(engine, core.community, clock, chat.deliver, every=SWEEP_EVERY)
    runner.start()

    async def later(minutes: float, note: str) -> None:
        clock.advance(minutes=minutes)
        console.print(RichText(f"        …{note}…", style="italic magenta"))
        await runner.wait_runs(2)

    def say(who: str, text: str = "", **kw: Any) -> list[Posted]:
        return chat.say(who, text, chat=GROUP, **kw)

    def card(number: int) -> Posted:
        return chat.card(number)

    console.rule(f"[bold]{GROUP}[/]  (邻里 Linli demo)")
    say("王阿姨", "早上好各位邻居")
    say("王阿姨", "3栋2单元楼道灯又坏了 晚上黑漆漆的 老人下楼怕摔")
    say("李姐", "+1 我们4楼也不亮")
    say("Mr. Smith", "The lift in block 5 is broken again, it stops between floors")
    say("孙大爷", "@邻里助手 7号楼门口垃圾堆了好几天没人清理，臭得很")
    say("吴奶奶", "我家对门的独居老人好几天没见出门了，能不能去看看")
    say("张书记", "/派单 #1 物业维修组")
    chat.press("刘师傅", "接单", chat.last(GROUP))
    say("张书记", "/派单 #3 物业维修组")
    say("陈师傅", "/退单 #3 垃圾清运归网格管")
    say("张书记", "/派单 #3 @赵网格员")
    say("张书记", "/派单 #2 @陈师傅")
    chat.press("陈师傅", "接单", chat.last(GROUP))
    say("小李", "/认领 #4")
    await later(16, "16 分钟后")
    say("刘师傅", "换好了", photos=("photos/light-3-2.jpg",), reply_to=card(1))
    chat.press("王阿姨", "★5", chat.last(GROUP))
    say("李姐", "/评价 #1 4 师傅很快")
    say("赵先生", "/评价 #1 5")
    say("陈师傅", "/办结 #2")
    say("陈师傅", "修好了", photos=("photos/lift-5.jpg",), reply_to=chat.last(GROUP))
    say("Mr. Smith", "/rate #2 2 still stops on floor 4")
    say("张书记", "/派单 #2 @刘师傅")
    chat.press("刘师傅", "接单", chat.last(GROUP))
    say("小李", "已经上门看过了，老人身体不错，帮着买了菜", photos=("photos/visit.jpg",), reply_to=card(4))
    chat.press("吴奶奶", "★5", chat.last(GROUP))
    await later(20, "又过了 20 分钟")
    say("赵网格员", "/接单 #3")
    say("赵网格员", "清理完了", photos=("photos/rubbish-7.jpg",), reply_to=card(3))
    say("孙大爷", "/评价 #3 5")
    say("刘师傅", "电梯控制板换了，试了十次都正常", photos=("photos/lift-5b.jpg",), reply_to=card(2))
    say("Mr. Smith", "/rate #2 4 works now, thanks")
    say("张书记", "/统计")
    say("小李", "/积分")
    runner.shutdown()
    return core


def rates(core: Linli) -> list[stats.Rates]:
    with session(core.engine) as db:
        now = core.clock.now()
        return [*stats.rates(db, core.community.grid_id, now),
                *stats.rates(db, core.community.grid_id, now, group="team")]


def refuse_someone_elses(path: Path) -> None:
    """`--db` may replace an earlier demo's database, nothing else: not a community's, not a document."""
    from bot.settings import SettingsError
    from handlers.roster import stored_community

    if path.is_dir() or _head(path) not in (b"", b"SQLite format 3\x00"):
        raise SettingsError(f"--db {path}: there is a file or folder of another kind there; name a new file")
    engine = open_storage(f"sqlite:///{path}")
    try:
        with session(engine) as db:
            stored = stored_community(db)
    finally:
        engine.dispose()
    demo = load_community(EXAMPLE).community
    if stored is not None and (stored.community.code, stored.community.name) != (demo.code, demo.name):
        raise SettingsError(f"--db {path} holds the community {stored.community.name}; name a new file")


def _head(path: Path) -> bytes:
    with path.open("rb") as file:  # this process has not opened the database yet: no SQLite lock to lose
        return file.read(16)


def run_demo(db: Path | None, console: Console | None = None, day: date | None = None) -> None:
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="linli-demo-") as scratch:
        path = db or Path(scratch) / "demo.db"
        if db is not None and path.exists():
            refuse_someone_elses(path)
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        core = asyncio.run(play(path, console, day))
        console.print(rates_table(rates(core), "三率 · the three rates"))
        core.engine.dispose()
        if db is not None:
            console.print(f"数据库已保存：{path}  (linli console / linli stats with LINLI_DATABASE_URL=sqlite:///{path})")
