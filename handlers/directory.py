"""Who and where: chats and people as small snapshots, cached so a message costs no look-ups.

Every message names its chat and its sender; reading both from the database each time was most of
the cost of intake. Snapshots live for `TTL` so a change made by another process (a chat bound
elsewhere) shows up soon; changes made here replace the snapshot at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from handlers.protocol import Incoming
from handlers.triage.normalize import clean
from storage import repo
from storage.models import Chat, Identity, Person

TTL = 60.0  # seconds a snapshot is trusted
MAX_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class ChatInfo:
    id: int
    service: str
    external_id: str
    grid_id: int
    bound: bool
    is_direct: bool
    lang: str | None


@dataclass(frozen=True, slots=True)
class PersonInfo:
    id: int
    name: str
    lang: str | None
    direct_chat: str | None


class Directory:
    def __init__(self, unsorted_grid_id: int) -> None:
        self.unsorted_grid_id = unsorted_grid_id
        self._chats: dict[tuple[str, str], tuple[float, ChatInfo]] = {}
        self._people: dict[tuple[str, str], tuple[float, PersonInfo]] = {}

    # --- chats --------------------------------------------------------------------------------
    def chat(self, db: Session, incoming: Incoming) -> ChatInfo:
        key = (incoming.service, incoming.chat_id)
        cached = self._fresh(self._chats, key)
        if cached is not None:
            return cached
        row = repo.chat_by_external(db, incoming.service, incoming.chat_id)
        if row is None:
            row = Chat(service=incoming.service, external_id=incoming.chat_id, title=incoming.chat_title,
                       grid_id=self.unsorted_grid_id, is_direct=incoming.is_direct)
            db.add(row)
            db.flush()
        info = ChatInfo(row.id or 0, row.service, row.external_id, row.grid_id, row.bound, row.is_direct, row.lang)
        self._store(self._chats, key, info)
        return info

    def bind(self, db: Session, chat: ChatInfo, grid_id: int) -> ChatInfo:
        db.execute(update(Chat).where(col(Chat.id) == chat.id).values(grid_id=grid_id, bound=True))
        info = replace(chat, grid_id=grid_id, bound=True)
        self._store(self._chats, (chat.service, chat.external_id), info)
        return info

    # --- people -------------------------------------------------------------------------------
    def person(self, db: Session, incoming: Incoming) -> PersonInfo:
        key = (incoming.service, incoming.sender_id)
        info = self._fresh(self._people, key)
        if info is None:
            info = self._load_person(db, incoming)
            self._store(self._people, key, info)
        if incoming.is_direct and info.direct_chat != incoming.chat_id:
            db.execute(update(Identity).where(Identity.service == incoming.service,
                                              Identity.external_id == incoming.sender_id)
                       .values(direct_chat=incoming.chat_id))
            info = replace(info, direct_chat=incoming.chat_id)
            self._store(self._people, key, info)
        return info

    def _load_person(self, db: Session, incoming: Incoming) -> PersonInfo:
        identity = repo.identity_of(db, incoming.service, incoming.sender_id)
        if identity is not None:
            person = db.get(Person, identity.person_id)
            assert person is not None and person.id is not None
            return PersonInfo(person.id, person.name, person.lang, identity.direct_chat)
        name = clean(incoming.sender_name)[:128] or incoming.sender_id
        person = self._named_in_roster(db, incoming.service, name) if incoming.known_by_name else None
        if person is None:
            person = Person(name=name)
            db.add(person)
            db.flush()
        assert person.id is not None
        db.add(Identity(person_id=person.id, service=incoming.service, external_id=incoming.sender_id))
        return PersonInfo(person.id, person.name, person.lang, None)

    @staticmethod
    def _named_in_roster(db: Session, service: str, name: str) -> Person | None:
        """The person of that name with no account on `service` yet: a local chat's 张书记 is linli.toml's."""
        known = select(Identity.person_id).where(Identity.service == service)
        return db.exec(select(Person).where(Person.name == name, col(Person.id).not_in(known))
                       .order_by(col(Person.id))).first()

    def set_language(self, db: Session, person: PersonInfo, lang: str) -> PersonInfo:
        db.execute(update(Person).where(col(Person.id) == person.id).values(lang=lang))
        changed = replace(person, lang=lang)
        for key, (stamp, info) in list(self._people.items()):
            if info.id == person.id:
                self._people[key] = (stamp, changed)
        return changed

    def forget(self) -> None:
        """Drop every snapshot (after a rollback, or when the roster changes)."""
        self._chats.clear()
        self._people.clear()

    # --- the cache itself ---------------------------------------------------------------------
    @staticmethod
    def _fresh(table: dict[tuple[str, str], tuple[float, Any]], key: tuple[str, str]) -> Any:
        entry = table.get(key)
        if entry is not None and time.monotonic() - entry[0] < TTL:
            return entry[1]
        return None

    @staticmethod
    def _store(table: dict[tuple[str, str], tuple[float, Any]], key: tuple[str, str], value: object) -> None:
        if len(table) >= MAX_ENTRIES:
            table.clear()
        table[key] = (time.monotonic(), value)
