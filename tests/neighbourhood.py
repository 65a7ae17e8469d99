"""A neighbourhood in a test: people say things in the console chat and the test reads the bot's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session, select

from bot.console import ConsoleChat, Posted
from bot.settings import load_community
from handlers.clock import ManualClock
from handlers.community import CommunityConfig
from handlers.router import Linli
from scheduler.sweep import sweep_and_take
from storage.db import make_engine, session
from storage.migrate import upgrade
from storage.models import Order

EXAMPLE = Path(__file__).resolve().parent.parent / "linli.example.toml"


def quiet_days(config: CommunityConfig) -> CommunityConfig:
    """The example community without digests and quiet hours, so a test hears only what it is about."""
    info = config.community.model_copy(update={"daily_digest": None, "weekly_ranking": None, "quiet_hours": None})
    return config.model_copy(update={"community": info})
GROUP = "阳光小区业主群"


class Neighbourhood:
    def __init__(self, db_url: str, config: CommunityConfig | None = None) -> None:
        self.engine = make_engine(db_url)
        upgrade(self.engine)
        self.clock = ManualClock()
        self.core = Linli(self.engine, config or quiet_days(load_community(EXAMPLE)), self.clock)
        self.chat = ConsoleChat(self.core)
        self.heard: list[Posted] = []

    # --- speaking -------------------------------------------------------------------------
    def say(self, who: str, text: str = "", *, chat: str = GROUP, **kw) -> list[Posted]:  # type: ignore[no-untyped-def]
        self.heard = self.chat.say(who, text, chat=chat, **kw)
        return self.heard

    def press(self, who: str, label: str, message: Posted | None = None) -> list[Posted]:
        self.heard = self.chat.press(who, label, message)
        return self.heard

    def later(self, **delta: float) -> list[Posted]:
        """Let time pass and run the sweep, as the scheduler would."""
        self.clock.advance(**delta)
        self.heard = self.chat.deliver_now(sweep_and_take(self.engine, self.core.community, self.clock.now()))
        return self.heard

    # --- reading --------------------------------------------------------------------------
    def answer(self) -> str:
        return "\n".join(p.text for p in self.heard)

    def expect(self, *fragments: str) -> str:
        """Each fragment is in what the bot said, and the bot said nothing else: every message it posted
        (cards edited in place aside) holds one of the fragments. An extra or misrouted message fails."""
        said = self.answer()
        for fragment in fragments:
            assert fragment in said, f"expected {fragment!r} in the bot's answer:\n{said or '(silence)'}"
        extra = [p for p in self.heard if p.edits == 0 and not any(f in p.text for f in fragments)]
        assert not extra, "the bot also said:\n" + "\n".join(f"[{p.chat}] {p.text}" for p in extra)
        return said

    def expect_silence(self) -> None:
        assert not self.heard, f"expected no answer, got:\n{self.answer()}"

    def card(self, number: int) -> Posted:
        return self.chat.card(number)

    def order(self, number: int) -> Order:
        with session(self.engine) as db:
            found = db.exec(select(Order).where(Order.number == number)).one()
            return found

    def db(self) -> Session:
        return session(self.engine)

    def report(self, who: str = "王阿姨", text: str = "3栋2单元楼道灯坏了，晚上黑漆漆的") -> int:
        """File an order and return its number."""
        self.say(who, f"/报事 {text}")
        return self.order_count()

    def order_count(self) -> int:
        with session(self.engine) as db:
            return len(db.exec(select(Order.id)).all())

    def in_progress(self, number: int, handler: str = "刘师傅") -> None:
        self.say("张书记", f"/派单 #{number} @{handler}")
        self.say(handler, f"/接单 #{number}")

    def resolved(self, number: int, handler: str = "刘师傅") -> None:
        self.in_progress(number, handler)
        self.say(handler, "修好了", photos=("done.jpg",), reply_to=self.card(number))


ONE_MINUTE = timedelta(minutes=1)
SHANGHAI = timedelta(hours=8)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Beijing time, as the aware UTC the clock keeps."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - SHANGHAI


def hood_with(tmp_path: Path, start: datetime | None = None, config: CommunityConfig | None = None,
              **community: object) -> Neighbourhood:
    """The example neighbourhood (quiet days) with its clock at `start` and `community` settings changed."""
    config = config or quiet_days(load_community(EXAMPLE))
    config = config.model_copy(update={"community": config.community.model_copy(update=community)})
    hood = Neighbourhood(f"sqlite:///{tmp_path / 'sla.db'}", config)
    if start is not None:
        hood.clock = hood.core.clock = ManualClock(start)
    return hood
