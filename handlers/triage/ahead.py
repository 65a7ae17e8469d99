"""Triage judged ahead, in a process of its own.

A busy moment brings the core a group of updates at once. While it files the first of them, the rest are
judged on the machine's other core: triage is about a quarter of an update's work and depends on nothing
but the text, the community's landmarks, buildings and strictness, and the model, so nothing else has to
travel. The core takes each verdict when it reaches that update. When the process is not ready yet, is
slow, or has died, the core judges the update itself: a verdict is never missing, at worst it is not
ahead. A process that died is started again after a while.

The process reads its end of a pipe until the core's end closes, so it ends with the core, even when the
core is killed.

Run as `python -m handlers.triage.ahead FD` by `TriageAhead`; not a command for people.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import pickle
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

from handlers.triage import Strictness, Triage, current_model_path, triage, use_model
from handlers.triage.location import Location

log = logging.getLogger(__name__)
READY = b"ready"
WAIT = 2.0  # seconds: a process that owes verdicts and says nothing for this long is hung, and let go
START_WAIT = 15.0  # seconds `wait_ready` waits for a process that loads the model
RESTART_AFTER = 30.0  # seconds: a process that died or hung is started again no sooner
_PACKAGES = Path(__file__).resolve().parents[2]  # where `handlers` is importable from, for the process
_SIZE = struct.Struct("!I")  # each message on the socket: its length, then its pickle
NICENESS = 10  # the process's priority below the core's: on a CPU both need, the core goes first


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
        self._socket: socket.socket | None = None
        self._read = bytearray()  # what came from the process and is not a whole message yet
        self._ready = False
        self._group = 0
        self._verdicts: dict[int, Triage | None] = {}  # the current group's, by the index of its first text
        self._lost_at = float("-inf")
        self._owed = 0  # verdicts asked for and not received yet
        self._heard_at = 0.0  # when the process last answered (or was last given work while idle)
        self.served = 0  # verdicts the core took from the process

    @property
    def pid(self) -> int | None:
        """The process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the process; it loads the model on its own (about half a second) and is used once ready."""
        if self._socket is not None:
            return
        here, there = socket.socketpair()
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(_PACKAGES), os.environ.get("PYTHONPATH")]))}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "handlers.triage.ahead", str(there.fileno()), str(current_model_path())],
                pass_fds=(there.fileno(),), stdin=subprocess.DEVNULL, env=environment,
                start_new_session=True)  # a Ctrl-C in the terminal is the core's to handle, not the process's
        except OSError as error:
            log.warning("triage ahead: could not start its process (%s); the core judges every update", error)
            here.close()
            self._lost_at = time.monotonic()
            return
        finally:
            there.close()
        here.setblocking(False)  # verdicts are read as they have come, never waited for
        self._socket, self._read, self._ready, self._owed = here, bytearray(), False, 0

    def wait_ready(self, timeout: float = START_WAIT) -> bool:
        """Until the process has loaded the model (for a benchmark, which measures it at work)."""
        deadline = time.monotonic() + timeout
        while not self._usable():
            if self._socket is None or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        sock, process = self._socket, self._process
        self._socket, self._process, self._ready = None, None, False
        if sock is not None:
            sock.close()  # the process reads the end of its socket and leaves
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
            if time.monotonic() - self._lost_at > RESTART_AFTER and self._lost_at > 0:
                self.start()
            return False
        if not self._ready:
            messages = self._arrived()
            if messages is None:
                self._lose("its process ended while it loaded the model")
                return False
            self._ready = READY in messages
        return self._ready

    def _send(self, wanted: dict[str, int], asked: Asked) -> bool:
        assert self._socket is not None
        self._group += 1
        self._verdicts = {}
        message = pickle.dumps((self._group, str(current_model_path()),
                                [(index, text) for text, index in wanted.items()], asked))
        data = _SIZE.pack(len(message)) + message
        try:
            sent = self._socket.send(data)  # a group's texts fit the socket's buffer, as a rule
            if sent < len(data):
                self._socket.setblocking(True)
                self._socket.sendall(data[sent:])
                self._socket.setblocking(False)
        except OSError as error:  # BlockingIOError (a full buffer: a process that stopped reading) among them
            self._lose(f"could not hand it texts ({error})")
            return False
        if self._owed == 0:
            self._heard_at = time.monotonic()  # idle until now: its silence is counted from here
        self._owed += len(wanted)
        return True

    def verdict(self, index: int) -> Triage | None:
        """The verdict on the group's text at `index` if it has come; None: not yet (the core judges that
        text itself rather than wait: it reaches a group's first texts before the process does)."""
        verdicts = self._verdicts
        if index not in verdicts:
            messages = self._arrived()
            if messages is None:
                self._lose("its process ended")
                return None
            if messages:
                self._owed -= len(messages)
                self._heard_at = time.monotonic()
                for group, their_index, verdict in messages:
                    if group == self._group:  # a verdict of an earlier group nobody waited for: let go
                        verdicts[their_index] = _triage(verdict)
            elif self._owed > 0 and time.monotonic() - self._heard_at > WAIT:
                self._lose(f"no verdict for {WAIT:.0f} s")
            if index not in verdicts:
                return None
        verdict = verdicts[index]
        self.served += verdict is not None
        return verdict

    def _arrived(self) -> list[Any] | None:
        """Every whole message the process has sent by now, read at once; None when it has ended."""
        sock = self._socket
        if sock is None:
            return None
        buffer = self._read
        try:
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return None
                buffer += chunk
        except BlockingIOError:
            pass
        except OSError:
            return None
        messages, start = [], 0
        while len(buffer) - start >= _SIZE.size:
            (size,) = _SIZE.unpack_from(buffer, start)
            if len(buffer) - start - _SIZE.size < size:
                break
            start += _SIZE.size
            messages.append(pickle.loads(buffer[start:start + size]))
            start += size
        del buffer[:start]
        return messages

    def _lose(self, why: str) -> None:
        log.warning("triage ahead: %s; the core judges every update for now", why)
        sock, process = self._socket, self._process
        self._socket, self._process, self._ready = None, None, False
        self._lost_at = time.monotonic()
        if sock is not None:
            sock.close()
        if process is not None:
            process.kill()
            process.wait()


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


def serve(sock: socket.socket, model: str) -> None:
    """The process: judge each group's texts in order, a verdict sent as soon as it is made."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    current = model
    use_model(current)
    triage("3栋2单元楼道灯坏了")
    gc.freeze()  # the model and its word list: the collector's full passes would walk them (~100 ms each)
    reader = sock.makefile("rb")
    try:
        _write(sock, READY)
        while True:
            header = reader.read(_SIZE.size)
            if len(header) < _SIZE.size:
                return  # the core is gone
            group, model, texts, asked = pickle.loads(reader.read(_SIZE.unpack(header)[0]))
            if model != current:
                use_model(model)
                current = model
            for index, text in texts:
                try:
                    verdict: Triage | None = triage(text, landmarks=asked.landmarks, buildings=asked.buildings,
                                                    strictness=asked.strictness)
                except Exception:  # judged again by the core, which reports what went wrong
                    verdict = None
                _write(sock, (group, index, _plain(verdict)))
    except OSError:
        return  # the core is gone


def _write(sock: socket.socket, message: object) -> None:
    data = pickle.dumps(message)
    sock.sendall(_SIZE.pack(len(data)) + data)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2])
