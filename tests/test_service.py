"""`linli run` hands each action to the transport of its service; a direct message to one service only."""

from __future__ import annotations

from bot.service import route
from handlers.protocol import Incoming, Kind, Outgoing, Text
from storage import repo
from tests.neighbourhood import Neighbourhood


class Recording:
    def __init__(self, service: str) -> None:
        self.service = service
        self.got: list[Outgoing] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, actions: list[Outgoing], *, wait: bool = True) -> None:
        self.got.extend(actions)


async def test_actions_go_to_their_own_service_and_a_dm_to_one_service(hood: Neighbourhood) -> None:
    hood.core.handle(Incoming(service="matrix", chat_id="!room", sender_id="@wang:example.org",
                              sender_name="王阿姨", text="/帮助"))
    with hood.db() as db:
        wang = repo.identity_of(db, "matrix", "@wang:example.org")
    assert wang is not None
    telegram, matrix = Recording("telegram"), Recording("matrix")
    deliver = route(hood.core, [telegram, matrix])
    to_group = Outgoing(Kind.SEND, Text("help"), service="telegram", chat_id="-100")
    card_edit = Outgoing(Kind.UPDATE_CARD, Text("help"), order_id=1)
    digest = Outgoing(Kind.DIRECT, Text("help"), person_id=wang.person_id)
    await deliver([to_group, card_edit, digest])
    assert telegram.got == [to_group, card_edit]
    assert matrix.got == [card_edit, digest], "the person is on Matrix only: the DM goes there, once"
