"""Nothing is lost when a send fails, and an action that always fails is given up in the end."""

from __future__ import annotations

from sqlmodel import select

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
