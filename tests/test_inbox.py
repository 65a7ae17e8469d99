"""The inbox: updates stored before they are acknowledged, handled once, several in one transaction."""

from __future__ import annotations

import asyncio
import socket

import pytest
from sqlmodel import col, select

from bot.console.chat import ConsoleChat, as_payload
from bot.inbox import InboxLanes
from handlers import inbox, intake
from handlers.inbox import Arrival, Stored
from handlers.protocol import Incoming, Kind
from storage.db import session
from storage.models import Inbox, Order, Outbox
from tests.neighbourhood import GROUP, Neighbourhood


def said(n: int, text: str, who: str = "王阿姨", chat: str = GROUP) -> Incoming:
    return Incoming(service="console", chat_id=chat, sender_id=who, sender_name=who, text=text,
                    message_id=f"msg-{n}", known_by_name=True)


def stored(hood: Neighbourhood, *updates: Incoming) -> list[Stored]:
    arrivals = [Arrival(u.message_id or "", f"chat:{u.chat_id}", {"n": u.message_id}) for u in updates]
    return inbox.store_now(hood.engine, "console", arrivals, hood.clock.now())


def orders(hood: Neighbourhood) -> list[str]:
    with session(hood.engine) as db:
        return [order.text for order in db.exec(select(Order).order_by(col(Order.id)))]


def unhandled(hood: Neighbourhood) -> list[int]:
    with session(hood.engine) as db:
        return [row.id or 0 for row in db.exec(select(Inbox).where(col(Inbox.handled_at).is_(None)))]


def test_updates_stored_together_are_found_by_the_moment_they_came(hood: Neighbourhood) -> None:
    """Stored as the ORM stores a moment, so a query by time (what is old enough to clear) finds them."""
    kept = stored(hood, *[said(n, "早上好") for n in range(40)], said(3, "早上好"))
    assert [update.key for update in kept] == [f"msg-{n}" for n in range(40)], "each once, in the order sent"
    with session(hood.engine) as db:
        found = db.exec(select(Inbox).where(col(Inbox.received_at) >= hood.clock.now())).all()
    assert sorted(row.id for row in found) == sorted(update.id for update in kept)


def test_an_update_is_stored_once_and_handled_once(hood: Neighbourhood) -> None:
    report = said(1, "3栋2单元楼道灯坏了，晚上黑漆漆的")
    first = stored(hood, report)
    assert stored(hood, report) == [], "Telegram sent it again: it is in the inbox already"
    queued = hood.core.take(report, first[0].id, hood.core.owner)
    assert [action.kind for _, action in queued] == [Kind.CARD] and all(row for row, _ in queued)
    assert hood.core.take(report, first[0].id, hood.core.owner) == [], "handled already: nothing again"
    assert orders(hood) == ["3栋2单元楼道灯坏了，晚上黑漆漆的"] and unhandled(hood) == []
    with session(hood.engine) as db:
        card = db.exec(select(Outbox)).one()
    assert card.claimed_by == hood.core.owner and card.sent_at is None, "queued, leased to this process"


def test_a_group_commit_keeps_each_update_apart(hood: Neighbourhood) -> None:
    """Chatter, a second delivery and a failing update in one group: the others are filed all the same."""
    updates = [said(1, "3栋2单元楼道灯坏了"), said(2, "收到，谢谢"), said(1, "3栋2单元楼道灯坏了"),
               said(3, "5号楼电梯门关不上", who="李叔"), said(4, "7幢1单元水管漏水了", who="赵大爷")]
    rows = stored(hood, *[u for u in updates if u is not updates[2]])
    ids = [rows[0].id, rows[1].id, rows[0].id, rows[2].id, rows[3].id]
    original = intake.file_order

    def broken_for_zhao(turn, text, verdict):  # type: ignore[no-untyped-def]
        if "7幢" in text:
            raise RuntimeError("a bug")
        return original(turn, text, verdict)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(intake, "file_order", broken_for_zhao)
        results = hood.core.take_many(list(zip(updates, ids, strict=True)), hood.core.owner)
    keys = [[action.text.key for _, action in queued] for queued in results]
    assert keys[0] == ["card.filed"] and keys[1] == [] and keys[2] == [] and keys[3][0] == "card.filed"
    assert keys[4] == ["error.internal"], "the failing one is told so; the others are not undone"
    assert orders(hood) == ["3栋2单元楼道灯坏了", "5号楼电梯门关不上"]
    assert unhandled(hood) == [rows[1].id], "only the chatter waits to be marked, together with others later"


async def test_lanes_handle_a_chat_in_order_and_chats_side_by_side(hood: Neighbourhood) -> None:
    """A slow chat does not hold up another; within a chat the order received is the order handled."""
    slow_started, slow_may_go = asyncio.Event(), asyncio.Event()
    handled: list[tuple[str, int]] = []

    async def handle(batch: list[Stored]) -> None:
        for update in batch:
            if update.payload["slow"]:
                slow_started.set()
                await slow_may_go.wait()
            handled.append((update.lane, update.payload["n"]))

    lanes = InboxLanes("console", hood.engine, hood.clock, handle, owner=hood.core.owner)
    await lanes.receive([Arrival(f"a{n}", "chat:A", {"n": n, "slow": n == 0}) for n in range(5)])
    await slow_started.wait()
    await lanes.receive([Arrival("b0", "chat:B", {"n": 0, "slow": False})])
    await asyncio.wait_for(_until(lambda: ("chat:B", 0) in handled), 5)
    assert [n for lane, n in handled if lane == "chat:A"] == [], "chat A still waits on its first update"
    slow_may_go.set()
    await asyncio.wait_for(lanes.idle(), 5)
    assert [n for lane, n in handled if lane == "chat:A"] == [0, 1, 2, 3, 4]
    assert unhandled(hood) == [], "every update is marked handled"
    await lanes.stop()


async def test_a_restart_goes_on_with_what_was_waiting(hood: Neighbourhood) -> None:
    rows = stored(hood, said(1, "3栋2单元楼道灯坏了"), said(2, "5号楼电梯门关不上", who="李叔"))
    seen: list[int] = []

    async def handle(batch: list[Stored]) -> None:
        seen.extend(update.id for update in batch)

    lanes = InboxLanes("console", hood.engine, hood.clock, handle, owner=hood.core.owner)
    await lanes.recover()
    await asyncio.wait_for(lanes.idle(), 5)
    assert seen == [row.id for row in rows] and unhandled(hood) == []
    await lanes.stop()


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.01)


async def test_an_update_waits_while_the_database_is_away(hood: Neighbourhood, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Handling that fails because the database is away is tried again until it works, however long."""
    from sqlalchemy.exc import OperationalError

    from bot import inbox as lanes_module

    monkeypatch.setattr(lanes_module, "AWAY_PAUSES", (0.001, 0.002))  # the growing pauses, shortened
    monkeypatch.setattr(lanes_module, "RETRY_PAUSES", (0.001,))
    failures = iter(range(6))  # longer than the pauses a bug gets
    done: list[int] = []

    async def handle(batch: list[Stored]) -> None:
        if next(failures, None) is not None:
            raise OperationalError("UPDATE …", {}, Exception("database is locked"))
        done.extend(update.id for update in batch)

    lanes = InboxLanes("console", hood.engine, hood.clock, handle, owner=hood.core.owner)
    await lanes.receive([Arrival("a0", "chat:A", {})])
    await asyncio.wait_for(lanes.idle(), 5)
    assert len(done) == 1, "handled in the end, not let go"
    await lanes.stop()


def test_the_console_stores_a_message_before_it_handles_it_and_marks_its_answers_sent(
        hood: Neighbourhood) -> None:
    hood.say("王阿姨", "3栋2单元楼道灯坏了，晚上黑漆漆的")
    hood.expect("#1")
    hood.press("王阿姨", "撤销", hood.card(1))
    with session(hood.engine) as db:
        kept = db.exec(select(Inbox).order_by(col(Inbox.id))).all()
        assert [row.lane for row in kept] == [f"chat:{GROUP}"] * 2 and all(row.handled_at for row in kept)
        assert all(row.sent_at for row in db.exec(select(Outbox)))


def test_a_console_killed_mid_message_finishes_it_on_its_next_start(hood: Neighbourhood) -> None:
    now = hood.clock.now()
    lamp, lift = said(1, "3栋2单元楼道灯坏了，晚上黑漆漆的"), said(2, "5号楼电梯门关不上", who="李大爷")
    # the lamp: stored, then the console was killed before it handled it
    inbox.store_now(hood.engine, "console", [Arrival(f"{GROUP}\x1fmsg-1", f"chat:{GROUP}", as_payload(lamp))], now)
    # the lift: handled, then killed before its card was shown (its rows leased to a process that is gone)
    kept = inbox.store_now(hood.engine, "console", [Arrival(f"{GROUP}\x1fmsg-2", f"chat:{GROUP}", as_payload(lift))],
                           now)
    hood.core.take(lift, kept[0].id, f"{socket.gethostname()}:999999999:gone")

    console = ConsoleChat(hood.core)  # the next start
    shown = console.recover()
    assert [posted.text.splitlines()[0][:3] for posted in shown] == ["已登记", "已登记"]
    assert sorted(orders(hood)) == ["3栋2单元楼道灯坏了，晚上黑漆漆的", "5号楼电梯门关不上"] and unhandled(hood) == []
    assert console.recover() == [], "nothing shown twice"
    assert console.say("王阿姨", "3栋2单元楼道灯坏了，晚上黑漆漆的", chat=GROUP, message_id="msg-1") == [], "once"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_group_marks_its_updates_and_queues_their_replies_when_it_ends(backend: str, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One statement marks the group's updates, one queues its replies; each reply gets its own row, in
    order, and an update handled meanwhile elsewhere sends the group one by one, where it is found out."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'g.db'}"
    hood = Neighbourhood(url)
    reports = [said(n, f"{n}栋楼道灯坏了", who=f"居民{n}") for n in range(1, 5)]
    rows = stored(hood, *reports)
    results = hood.core.take_many([(r, row.id) for r, row in zip(reports, rows, strict=True)], hood.core.owner)
    outbox_rows = [row for queued in results for row, _ in queued]
    assert all(outbox_rows) and outbox_rows == sorted(set(outbox_rows)), "a row each, in the order said"
    with session(hood.engine) as db:
        payloads = {row.id: row.payload["order_id"] for row in db.exec(select(Outbox))}
    assert [payloads[row] for row in outbox_rows] == [action.order_id for q in results for _, action in q]
    assert unhandled(hood) == []
    again = [said(n, f"{n}栋电梯坏了", who=f"居民{n}") for n in range(10, 13)]
    more = stored(hood, *again)
    inbox.handled(hood.engine, [more[1].id], hood.clock.now())  # another process was quicker with this one
    results = hood.core.take_many([(r, row.id) for r, row in zip(again, more, strict=True)], hood.core.owner)
    assert [len(queued) > 0 for queued in results] == [True, False, True]
    assert orders(hood)[-2:] == [again[0].text, again[2].text], "the one handled elsewhere is not filed twice"
    hood.engine.dispose()


def test_a_connection_lost_mid_update_is_tried_again_not_apologised_for(postgres_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL restarted (or the connection cut) while a report was being filed: the update is not
    answered "sorry" and marked handled, it waits, and the next try files it."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from storage import repo

    hood = Neighbourhood(postgres_url)
    report = said(1, "3栋2单元楼道灯坏了，晚上黑漆漆的")
    kept = stored(hood, report)
    record = repo.record_delivery
    cuts = [1]

    def cut_then_record(db, *args):  # type: ignore[no-untyped-def]
        if cuts.pop() if cuts else 0:  # once: after the order was written, before the update is done
            pid = db.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with hood.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            db.execute(select(Order.id)).all()  # the ORM meets the cut first
        return record(db, *args)

    monkeypatch.setattr(repo, "record_delivery", cut_then_record)
    with pytest.raises(OperationalError):
        hood.core.take(report, kept[0].id, hood.core.owner)
    assert orders(hood) == [] and unhandled(hood) == [kept[0].id], "nothing half done, nothing marked"
    queued = hood.core.take(report, kept[0].id, hood.core.owner)  # the inbox's next try
    assert [action.text.key for _, action in queued] == ["card.filed"] and orders(hood) == [report.text]
    hood.engine.dispose()


def test_when_a_group_is_redone_and_one_fails_what_the_others_queued_is_handed_back_at_once(
        hood: Neighbourhood, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import OperationalError

    from storage import repo

    said_by = [("3栋2单元楼道灯坏了，晚上黑漆漆的", "王阿姨"), ("5号楼电梯门关不上", "李大爷"),
               ("北门路灯不亮", "赵阿姨")]
    reports = [said(n, text, who=who) for n, (text, who) in enumerate(said_by, 1)]
    kept = stored(hood, *reports)
    record = repo.record_delivery

    def away_for_the_third(db, service, chat, message_ref, now):  # type: ignore[no-untyped-def]
        if message_ref == "msg-3":
            raise OperationalError("INSERT …", {}, Exception("server closed the connection unexpectedly"))
        return record(db, service, chat, message_ref, now)

    def away_in_the_group(db, messages, now):  # type: ignore[no-untyped-def]
        if any(ref == "msg-3" for _, _, ref in messages):
            raise OperationalError("INSERT …", {}, Exception("server closed the connection unexpectedly"))
        raise AssertionError("msg-3 is in the group")

    monkeypatch.setattr(repo, "record_delivery", away_for_the_third)
    monkeypatch.setattr(repo, "record_deliveries", away_in_the_group)  # the group fails, then each goes alone
    with pytest.raises(OperationalError):
        hood.core.take_many([(report, row.id) for report, row in zip(reports, kept, strict=True)], hood.core.owner)
    assert orders(hood) == [reports[0].text, reports[1].text] and unhandled(hood) == [kept[2].id]
    with session(hood.engine) as db:
        cards = db.exec(select(Outbox)).all()
    assert len(cards) == 2 and all(card.claimed_by is None for card in cards), "free for the sweep to post now"


async def test_webhook_requests_side_by_side_are_stored_in_one_transaction(hood: Neighbourhood, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    transactions: list[int] = []
    store_now = inbox.store_now

    def counted(engine, service, arrivals, now, **kw):  # type: ignore[no-untyped-def]
        transactions.append(len(arrivals))
        return store_now(engine, service, arrivals, now, **kw)

    monkeypatch.setattr(inbox, "store_now", counted)
    handled: list[str] = []

    async def handle(batch: list[Stored]) -> None:
        handled.extend(update.key for update in batch)

    lanes = InboxLanes("console", hood.engine, hood.clock, handle, owner=hood.core.owner)
    new = await asyncio.gather(*(lanes.receive([Arrival(f"w{n}", f"chat:{n % 3}", {})]) for n in range(10)),
                               lanes.receive([Arrival("w3", "chat:0", {})]))  # Telegram sent w3 twice
    assert new == [1] * 10 + [0] and transactions == [11]
    await asyncio.wait_for(lanes.idle(), 5)
    assert sorted(handled) == sorted(f"w{n}" for n in range(10))
    await lanes.stop()
