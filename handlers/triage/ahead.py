"""Triage judged ahead, in a process of its own.

A busy moment brings the core a group of updates at once. While it files the first of them, the rest are
judged on the machine's other core: triage is about a quarter of an update's work and depends on nothing
but the text, the community's landmarks, buildings and strictness, and the model, so nothing else has to
travel. The core takes each verdict when it reaches that update. When the process is not ready yet, is
slow, or has died, the core judges the update itself: a verdict is never missing, at worst it is not
ahead. A process that died is started again after a while.

The core never waits on the process: a group's texts are sent without blocking (what the socket does not
take yet goes later), and verdicts are read as they have come. The process always works on the newest
group (an older one is over by the time a newer comes), so it cannot fall behind for long; one that owes
an answer and shows no sign of life for `WAIT` seconds is killed. It judges with the very model and code
the core loaded: it starts by naming its model file's fingerprint and its code's, each group names the
model's, and a process that does not match refuses or is refused.
It reads its socket until the core's end closes, so it ends with the core, even when the core is killed.

Run as `python -P -m handlers.triage.ahead FD MODEL` by `TriageAhead`; not a command for people.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import logging
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.triage import MAX_TRIAGE_CHARS, Strictness, Triage, current_model, current_model_path, triage, use_model
from handlers.triage.location import Location

log = logging.getLogger(__name__)
READY = "ready"
REFUSED = -1  # a message's index when the process refuses a group: its model is not the core's
WAIT = 2.0  # seconds: a process that owes an answer and says nothing for this long is hung, and let go
START_WAIT = 15.0  # seconds `wait_ready` waits for a process that loads the model
RESTART_AFTER = 30.0  # seconds: a process that died or hung is started again no sooner
_PACKAGES = Path(__file__).resolve().parents[2]  # where `handlers` is importable from, for the process
_SIZE = struct.Struct("!I")  # each message on the socket: its length, then its pickle
NICENESS = 10  # the process's priority below the core's: on a CPU both need, the core goes first


def _code_digest() -> str:
    """The triage code as it is on disk when imported: a process started after an upgrade in place would
    judge with other code than the core loaded, so it says which it has, and the core compares."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


CODE = _code_digest()


@dataclass(frozen=True, slots=True)
class Asked:
    """What a verdict depends on besides the text and the model: the community's triage settings."""

    landmarks: tuple[str, ...]
    buildings: frozenset[str] | None
    strictness: Strictness


class TriageAhead:
    """The triage process, and the one group of updates it is judging for the core."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one group at a time; a second caller meanwhile judges on its own
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: _Framed | None = None
        self._ready = False
        self._closed = False
        self._refused = False  # the model file changed since the core loaded it: not again until a restart
        self._group = 0  # the last group sent
        self._answered = 0  # the newest group the process has said anything about
        self._heard_at = 0.0  # when the process last said anything
        self._verdicts: dict[int, Triage | None] = {}  # the current group's, by the index of its first text
        self._lost_at = float("-inf")
        self.served = 0  # verdicts the core took from the process

    @property
    def pid(self) -> int | None:
        """The process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the process; it loads the model on its own (about half a second) and is used once ready."""
        self._closed = False
        if self._socket is not None:
            return
        here, there = socket.socketpair()
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(_PACKAGES), os.environ.get("PYTHONPATH")]))}
        try:
            self._process = subprocess.Popen(
                # -P: `handlers` from where the core's came (PYTHONPATH), not from the working directory
                [sys.executable, "-P", "-m", "handlers.triage.ahead", str(there.fileno()), str(current_model_path())],
                pass_fds=(there.fileno(),), stdin=subprocess.DEVNULL, env=environment,
                start_new_session=True)  # a Ctrl-C in the terminal is the core's to handle, not the process's
        except OSError as error:
            log.warning("triage ahead: could not start its process (%s); the core judges every update", error)
            here.close()
            self._lost_at = time.monotonic()
            return
        finally:
            there.close()
        self._socket, self._ready, self._heard_at = _Framed(here), False, time.monotonic()
        self._group = self._answered = 0

    def wait_ready(self, timeout: float = START_WAIT) -> bool:
        """Until the process has loaded the model (for a benchmark, which measures it at work)."""
        deadline = time.monotonic() + timeout
        while not self._usable():
            if self._socket is None or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Stop the process for good (`start` starts it again)."""
        with self._lock:  # a group being judged on another thread finishes first
            self._closed = True
            framed, process = self._socket, self._process
            self._socket, self._process, self._ready = None, None, False
        if framed is not None:
            framed.close()  # the process reads the end of its socket and leaves
        if process is not None:
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @contextmanager
    def judging(self, texts: Sequence[str | None], asked: Asked) -> Iterator[Verdicts | None]:
        """Have `texts` judged in their order (None: nothing to judge); yields None when the process cannot
        take them now, and the core judges every update itself."""
        wanted: dict[str, int] = {}
        for index, text in enumerate(texts):
            if text is not None:
                wanted.setdefault(text, index)
        if not wanted or not self._lock.acquire(blocking=False):
            yield None
            return
        try:
            if not self._usable() or not self._send(wanted, asked):
                yield None
                return
            yield Verdicts(self, wanted, asked)
        finally:
            self._lock.release()

    def _usable(self) -> bool:
        if self._socket is None:
            if (not self._closed and not self._refused and self._lost_at > 0
                    and time.monotonic() - self._lost_at > RESTART_AFTER):
                self.start()
            return False
        if not self._ready:
            messages = self._socket.received()
            if messages is None:
                self._lose("its process ended while it loaded the model")
                return False
            for message in messages:  # ("ready", its model's fingerprint, its code's) or ("refused", why)
                if message != (READY, current_model().fingerprint, CODE):
                    why = (f"its process could not load the model ({message[1]})" if message[0] != READY else
                           "its model file or Linli's code is not what the core loaded (changed since it started?)")
                    self._refused = True
                    self._lose(f"{why}; restart Linli to judge ahead again")
                    return False
                self._ready = True
        return self._ready

    def _send(self, wanted: dict[str, int], asked: Asked) -> bool:
        """Hand the process a group, without waiting: False when it has not taken the last one yet."""
        framed = self._socket
        assert framed is not None
        if not self._listen() or not framed.flush():
            return False  # gone, or the socket is full: this group is judged by the core
        try:
            model = current_model()
            self._group += 1
            self._verdicts = {}
            # triage reads a text's first MAX_TRIAGE_CHARS only: the rest need not travel
            framed.send((self._group, str(current_model_path()), model.fingerprint,
                         [(index, text[:MAX_TRIAGE_CHARS]) for text, index in wanted.items()], asked))
        except OSError as error:
            self._lose(f"could not hand it texts ({error})")
            return False
        return True

    def verdict(self, index: int) -> Triage | None:
        """The verdict on the group's text at `index` if it has come; None: not yet (the core judges that
        text itself rather than wait: it reaches a group's first texts before the process does)."""
        if index not in self._verdicts and not self._listen():
            return None
        if index not in self._verdicts:
            return None
        verdict = self._verdicts[index]
        self.served += verdict is not None
        return verdict

    def _listen(self) -> bool:
        """Hand over what waits to be sent and take in what has come, without waiting; let a process go that
        has ended, refuses, or owes an answer and has shown no sign of life (read nothing, said nothing)
        for `WAIT` seconds. False when there is no process."""
        framed = self._socket
        if framed is None:
            return False
        try:
            framed.flush()
            messages = framed.received()
        except OSError:
            messages = None
        if messages is None:
            self._lose("its process ended")
            return False
        if messages:
            return self._heard(messages)
        owed = self._answered < self._group
        if owed and time.monotonic() - max(self._heard_at, framed.progress_at) > WAIT:
            self._lose(f"no answer for {WAIT:.0f} s")
            return False
        return True

    def _heard(self, messages: list[Any]) -> bool:
        self._heard_at = time.monotonic()
        try:
            for group, index, verdict in messages:
                if index == REFUSED:
                    self._refused = True
                    self._lose("its model file is not the one the core loaded (changed since?); restart Linli "
                               "to judge ahead again")
                    return False
                self._answered = max(self._answered, group)
                if group == self._group:  # a verdict of an earlier group nobody waited for: let go
                    self._verdicts[index] = _triage(verdict)
        except (TypeError, ValueError) as error:  # not what this code sends: another version of it
            self._refused = True
            self._lose(f"it sent what the core cannot read ({error}); restart Linli to judge ahead again")
            return False
        return True

    def _lose(self, why: str) -> None:
        log.warning("triage ahead: %s; the core judges every update for now", why)
        framed, process = self._socket, self._process
        self._socket, self._process, self._ready = None, None, False
        self._lost_at = time.monotonic()
        if framed is not None:
            framed.close()
        if process is not None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # one stuck in the kernel is reaped at exit
                process.wait(timeout=5)


class Verdicts:
    """What the process judges for one group of updates: asked for by text, as the core reaches each."""

    def __init__(self, ahead: TriageAhead, wanted: dict[str, int], asked: Asked) -> None:
        self._ahead, self._wanted, self._asked = ahead, wanted, asked

    def get(self, text: str, *, explicit: bool, asked: Asked) -> Triage | None:
        """The verdict on `text`, if it was judged ahead as it is asked now; None: judge it here."""
        index = self._wanted.get(text)
        if index is None or explicit or asked != self._asked:
            return None
        return self._ahead.verdict(index)


class _Framed:
    """Messages over a socket, each its length and its pickle; nothing here waits unless asked to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._in = bytearray()  # received, not a whole message yet
        self._out = bytearray()  # to send, not taken by the socket yet
        self._ended = False  # the other end closed: what came before is still handed out, once
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self.progress_at = time.monotonic()  # when the socket last took bytes from here

    def send(self, message: object) -> None:
        data = pickle.dumps(message)
        self._out += _SIZE.pack(len(data)) + data
        self.flush()

    def flush(self) -> bool:
        """Send what the socket takes now; True when nothing is left to send."""
        while self._out:
            try:
                sent = self.sock.send(self._out, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            del self._out[:sent]
            self.progress_at = time.monotonic()
        return True

    def received(self, *, wait: bool = False) -> list[Any] | None:
        """Every whole message received by now; with `wait`, at least one. None once the other end closed
        and every message it sent before has been handed out."""
        while True:
            if not self._ended:
                try:
                    while True:  # everything that has come, without waiting
                        chunk = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
                        if not chunk:
                            self._ended = True
                            break
                        self._in += chunk
                except BlockingIOError:
                    pass
                except OSError:
                    self._ended = True
            messages = self._whole()
            if messages:
                return messages
            if self._ended:
                return None
            if not wait:
                return messages
            self._poll.poll()  # nothing whole yet: wait for more

    def _whole(self) -> list[Any]:
        buffer, messages, start = self._in, [], 0
        while len(buffer) - start >= _SIZE.size:
            (size,) = _SIZE.unpack_from(buffer, start)
            if len(buffer) - start - _SIZE.size < size:
                break
            start += _SIZE.size
            messages.append(pickle.loads(buffer[start:start + size]))
            start += size
        del buffer[:start]
        return messages

    def readable(self) -> bool:
        return bool(self._poll.poll(0))

    def close(self) -> None:
        self.sock.close()


# A verdict travels as a tuple of plain values: a fifth of the time to read back of a pickled dataclass.
_LOCATION = tuple(field.name for field in dataclasses.fields(Location))


def _plain(verdict: Triage | None) -> tuple[Any, ...] | None:
    if verdict is None:
        return None
    place = verdict.location
    return (verdict.is_request, verdict.category, verdict.urgency, verdict.matter,
            tuple(getattr(place, name) for name in _LOCATION), verdict.confidence, verdict.action,
            verdict.possible_emergency)


def _triage(plain: tuple[Any, ...] | None) -> Triage | None:
    if plain is None:
        return None
    is_request, category, urgency, matter, place, confidence, action, emergency = plain
    return Triage(is_request, category, urgency, matter, Location(*place), confidence, action, emergency)


def serve(sock: socket.socket, model_path: str) -> None:
    """The process: judge the newest group's texts in order, each verdict sent as soon as it is made; a
    newer group that arrives meanwhile is started at once (the older one is over for the core)."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    framed = _Framed(sock)
    try:
        try:
            path, model = model_path, use_model(model_path)
            triage("3栋2单元楼道灯坏了")
        except Exception as error:  # the file gone or damaged since the core loaded it
            framed.send(("refused", str(error)))
            framed.flush()
            return
        gc.freeze()  # the model and its word list: the collector's full passes would walk them (~100 ms each)
        framed.send((READY, model.fingerprint, CODE))
        pending: list[Any] = []
        while True:
            if not pending:
                messages = framed.received(wait=True)
                if messages is None:
                    return  # the core is gone
                pending = messages
            group, wanted_path, fingerprint, texts, asked = pending[-1]  # the newest group only
            pending = []
            if (wanted_path, fingerprint) != (path, model.fingerprint):  # the core uses another model now
                try:
                    path, model = wanted_path, use_model(wanted_path)
                except Exception:
                    path = ""
            if path != wanted_path or model.fingerprint != fingerprint:
                framed.send((group, REFUSED, None))
                continue
            for index, text in texts:
                try:
                    verdict: Triage | None = triage(text, landmarks=asked.landmarks, buildings=asked.buildings,
                                                    strictness=asked.strictness)
                except Exception:  # judged again by the core, which reports what went wrong
                    verdict = None
                framed.send((group, index, _plain(verdict)))
                if framed.readable():  # a newer group: this one is over
                    newer = framed.received()
                    if newer is None:
                        return
                    if newer:
                        pending = newer
                        break
    except OSError:
        return  # the core is gone


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2])
