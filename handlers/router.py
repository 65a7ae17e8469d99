"""The core's front door: one `Incoming` in, the `Outgoing` actions back, every change stored first."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from handlers import dispatch, escalation, inbox, intake, leases, outbox, ownership, queries, rating, relabel, work
from handlers.buttons import Verb, read_press
from handlers.clock import Clock
from handlers.commands import Command, parse
from handlers.community import CommunityConfig
from handlers.directory import Directory
from handlers.privacy import shield
from handlers.protocol import CardRef, Contact, Incoming, Kind, Outgoing, Text
from handlers.roster import apply_roster
from handlers.triage import triage
from handlers.triage.ahead import TriageAhead, Verdicts
from handlers.triage.normalize import clean, fold, language_of, whole
from handlers.turn import Community, Turn
from storage import repo
from storage.db import DATABASE_AWAY, session
from storage.models import Chat, MessageLink, Order, Person

log = logging.getLogger(__name__)
T = TypeVar("T")
Queued = tuple[int | None, Outgoing]  # an action and its outbox row (None: not kept, a press's alert)
_SCORE = re.compile(r"[0-9]{1,3}")  # stars as typed; "②" or "²" are words, not numbers
_WORD = re.compile(r"[A-Za-z][a-z]{2,}[,.!?]*")  # an English word; codes (YG-A-3, LINLI-7KQ3), ids, "en" do not say
GROUP_COMMIT_MAX = 64  # updates in one transaction at most, so none waits long behind the others
MAX_TEXT = 64_000  # longer messages are kept up to this many characters
DEFAULT_BOT_NAMES = frozenset({"邻里助手", "linli"})


class _Kept:
    """What a group of updates records as delivered, marks handled and queues in the outbox, written when
    the group ends: three statements for the group instead of three or four for each update. The queued
    lists handed out get their outbox rows then."""

    def __init__(self) -> None:
        self._deliveries: list[tuple[str, str, str]] = []
        self._marks: list[int] = []
        self._queued: list[tuple[list[Queued], int, Outgoing]] = []
        self._owner = ""

    def delivered(self, incoming: Incoming) -> None:
        assert incoming.message_id
        self._deliveries.append((incoming.service, incoming.chat_id, incoming.message_id))

    def add(self, keep: Keep, actions: list[Outgoing]) -> list[Queued]:
        if keep.inbox_id is not None:
            self._marks.append(keep.inbox_id)
        queued: list[Queued] = [(None, action) for action in actions]
        self._queued += [(queued, i, action) for i, action in enumerate(actions) if action.kind is not Kind.ALERT]
        self._owner = keep.owner
        return queued

    def write(self, db: Session, now: datetime) -> None:
        if not repo.record_deliveries(db, self._deliveries, now):
            raise _Alone  # a message came twice: each goes alone, and the second finds the first
        if not inbox.all_marked_handled(db, self._marks, now):
            raise _Alone  # another process handled one of them meanwhile: each goes alone, and finds out which
        rows = outbox.put(db, [action for _, _, action in self._queued], now, owner=self._owner)
        for (queued, i, action), row in zip(self._queued, rows, strict=True):
            queued[i] = (row, action)


class _Alone(Exception):
    """An update of a group commit needs undoing: the group is rolled back and each goes on its own."""


@event.listens_for(Session, "after_flush")
def _count_flush(db: Session, _context: object) -> None:
    db.info[_FLUSHES] = db.info.get(_FLUSHES, 0) + 1


def _flushes(db: Session) -> int:
    """How often the session wrote so far: a query's autoflush empties db.new, so the count tells."""
    return db.info.get(_FLUSHES, 0)


_FLUSHES = "linli.flushes"


@dataclass(frozen=True, slots=True)
class Keep:
    """Where a handled update's results go: the inbox row to mark, the process that posts what is queued."""

    inbox_id: int | None
    owner: str


class Linli:
    """The bot's core, independent of any chat service."""

    def __init__(self, engine: Engine, config: CommunityConfig, clock: Clock,
                 bot_names: frozenset[str] = frozenset(), *, judge_ahead: bool = False) -> None:
        self.engine = engine
        self.clock = clock
        self.bot_names = frozenset(name.lower() for name in bot_names | DEFAULT_BOT_NAMES)
        self._mention = re.compile("|".join(f"@{re.escape(name)}" for name in self.bot_names), re.I)
        with session(engine) as db:
            self.community: Community = apply_roster(db, config)
        self.directory = Directory(self.community.unsorted_grid_id)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="linli-core")  # one, as SQLite wants
        self._aside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="linli-aside")
        self._gathering: list[tuple[list[tuple[Incoming, int | None]], asyncio.Future[list[list[Queued]]]]] = []
        self._gatherer: asyncio.Task[None] | None = None
        self.owner = leases.new_owner()  # this process, as the holder of leases on outbox rows and lanes
        self._ahead = TriageAhead() if judge_ahead else None  # started by `ready`

    def add_bot_names(self, *names: str) -> None:
        """Names the bot also answers to, learnt when a transport logs in (the bot's @username):
        "@name …" addresses the bot and "/report@name" is a command for it."""
        self.bot_names = self.bot_names | frozenset(name.lower() for name in names if name)
        longest_first = sorted(self.bot_names, key=len, reverse=True)  # "@linli_bot" before "@linli"
        self._mention = re.compile("|".join(f"@{re.escape(name)}" for name in longest_first), re.I)

    # --- messages in ---------------------------------------------------------------------
    def handle(self, incoming: Incoming) -> list[Outgoing]:
        """One message or press in, what to say back: for a caller that posts it at once (the console)."""
        return [action for _, action in self._handle(incoming, None)]

    def take(self, incoming: Incoming, inbox_id: int | None, owner: str) -> list[Queued]:
        """One stored update in. In the transaction that stores what it changed, the update is marked handled
        and what to say is queued in the outbox, leased to `owner` who posts it now: a crash loses neither.
        Each action comes with its outbox row; alerts (a press's answer, which cannot outlive it) with None.
        An update that changed nothing (chatter, a second delivery) is left for `inbox.handled`."""
        return self._handle(incoming, Keep(inbox_id, owner))

    def take_many(self, updates: list[tuple[Incoming, int | None]], owner: str) -> list[list[Queued]]:
        """`take` for several stored updates in one transaction (group commit): a busy moment costs one commit,
        not one per update. When one of them has to be undone (it failed, or came twice), the group is rolled
        back and each goes again in a transaction of its own."""
        return self._handle_all([(incoming, Keep(inbox_id, owner)) for incoming, inbox_id in updates])

    def _handle(self, incoming: Incoming, keep: Keep | None) -> list[Queued]:
        return self._handle_all([(incoming, keep)])[0]

    def _handle_all(self, batch: list[tuple[Incoming, Keep | None]]) -> list[list[Queued]]:
        now = self.clock.now()
        grouped = len(batch) > 1
        batch = [(_whole(incoming), keep) for incoming, keep in batch]
        with self._judged_ahead(batch) as ahead, session(self.engine) as db:
            try:
                kept = _Kept() if grouped else None
                results = [self._one(db, incoming, keep, now, kept=kept, ahead=ahead) for incoming, keep in batch]
                if kept is not None:
                    kept.write(db, now)
                db.commit()
                return results
            except Exception as error:  # one of the group must be undone, or the commit failed: one by one
                self._roll_back(db)
                if not grouped:
                    raise
                if not isinstance(error, _Alone):
                    log.warning("a group of %s updates failed to commit (%s); each goes alone", len(batch), error)
        return self._one_by_one(batch)

    def _judged_ahead(self, batch: list[tuple[Incoming, Keep | None]]) -> contextlib.AbstractContextManager[
            Verdicts | None]:
        """A group's texts judged in the triage process while the core works through the group. The first is
        judged here: the core reaches it before the process could, and the process starts on the second."""
        if self._ahead is None or len(batch) < 2:
            return contextlib.nullcontext()
        return self._ahead.judging([None, *(self._judged_text(incoming) for incoming, _ in batch[1:])],
                                   intake.asked_of(self.community))

    def _judged_text(self, incoming: Incoming) -> str | None:
        """What `_route` will hand triage for this update if it is a resident's message, as most are; None for
        a press, a command, a direct message or an @-mention (judged as it comes, if at all)."""
        if incoming.button or incoming.is_direct or incoming.mentions_bot:
            return None
        text = clean(incoming.text)[:MAX_TEXT]
        return None if parse(text, self.bot_names) is not None else text or "[图片]"

    def _one_by_one(self, batch: list[tuple[Incoming, Keep | None]]) -> list[list[Queued]]:
        """Each update of a group in a transaction of its own. When one fails (the database went away), those
        before it are stored and handled, but the caller hears only the failure and will not post what they
        queued: their outbox rows are handed back at once for the sweep to post (within a second), instead of
        waiting out their lease."""
        done: list[list[Queued]] = []
        try:
            for incoming, keep in batch:
                done.append(self._handle(incoming, keep))
        except Exception:
            for (_, keep), queued in zip(batch, done, strict=False):
                rows = [row for row, _ in queued if row is not None]
                if keep is not None and rows:
                    with contextlib.suppress(*DATABASE_AWAY):  # away still: their leases run out instead
                        outbox.release(self.engine, rows, keep.owner)
            raise
        return done

    def _one(self, db: Session, incoming: Incoming, keep: Keep | None, now: datetime, *,
             kept: _Kept | None = None, ahead: Verdicts | None = None) -> list[Queued]:
        """One update, inside the caller's transaction. In a group (`kept`: what the group writes at its end),
        what needs undoing raises `_Alone`."""
        grouped = kept is not None

        def undo(*, wrote: bool = True) -> None:
            if not wrote:
                return  # nothing of this update is in the transaction: the others' stays
            if grouped:
                raise _Alone
            db.rollback()
            self.directory.forget()  # snapshots made in this transaction may name rows that are gone

        flushed_before = _flushes(db)
        turn = self._turn(db, incoming, now)
        turn.ahead = ahead
        try:
            self._route(turn)
            if not turn.out and _flushes(db) == flushed_before and not (db.new or db.dirty or db.deleted):
                undo(wrote=False)  # chatter: nothing to store, nothing to say, nothing to deduplicate
                return []
            # Recorded last, in the same transaction (a group's when the group ends): a second delivery of
            # this message either waits for the first to commit and then finds it here, or finds it already.
            if incoming.message_id:
                if kept is not None:
                    kept.delivered(incoming)
                elif not repo.record_delivery(db, incoming.service, incoming.chat_id, incoming.message_id, now):
                    undo()
                    return []
            queued = self._keep(db, keep, shield(turn.out), now, kept)
            if queued is None:  # another process handled this update meanwhile
                undo()
                return []
            db.flush()
            return queued
        except _Alone:
            raise
        except IntegrityError:
            undo()
            if incoming.message_id and repo.was_delivered(db, incoming.service, incoming.chat_id,
                                                          incoming.message_id):
                log.info("dropped a duplicate delivery of %s", incoming.message_id)
                return []
            log.exception("could not store what %r asked for", incoming)  # not a duplicate: say so
        except DATABASE_AWAY:
            raise  # not the update's fault: the transaction is rolled back and the update tried again later
        except Exception:
            undo()
            log.exception("could not handle %r", incoming)
        return self._keep(db, keep, [_sorry(incoming, turn.lang)], now) or []

    @staticmethod
    def _keep(db: Session, keep: Keep | None, actions: list[Outgoing], now: datetime,
              kept: _Kept | None = None) -> list[Queued] | None:
        """Queue what to say in the outbox and mark the update handled, in the caller's transaction; in a
        group, when the group ends (`_Kept`)."""
        if keep is None:
            return [(None, action) for action in actions]
        if kept is not None:
            return kept.add(keep, actions)
        if keep.inbox_id is not None and not inbox.mark_handled(db, keep.inbox_id, now):
            return None
        kept = [action for action in actions if action.kind is not Kind.ALERT]
        rows = iter(outbox.put(db, kept, now, owner=keep.owner))
        return [(None if action.kind is Kind.ALERT else next(rows), action) for action in actions]

    def _roll_back(self, db: Session) -> None:
        db.rollback()
        self.directory.forget()  # snapshots made in this transaction may name rows that are gone

    def _turn(self, db: Session, incoming: Incoming, now: datetime) -> Turn:
        chat = self.directory.chat(db, incoming)
        person = self.directory.person(db, incoming)
        lang = person.lang or chat.lang or language_of(self._own_words(incoming.text), self.community.lang)
        return Turn(db, now, incoming, self.community, chat, person, lang, self.directory)

    def _own_words(self, text: str) -> str:
        """What the person wrote in their own words: a command's name does not count (where every
        command is Latin, "/help" says nothing of the language its sender reads), its arguments do."""
        command = parse(text, self.bot_names)
        if command is None:
            return clean(text)
        return " ".join(word for word in command.words if _WORD.fullmatch(word) or not word.isascii())

    def _route(self, turn: Turn) -> None:
        incoming = turn.incoming
        text = clean(incoming.text)[:MAX_TEXT]
        if incoming.button:
            self._press(turn, incoming.button)
            return
        command = parse(text, self.bot_names)
        if command is not None:
            self._command(turn, command)
            return
        replied = self._replied_order(turn)
        if incoming.photos and replied is not None:
            work.done(turn, replied, incoming.photos)
            return
        if intake.is_follow(text):
            target = replied or intake.latest_open_order(turn)
            if target is not None and target.reporter_id != turn.person.id:
                intake.follow(turn, target)
            return
        if incoming.is_direct and not incoming.mentions_bot:
            turn.reply("direct.hint")
            return
        if incoming.mentions_bot:
            text = self._mention.sub("", text).strip()
        intake.report(turn, text, explicit=incoming.mentions_bot)

    def _replied_order(self, turn: Turn) -> Order | None:
        if not turn.incoming.reply_to:
            return None
        return repo.order_for_message(turn.db, turn.incoming.service, turn.incoming.chat_id,
                                      turn.incoming.reply_to)

    # --- commands --------------------------------------------------------------------------
    def _command(self, turn: Turn, command: Command) -> None:
        verb = command.verb
        if verb is None:
            turn.reply("unknown_command", name=command.name)
            return
        simple: dict[str, Callable[[], None]] = {
            "help": lambda: queries.help_text(turn),
            "mine": lambda: queries.mine(turn),
            "open": lambda: queries.open_orders(turn),
            "stats": lambda: queries.rates(turn, _first(command.words)),
            "points": lambda: queries.points(turn),
            "lang": lambda: queries.set_language(turn, _first(command.words)),
            "bind": lambda: dispatch.bind(turn, _first(command.words)),
            "owner": lambda: ownership.claim(turn, _first(command.words)),
        }
        if verb in simple:
            simple[verb]()
            return
        if verb == "report":
            intake.report(turn, command.rest, explicit=True)
            return
        order = self._order_of(turn, command)
        if order is None:
            return
        self._order_command(turn, verb, command, order)

    def _order_of(self, turn: Turn, command: Command) -> Order | None:
        numbers = command.numbers
        if numbers:
            order = repo.order_by_number(turn.db, self.community.grid_id, numbers[0])
            if order is None:
                turn.reply("order.unknown", number=numbers[0])
            return order
        order = self._replied_order(turn)
        if order is None:
            turn.reply(f"usage.{command.verb}")
        return order

    def _order_command(self, turn: Turn, verb: str, command: Command, order: Order) -> None:
        words = command.words
        match verb:
            case "assign":
                target = command.mentions[0] if command.mentions else " ".join(words) or None
                dispatch.assign(turn, order, target)
            case "accept":
                work.accept(turn, order)
            case "return":
                dispatch.give_back(turn, order, None, words)
            case "claim":
                work.claim(turn, order)
            case "done":
                work.done(turn, order, turn.incoming.photos)
            case "rate":
                score = next((int(fold(w)) for w in words if _SCORE.fullmatch(fold(w))), None)
                comment = " ".join(w for w in words if not _SCORE.fullmatch(fold(w))) or None
                rating.rate(turn, order, score, comment)
            case "status":
                queries.status(turn, order)
            case "cancel":
                dispatch.cancel(turn, order, " ".join(words) or None)
            case "merge":
                numbers = command.numbers
                into = repo.order_by_number(turn.db, self.community.grid_id, numbers[1]) if len(numbers) > 1 else None
                if into is None:
                    turn.reply("usage.merge")
                    return
                dispatch.merge(turn, order, into)
            case "escalate":
                escalation.escalate(turn, order, " ".join(words) or None)
            case "report_back":
                escalation.report_back(turn, order)
            case "follow":
                intake.follow(turn, order)
            case "arrive":
                work.arrive(turn, order)
            case "plan":
                work.plan(turn, order, " ".join(words) or None)
            case "wait":
                work.wait(turn, order, " ".join(words) or None)
            case "resume":
                work.resume(turn, order)
            case "correct":
                relabel.correct(turn, order, words)

    # --- buttons ---------------------------------------------------------------------------
    def _press(self, turn: Turn, data: str) -> None:
        press = read_press(data)
        if press is None:
            turn.alert("button.stale")
            return
        answer = _ANSWERS.get(press.verb)  # a yes or no to a question the bot asked (a prompt row)
        if answer is not None:
            answer(turn, press.ident, press.arg == "y")
            return
        order = turn.db.get(Order, press.ident)
        if order is None or order.community_id != self.community.grid_id:
            turn.alert("button.stale")
            return
        match press.verb:
            case Verb.ASSIGN:
                dispatch.assign_button(turn, order, press.arg)
            case Verb.ACCEPT:
                work.accept(turn, order)
            case Verb.RETURN:
                dispatch.give_back(turn, order, press.arg, [])
            case Verb.CLAIM:
                work.claim(turn, order)
            case Verb.DONE:
                work.done(turn, order, ())
            case Verb.RATE:
                rating.rate(turn, order, press.number)
            case Verb.CANCEL:
                dispatch.cancel(turn, order, "undo")
            case Verb.FOLLOW:
                intake.follow(turn, order)
            case Verb.STATUS:
                queries.status(turn, order)
            case Verb.VISIT:
                rating.visit_answer(turn, order, held=press.arg == "ok")

    # --- messages out ----------------------------------------------------------------------
    def sent(self, action: Outgoing, message_ref: str) -> None:
        """A transport posted `action` as `message_ref`: replies to it now act on its order."""
        with session(self.engine) as db:
            self._link(db, action, message_ref)
            db.commit()

    @staticmethod
    def _link(db: Session, action: Outgoing, message_ref: str) -> None:
        if action.order_id is not None and action.kind in (Kind.SEND, Kind.CARD):
            db.add(MessageLink(order_id=action.order_id, service=action.service, chat=action.chat_id,
                               message_ref=message_ref, is_card=action.kind is Kind.CARD))

    def posted(self, row_id: int | None, links: list[tuple[Outgoing, str]]) -> None:
        """An outbox row went out (`links`: the messages it became): both written in one transaction, the
        moment it happened, so a crash right after repeats it as rarely as can be."""
        with session(self.engine) as db:
            for action, message_ref in links:
                self._link(db, action, message_ref)
            if row_id is not None:
                outbox.mark_sent_in(db, row_id, self.clock.now())
            db.commit()

    def cards(self, order_id: int, service: str) -> list[CardRef]:
        """Where an order's cards stand on one service, to edit them in place."""
        with session(self.engine) as db:
            return [CardRef(link.chat, link.message_ref, link.is_card) for link in repo.card_links(db, order_id)
                    if link.service == service]

    def contact(self, person_id: int, service: str) -> Contact | None:
        """How to reach a person on `service`; None when there is no such person."""
        with session(self.engine) as db:
            person = db.get(Person, person_id)
            if person is None:
                return None
            identity = repo.identities(db, [person_id], service).get(person_id)
            return Contact(person_id, person.name, person.lang, identity.external_id if identity else None,
                           identity.direct_chat if identity else None)

    # --- the async seam ------------------------------------------------------------------
    async def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `work` (the core, its storage, the model) on the core's one worker thread: transports and the
        scheduler await it, and the event loop never waits on a database or a slow computation."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, functools.partial(work, *args, **kwargs))

    async def aside(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run small bookkeeping (marking a message sent) on a thread of its own, so it is written the moment
        the message went out rather than after whatever the core is busy with: the shorter that moment, the
        rarer a message a crash makes posted twice."""
        return await asyncio.get_running_loop().run_in_executor(self._aside, functools.partial(work, *args, **kwargs))

    async def take_async(self, updates: list[tuple[Incoming, int | None]]) -> list[list[Queued]]:
        """`take_many` on the worker, joined with what other chats hand in meanwhile: while the worker is busy,
        updates gather and then go in one transaction (group commit), each chat's still in its order."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[list[Queued]]] = loop.create_future()
        self._gathering.append((updates, done))
        if self._gatherer is None or self._gatherer.done():
            self._gatherer = loop.create_task(self._take_gathered(), name="linli-group-commit")
        return await done

    async def _take_gathered(self) -> None:
        while self._gathering:
            group: list[tuple[list[tuple[Incoming, int | None]], asyncio.Future[list[list[Queued]]]]] = []
            while self._gathering and (not group or sum(len(u) for u, _ in group) < GROUP_COMMIT_MAX):
                group.append(self._gathering.pop(0))
            try:
                results = await self.call(self.take_many, [u for updates, _ in group for u in updates], self.owner)
            except Exception as error:
                for _, done in group:
                    if not done.done():
                        done.set_exception(error)
                continue
            for updates, done in group:
                mine, results = results[:len(updates)], results[len(updates):]
                if not done.done():
                    done.set_result(mine)

    async def warm_up(self) -> None:
        """`ready`, on the worker."""
        await self.call(self.ready)

    def ready(self) -> None:
        """Before the first message: load the triage model and its word cutter (about 0.3 s), then set aside
        everything start-up built (gc.freeze), so the collector's full passes no longer walk it: one such
        pass stalled a busy core ~100 ms."""
        if self._ahead is not None:
            self._ahead.start()  # it loads the model beside this
        triage("3栋2单元楼道灯坏了")
        gc.freeze()

    @property
    def judged_ahead(self) -> int:
        """Verdicts taken from the triage process so far."""
        return self._ahead.served if self._ahead is not None else 0

    def ahead_ready(self, timeout: float = 15.0) -> bool:
        """Wait until the triage process judges ahead (a benchmark measures the core at work)."""
        return self._ahead is not None and self._ahead.wait_ready(timeout)

    def close(self) -> None:
        """Stop what the core started: the triage process. The core's threads end with the process."""
        if self._ahead is not None:
            self._ahead.stop()

    def order_chat(self, order_id: int, service: str) -> str | None:
        """The chat an order was reported in, when it is on `service` (not a direct chat)."""
        with session(self.engine) as db:
            order = db.get(Order, order_id)
            chat = db.get(Chat, order.chat_id) if order and order.chat_id else None
            return chat.external_id if chat and chat.service == service and not chat.is_direct else None

    def order_for_message(self, service: str, chat: str, message_ref: str) -> int | None:
        """The order a posted message is about (a reaction on a card acts on that order)."""
        with session(self.engine) as db:
            order = repo.order_for_message(db, service, chat, message_ref)
            return order.id if order else None

    def may_invite(self, service: str, external_id: str) -> bool:
        """Whether this account may add the bot to a group, by the community's `invite` rule."""
        if self.community.config.community.invite == "anyone":
            return True
        with session(self.engine) as db:
            identity = repo.identity_of(db, service, external_id)
            if identity is None:
                return False
            return bool(repo.role_grid_ids(db, identity.person_id, "dispatcher")
                        | repo.role_grid_ids(db, identity.person_id, "supervisor"))


_ANSWERS: dict[Verb, Callable[[Turn, int, bool], None]] = {
    Verb.PROMPT: intake.answer_prompt,
    Verb.DUPLICATE: intake.answer_duplicate,
    Verb.EMERGENCY: intake.answer_emergency,
    Verb.BIND: dispatch.answer_binding,
}


def _whole(incoming: Incoming) -> Incoming:
    """The message with any broken character (a lone surrogate) made whole; the same object when none is."""
    text, name = whole(incoming.text), whole(incoming.sender_name)
    title = whole(incoming.chat_title) if incoming.chat_title else incoming.chat_title
    if text is not incoming.text or name is not incoming.sender_name or title is not incoming.chat_title:
        return replace(incoming, text=text, sender_name=name, chat_title=title)
    return incoming


def _first(words: list[str]) -> str | None:
    return words[0] if words else None


def _sorry(incoming: Incoming, lang: str) -> Outgoing:
    return Outgoing(Kind.SEND, Text("error.internal"), lang=lang, service=incoming.service,
                    chat_id=incoming.chat_id, reply_to=incoming.message_id)
