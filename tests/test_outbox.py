"""Nothing is lost when a send fails, and an action that always fails is given up in the end."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import col, select

from handlers import outbox
from handlers.protocol import Kind, Outgoing, Text
from scheduler.sweep import deliver_due
from storage.models import Outbox
from tests.neighbourhood import Neighbourhood


async def test_a_failed_send_is_tried_again_with_growing_pauses_then_given_up(hood: Neighbourhood) -> None:
    action = Outgoing(Kind.SEND, Text("help"), service="telegram", chat_id="-100")
    tries: list[Outgoing] = []

    async def always_failing(actions: list[Outgoing]) -> None:
        for failed in actions:
            tries.append(failed)
            outbox.park(hood.engine, failed, "Forbidden: bot was kicked", hood.clock.now())

    outbox.park(hood.engine, action, "network down", hood.clock.now())
    for _ in range(20):
        hood.clock.advance(hours=12)
        await deliver_due(hood.engine, "test", hood.clock.now(), always_failing)
    assert len(tries) == outbox.MAX_ATTEMPTS
    with hood.db() as db:
        rows = db.exec(select(Outbox).order_by(Outbox.id)).all()
    assert [row.attempts for row in rows] == list(range(outbox.MAX_ATTEMPTS + 1))
    assert rows[-1].given_up and all(row.sent_at for row in rows[:-1])


async def test_a_parked_action_goes_out_when_the_service_is_back(hood: Neighbourhood) -> None:
    action = Outgoing(Kind.SEND, Text("help"), service="telegram", chat_id="-100")
    outbox.park(hood.engine, action, "network down", hood.clock.now())
    delivered: list[Outgoing] = []

    async def working(actions: list[Outgoing]) -> None:
        delivered.extend(actions)

    assert await deliver_due(hood.engine, "test", hood.clock.now(), working) == 0, "it waits a little first"
    hood.clock.advance(seconds=outbox.FIRST_PAUSE.total_seconds())
    assert await deliver_due(hood.engine, "test", hood.clock.now(), working) == 1
    assert delivered == [action]
    hood.clock.advance(days=1)
    assert await deliver_due(hood.engine, "test", hood.clock.now(), working) == 0


async def test_each_action_of_a_batch_is_marked_sent_as_it_goes(hood: Neighbourhood) -> None:
    """A crash in the middle of a batch: what already went out is not sent again after the restart."""
    from datetime import timedelta

    from bot.delivery import Lanes
    from scheduler.sweep import deliver_due
    from storage.db import session

    actions = [Outgoing(Kind.SEND, Text("help"), service="telegram", chat_id=f"-10{n}") for n in range(3)]
    with session(hood.engine) as db:
        outbox.put(db, actions, hood.clock.now())
        db.commit()
    carried: list[str] = []

    class Crash(BaseException):
        """kill -9, as far as a test can: nothing after it runs."""

    async def carry(action: Outgoing) -> None:
        if carried:
            raise Crash
        carried.append(action.chat_id)

    lanes = Lanes("telegram", hood.engine, hood.clock, lambda: carry, name="Test")

    async def deliver(batch: list[Outgoing]) -> None:
        await lanes.run(batch)

    with pytest.raises(Crash):
        await deliver_due(hood.engine, "first", hood.clock.now(), deliver)
    hood.clock.advance(minutes=2)  # the lease runs out: another process takes over what is left
    again: list[Outgoing] = []

    async def collect(batch: list[Outgoing]) -> None:
        again.extend(batch)

    assert await deliver_due(hood.engine, "second", hood.clock.now() + timedelta(seconds=1), collect) == 2
    assert carried == ["-100"] and [a.chat_id for a in again] == ["-101", "-102"]


async def test_parking_on_the_worker_thread_still_counts_the_tries(hood: Neighbourhood) -> None:
    """Parking runs on the core's worker; the count of tries must still reach it, or nothing is given up."""
    from datetime import timedelta

    from bot.delivery import Lanes, Undeliverable
    from storage.db import session

    with session(hood.engine) as db:
        outbox.put(db, [Outgoing(Kind.SEND, Text("help"), service="telegram", chat_id="-100")], hood.clock.now())
        db.commit()
    async def never(action: Outgoing) -> None:
        raise Undeliverable("network down")

    lanes = Lanes("telegram", hood.engine, hood.clock, lambda: never, name="Test", offload=hood.core.call)

    async def deliver(batch: list[Outgoing]) -> None:
        await lanes.run(batch)

    for _ in range(outbox.MAX_ATTEMPTS + 2):
        hood.clock.advance(hours=12)
        await deliver_due(hood.engine, "me", hood.clock.now(), deliver, offload=hood.core.call)
    with session(hood.engine) as db:
        rows = db.exec(select(Outbox)).all()
    assert any(row.given_up for row in rows), "an action that always fails is given up in the end"
    assert max(row.attempts for row in rows) == outbox.MAX_ATTEMPTS
    assert timedelta(0) < hood.clock.now() - min(row.created_at for row in rows)


async def test_rows_handed_back_together_keep_their_order_when_the_first_fails_again(hood: Neighbourhood) -> None:
    """After a restart two queued messages of one group come back; the first cannot go: the second waits."""
    from bot.delivery import Item, Lanes, Undeliverable
    from storage.db import session

    actions = [Outgoing(Kind.SEND, Text("order.unknown", {"number": n}), service="telegram", chat_id="-100")
               for n in (1, 2)]
    with session(hood.engine) as db:
        rows = outbox.put(db, actions, hood.clock.now(), owner="gone")
        db.commit()
    posted: list[int] = []

    async def carry(action: Outgoing) -> None:
        if action.text.params["number"] == 1:
            raise Undeliverable("429 past its budget")
        posted.append(action.text.params["number"])

    lanes = Lanes("telegram", hood.engine, hood.clock, lambda: carry, name="Test")
    lanes.submit([Item(action, row, 0) for row, action in zip(rows, actions, strict=True)])
    await asyncio.wait_for(lanes.idle(), 5)
    assert posted == [], "the second message does not overtake the first"
    with session(hood.engine) as db:
        waiting = db.exec(select(Outbox).where(col(Outbox.sent_at).is_(None)).order_by(col(Outbox.id))).all()
    assert [row.id for row in waiting] == rows and waiting[1].next_at >= waiting[0].next_at


def test_two_equal_actions_handed_back_together_keep_a_row_each() -> None:
    reminder = Outgoing(Kind.SEND, Text("remind.due", {"number": 7}), service="console", chat_id="群")
    with outbox.retrying([(11, reminder, 0), (12, reminder, 2)]):
        assert outbox.taken_row(reminder, adopt=True) == (11, 0)
        assert outbox.taken_row(reminder, adopt=True) == (12, 2), "the second is the other row, not the first again"
        assert outbox.taken_row(reminder, adopt=True) is None


class _HeldChat:
    """Lanes whose message "first" to chat -100 is being posted inline, and waits until `let_first_go`."""

    def __init__(self, hood: Neighbourhood) -> None:
        from bot.delivery import Lanes

        self.posted: list[str] = []
        self.first_is_going, self.first_may_finish = asyncio.Event(), asyncio.Event()
        self.lanes = Lanes("telegram", hood.engine, hood.clock, lambda: self._carry, name="Test")

    async def _carry(self, action: Outgoing) -> None:
        if action.text.key == "first":
            self.first_is_going.set()
            await self.first_may_finish.wait()
        self.posted.append(action.text.key)

    async def post_first(self) -> asyncio.Task[None]:
        running = asyncio.create_task(self.lanes.run([_to_the_chat("first")]))
        await self.first_is_going.wait()
        return running


def _to_the_chat(key: str) -> Outgoing:
    return Outgoing(Kind.SEND, Text(key), service="telegram", chat_id="-100")


async def test_what_comes_for_a_chat_while_a_message_is_posted_there_inline_goes_after_it(hood: Neighbourhood) -> None:
    """`run` posts here and now; a reply queued for the same chat meanwhile waits for it: a chat reads its
    messages in the order they were said."""
    held = _HeldChat(hood)
    running = await held.post_first()
    held.lanes.submit(held.lanes.items([_to_the_chat("second")]))
    await asyncio.sleep(0)  # a lane started now would post "second" before "first" has gone
    held.first_may_finish.set()
    await running
    await held.lanes.idle()
    assert held.posted == ["first", "second"]


async def test_lanes_are_not_idle_while_a_message_posted_inline_holds_a_chat(hood: Neighbourhood) -> None:
    held = _HeldChat(hood)
    running = await held.post_first()
    held.lanes.submit(held.lanes.items([_to_the_chat("second")]))
    idle = asyncio.create_task(held.lanes.idle())
    await asyncio.sleep(0)
    assert not idle.done(), "a message is being posted and another waits behind it"
    held.first_may_finish.set()
    await running
    await asyncio.wait_for(idle, 5)
    assert held.posted == ["first", "second"]


async def test_stopping_tells_a_run_waiting_behind_an_inline_post_that_it_was_not_posted(hood: Neighbourhood) -> None:
    held = _HeldChat(hood)
    first = await held.post_first()
    second = asyncio.create_task(held.lanes.run([_to_the_chat("second")]))
    await asyncio.sleep(0)  # it queues behind the first
    stopping = asyncio.create_task(held.lanes.stop(grace=0.1))
    held.first_may_finish.set()
    await asyncio.wait_for(asyncio.gather(first, second, stopping), 5)  # nobody is left waiting for good
