"""A busy moment's messages judged ahead, in a process of their own: the same verdicts as the core's own,
the same orders, and a core that judges on alone when that process is slow or gone."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import select

from bot.settings import load_community
from handlers.clock import ManualClock
from handlers.protocol import Incoming
from handlers.router import Linli
from handlers.triage import DEFAULT_MODEL, current_model, triage, use_model
from handlers.triage import ahead as ahead_module
from handlers.triage.ahead import Asked, TriageAhead, Verdicts
from storage.db import make_engine, session
from storage.migrate import upgrade
from storage.models import Order
from tests.neighbourhood import EXAMPLE, GROUP, quiet_days

ASKED = Asked(("北门", "地下车库"), frozenset({"3", "5", "7"}), "balanced")
# what a group says in a busy moment: reports, chatter, a place alone, traditional script, English, a danger
MOMENT = ["3栋2单元楼道灯坏了，晚上黑漆漆的", "收到，谢谢", "5號樓電梯門關不上，困了好久", "3栋",
          "The streetlight at the north gate has been out for a week", "厨房有煤气味，好像漏气了", "+1", "",
          "【通知】周六上午义诊", "楼上装修从早上七点开始砸墙，吵死了", "收到，谢谢"]


@pytest.fixture(scope="module")
def judging() -> Iterator[TriageAhead]:
    ahead = TriageAhead()
    ahead.start()
    assert ahead.wait_ready(), "the process loads the model and says so"
    yield ahead
    ahead.stop()


def _here(text: str, asked: Asked = ASKED) -> object:
    return triage(text, landmarks=asked.landmarks, buildings=asked.buildings, strictness=asked.strictness)


def _come(verdicts: Verdicts, text: str) -> object:
    """The verdict on `text` once it has come (the core takes what has come, and judges the rest itself)."""
    deadline = time.monotonic() + 10
    while (verdict := verdicts.get(text, explicit=False, asked=ASKED)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return verdict


def test_the_process_judges_each_message_as_the_core_would(judging: TriageAhead) -> None:
    with judging.judging(MOMENT, ASKED) as verdicts:
        assert verdicts is not None
        for text in MOMENT:
            assert _come(verdicts, text) == _here(text), text


def test_what_was_not_asked_that_way_is_judged_by_the_core(judging: TriageAhead) -> None:
    """An @-mention is judged as explicit, another community's settings differ, a text nobody sent ahead."""
    stricter = Asked(ASKED.landmarks, ASKED.buildings, "cautious")
    with judging.judging(MOMENT[:3], ASKED) as verdicts:
        assert verdicts is not None
        assert _come(verdicts, MOMENT[0]) == _here(MOMENT[0]), "it has come, and is taken only as asked:"
        assert verdicts.get(MOMENT[0], explicit=True, asked=ASKED) is None
        assert verdicts.get(MOMENT[0], explicit=False, asked=stricter) is None
        assert verdicts.get("7幢水管漏水了", explicit=False, asked=ASKED) is None
        assert _come(verdicts, MOMENT[1]) == _here(MOMENT[1])


def test_a_verdict_left_untaken_does_not_answer_the_next_group(judging: TriageAhead) -> None:
    with judging.judging(["电梯坏了", "收到"], ASKED) as verdicts:
        assert verdicts is not None  # and nobody asks: both verdicts arrive late, for a group that is over
    with judging.judging(["收到", "电梯坏了"], ASKED) as verdicts:
        assert verdicts is not None
        assert _come(verdicts, "收到") == _here("收到")
        assert _come(verdicts, "电梯坏了") == _here("电梯坏了")


# --- in the core -------------------------------------------------------------------------------------------
def _core(tmp_path: Path, name: str, *, ahead: bool) -> Linli:
    engine = make_engine(f"sqlite:///{tmp_path / name}.db")
    upgrade(engine)
    return Linli(engine, quiet_days(load_community(EXAMPLE)), ManualClock(), judge_ahead=ahead)


def _judging(tmp_path: Path) -> tuple[Linli, int]:
    """A core started as `linli run` starts it, its triage process ready: the core and the process's id."""
    core = _core(tmp_path, "ahead", ahead=True)
    core.ready()
    assert core.ahead_ready() and core._ahead is not None and core._ahead.pid is not None
    return core, core._ahead.pid


def _moment(start: int = 0, times: int = 1) -> list[tuple[Incoming, int | None]]:
    return [(Incoming(service="console", chat_id=GROUP, sender_id=f"u{i % 4}", sender_name=f"居民{i % 4}", text=text,
                      message_id=f"m{start + i}"), None) for i, text in enumerate(MOMENT * times)]


def _said(results: list[list[tuple[int | None, object]]]) -> list[list[str]]:
    return [[action.text.key for _, action in queued] for queued in results]  # type: ignore[attr-defined]


def _filed(core: Linli) -> list[tuple[int, str, str, str, str | None]]:
    with session(core.engine) as db:
        return [(o.number, o.title, o.category, o.urgency, o.building)
                for o in db.exec(select(Order).order_by(Order.number))]


def test_a_core_judging_ahead_files_and_says_what_one_alone_does(tmp_path: Path) -> None:
    alone, ahead = _core(tmp_path, "alone", ahead=False), _core(tmp_path, "ahead", ahead=True)
    ahead.ready()
    try:
        assert ahead.ahead_ready()
        busy = _moment(times=5)
        assert _said(ahead.take_many(busy, ahead.owner)) == _said(alone.take_many(busy, alone.owner))
        assert _filed(ahead) == _filed(alone) and len(_filed(ahead)) >= 4
        assert ahead.judged_ahead > 0, "verdicts came from the process"
    finally:
        ahead.close()


def test_when_the_process_dies_the_core_judges_alone_and_starts_it_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    alone, (core, first) = _core(tmp_path, "alone", ahead=False), _judging(tmp_path)
    try:
        os.kill(first, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="handlers.triage.ahead"):
            assert _said(core.take_many(_moment(), core.owner)) == _said(alone.take_many(_moment(), alone.owner))
        assert "triage ahead:" in caplog.text and "the core judges every update" in caplog.text
        assert _filed(core) == _filed(alone), "every update judged all the same, by the core itself"
        monkeypatch.setattr(ahead_module, "RESTART_AFTER", 0.0)
        core.take_many(_moment(100), core.owner)  # the next busy moment starts the process again
        assert core.ahead_ready() and core._ahead.pid not in (None, first)
    finally:
        core.close()


def test_a_process_that_hangs_is_let_go_and_the_group_is_judged_by_the_core(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead_module, "WAIT", 0.0)
    core, hung = _judging(tmp_path)
    try:
        os.kill(hung, signal.SIGSTOP)
        with caplog.at_level(logging.WARNING, logger="handlers.triage.ahead"):
            said = _said(core.take_many(_moment(), core.owner))
        assert "no answer for" in caplog.text
        assert said[0] == ["card.filed"] and len(_filed(core)) >= 4
        assert core._ahead.pid is None, "the hung process is killed, not left behind"
    finally:
        core.close()
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)


def test_the_core_never_waits_on_a_process_that_stopped_reading(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of long messages to a stopped process fill its socket: the core goes on judging alone, and
    lets the process go once it has owed an answer for WAIT seconds."""
    monkeypatch.setattr(ahead_module, "WAIT", 0.5)
    core, stopped = _judging(tmp_path)
    long = [(replace(incoming, text=f"{incoming.text}{'楼道灯坏了' * 12_000}{n}"), None)  # 60,000 characters
            for n, (incoming, _) in enumerate(_moment(times=3))]
    try:
        os.kill(stopped, signal.SIGSTOP)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="handlers.triage.ahead"):
            while core._ahead.pid is not None and time.monotonic() - started < 30:
                core.take_many(long, core.owner)
                long = [(replace(incoming, message_id=f"{incoming.message_id}+"), None) for incoming, _ in long]
        assert core._ahead.pid is None and "no answer for" in caplog.text
    finally:
        core.close()
    with pytest.raises(ProcessLookupError):
        os.kill(stopped, 0)


def test_a_process_that_fell_behind_answers_the_newest_group_at_once(tmp_path: Path) -> None:
    ahead = TriageAhead()
    ahead.start()
    assert ahead.wait_ready() and ahead.pid is not None
    try:
        os.kill(ahead.pid, signal.SIGSTOP)
        for n in range(5):  # over before the process could look at them
            with ahead.judging([f"{n}栋电梯坏了", f"{n}号楼路灯不亮"], ASKED):
                pass
        os.kill(ahead.pid, signal.SIGCONT)
        with ahead.judging(MOMENT, ASKED) as verdicts:
            assert verdicts is not None
            assert [_come(verdicts, text) for text in MOMENT] == [_here(text) for text in MOMENT]
    finally:
        ahead.stop()


def test_a_process_whose_model_file_changed_since_the_core_loaded_it_judges_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A community retrained into the file LINLI_TRIAGE_MODEL names, meaning to restart later: the process
    would load the new model, so it refuses, and the core keeps judging with the one it loaded."""
    path = tmp_path / "linli-triage.npz"
    shutil.copy(DEFAULT_MODEL, path)
    use_model(path)
    try:
        retrained = current_model()
        retrained.meta = {**retrained.meta, "calibration": {"scale": 1.0, "shift": 6.0}}
        retrained.save(path)
        ahead = TriageAhead()
        with caplog.at_level(logging.WARNING, logger="handlers.triage.ahead"):
            ahead.start()
            assert not ahead.wait_ready(5)
        assert "not what the core loaded" in caplog.text and ahead.pid is None
        monkeypatch.setattr(ahead_module, "RESTART_AFTER", 0.0)
        with ahead.judging(MOMENT, ASKED) as verdicts:
            assert verdicts is None and ahead.pid is None, "not started again: the file stays as it is"
    finally:
        use_model(None)


def test_a_group_the_socket_took_slowly_does_not_make_a_healthy_process_look_hung(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A group too big for the socket goes out over a while; the process owes its answer from the moment it
    has it all, and a group nobody asked verdicts of is no reason to let the process go."""
    monkeypatch.setattr(ahead_module, "WAIT", 0.5)
    ahead = TriageAhead()
    ahead.start()
    assert ahead.wait_ready() and ahead.pid is not None
    healthy = ahead.pid
    try:
        huge = [f"{n}号楼{'楼道灯坏了' * 400}" for n in range(96)]  # ~570 KB: more than the socket holds
        with ahead.judging(huge, ASKED):
            pass  # the group went one by one: nobody asks for these verdicts
        time.sleep(0.7)  # what is tested: longer than WAIT passes with nobody listening to the process
        with caplog.at_level(logging.WARNING, logger="handlers.triage.ahead"), \
                ahead.judging(MOMENT, ASKED) as verdicts:
            assert verdicts is not None or ahead.pid == healthy  # the old group may still be going out
            if verdicts is not None:
                assert _come(verdicts, MOMENT[1]) == _here(MOMENT[1])
        assert ahead.pid == healthy and "no answer" not in caplog.text, "a healthy process was let go"
    finally:
        ahead.stop()


def test_a_process_that_speaks_another_version_is_let_go_not_believed(caplog: pytest.LogCaptureFixture) -> None:
    ahead = TriageAhead()
    ahead.start()
    assert ahead.wait_ready() and ahead._socket is not None
    try:
        with ahead.judging(MOMENT, ASKED) as verdicts:
            assert verdicts is not None
            with caplog.at_level(logging.WARNING, logger="handlers.triage.ahead"):
                assert ahead._heard([(ahead._group, 1, ("a verdict", "of another shape"))]) is False
                assert verdicts.get(MOMENT[1], explicit=False, asked=ASKED) is None
        assert "cannot read" in caplog.text and ahead.pid is None
    finally:
        ahead.stop()


def test_a_stopped_process_is_not_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead_module, "RESTART_AFTER", 0.0)
    ahead = TriageAhead()
    ahead.start()
    assert ahead.wait_ready() and ahead.pid is not None
    os.kill(ahead.pid, signal.SIGKILL)
    with ahead.judging(MOMENT, ASKED) as verdicts:  # finds it gone
        assert verdicts is not None
        verdicts.get(MOMENT[1], explicit=False, asked=ASKED)
    ahead.stop()
    with ahead.judging(MOMENT, ASKED) as verdicts:
        assert verdicts is None and ahead.pid is None, "stopped for good"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has ended; whoever adopted it reaps it


def test_the_process_ends_with_a_core_killed_outright() -> None:
    core = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom handlers.triage.ahead import TriageAhead\n"
        "ahead = TriageAhead(); ahead.start(); assert ahead.wait_ready()\n"
        "print(ahead.pid, flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert core.stdout is not None
    child = int(core.stdout.readline())
    assert not _gone(child)
    core.kill()
    core.wait()
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the triage process outlived the core"
