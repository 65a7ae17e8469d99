"""What Linli leaves on the machine: logs without secrets, a database only its owner can read, and a
ledger that opens as data (never as formulas) whatever residents typed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from pydantic import SecretStr
from sqlalchemy import text

from bot.cli.export import export_ledger
from bot.wiring import configure_logging, hide_secret
from storage.db import make_engine
from storage.models import Person
from tests.environment import without_linli_settings
from tests.neighbourhood import Neighbourhood
from tests.servers.telegram_api import TelegramApiServer

# --- secrets in logs ------------------------------------------------------------------------------------

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
PASSWORD = "correct horse/battery&staple"
ACCESS_TOKEN = "syt_bGlubGk_AbCdEfGhIjKlMnOpQrSt_1a2b3c"
UNKNOWN_TOKEN = "987654321:ZZHdqTcvCH1vGWJxfSeofSAs0K5PALDzz"  # not in the settings: caught by its shape
WEBHOOK_SECRET = "Zq9-webhook_secret_ABCDEFGHIJ0123456789"
LIBRARIES = ("httpx", "httpcore", "telegram", "nio", "urllib3", "alembic", "apscheduler")


@pytest.fixture
def fresh_logging() -> Iterator[Callable[..., None]]:
    """configure_logging on a root logger without pytest's handlers (added as the test starts), so it sets
    up its own handler, on stderr as `linli run` has it; all restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}

    def configure(*args: object) -> None:
        root.handlers = []
        configure_logging(*args)  # type: ignore[arg-type]

    try:
        yield configure
    finally:
        root.handlers, root.level = handlers, level
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


def log_library_lines() -> None:
    """Lines shaped like the ones the HTTP and chat libraries write at DEBUG."""
    url = httpx.URL(f"https://api.telegram.org/bot{TOKEN}/getUpdates")
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started request=%s", f"<Request POST {url}>")
    logging.getLogger("telegram.Bot").debug("Set Bot API URL: %s", f"https://api.telegram.org/bot{TOKEN}")
    logging.getLogger("telegram.Bot").debug("Calling Bot API endpoint `%s` with parameters `%s`", "setWebhook",
                                            {"url": "https://linli.example/hook", "secret_token": WEBHOOK_SECRET})
    logging.getLogger("telegram.ext.Updater").debug("Polling %s", f"https://api.telegram.org/bot{UNKNOWN_TOKEN}/")
    logging.getLogger("nio.client").debug("login body %s", json.dumps(
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "linli"}, "password": PASSWORD}))
    logging.getLogger("nio.responses").debug('got {"access_token": "%s", "device_id": "LINLI"}', ACCESS_TOKEN)
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s', "https", "matrix.example", 443, "GET",
        "/_matrix/client/v3/sync?access_token=syt_other_TOKENvalue_9z8y7x&since=s72_1", "HTTP/1.1", 200, 512)
    logging.getLogger("bot.matrix").debug("headers %s", {"Authorization": f"Bearer {ACCESS_TOKEN}"})
    logging.getLogger("storage").debug("database %s", "postgresql+psycopg://linli:pg-Secret-77@db/linli")
    try:
        raise httpx.ConnectError(f"cannot reach https://api.telegram.org/bot{TOKEN}/getMe")
    except httpx.ConnectError:
        logging.getLogger("bot.telegram").exception("Telegram: gave up connecting")


def test_no_secret_reaches_a_debug_log(fresh_logging: Callable[..., None],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    fresh_logging("debug", (SecretStr(TOKEN), SecretStr(PASSWORD), SecretStr(ACCESS_TOKEN), None))
    log_library_lines()
    hide_secret("a-secret-made-at-run-time")
    logging.getLogger("bot.telegram").debug("webhook secret is %s", "a-secret-made-at-run-time")
    err = capsys.readouterr().err
    for secret in (TOKEN, PASSWORD, ACCESS_TOKEN, UNKNOWN_TOKEN, WEBHOOK_SECRET, "syt_other_TOKENvalue_9z8y7x",
                   "pg-Secret-77", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ", "a-secret-made-at-run-time"):
        assert secret not in err, f"{secret!r} leaked:\n{err}"
    assert "correct horse" not in err and "battery" not in err
    # and the lines still say what happened
    for kept in ("getUpdates", "api.telegram.org/bot", "setWebhook", "m.login.password", "since=s72_1", "LINLI",
                 "postgresql+psycopg://linli:", "Traceback", "gave up connecting", "987654321:"):
        assert kept in err, f"{kept!r} missing:\n{err}"
    assert err.count("[REDACTED]") >= 11
    assert len(err.splitlines()) >= 12, "every library's DEBUG line came through"


def test_a_second_configuration_keeps_the_first_secrets(fresh_logging: Callable[..., None],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fresh_logging("INFO", (SecretStr(TOKEN),))
    configure_logging("DEBUG", ())
    logging.getLogger("bot").info("token %s in prose", TOKEN.replace(":", " : "))  # no shape left to catch
    logging.getLogger("bot").info("broken format %s %s", "only one")  # reported by logging, nothing leaks
    err = capsys.readouterr().err
    assert TOKEN.split(":")[1] not in err and len(logging.getLogger().handlers) == 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_linli_run_at_debug_logs_neither_token_nor_webhook_secret(tg: TelegramApiServer,
                                                                         tmp_path: Path) -> None:
    port = free_port()
    env = {**without_linli_settings(), "LINLI_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "LINLI_TELEGRAM_TOKEN": tg.token, "LINLI_TELEGRAM_API_URL": tg.base_url, "LINLI_LOG_LEVEL": "DEBUG"}
    linli = Path(sys.executable).with_name("linli")
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen([str(linli), "run", "--webhook", f"http://127.0.0.1:{port}/linli/telegram",
                                    "--listen", f"127.0.0.1:{port}"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        await tg.wait_for_call("setWebhook", timeout=30)
        wang = tg.create_user("王阿姨")
        said = tg.user_says(wang, tg.private_chat(wang), "/帮助")
        await tg.wait_for_bot_message(tg.private_chat(wang), "", after=said, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
    output = (tmp_path / "run.log").read_text()
    secret = (tg.webhook or {}).get("secret_token") or tg.calls_to("setWebhook")[0].params["secret_token"]
    assert tg.token not in output and tg.token.split(":")[1] not in output
    assert secret not in output
    assert "[REDACTED]" in output and "DEBUG" in output, output[-3000:]


# --- the database file ----------------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_a_new_database_and_its_wal_are_for_the_owner_only(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "new" / "data"
    before = os.umask(umask)
    try:
        engine = make_engine(f"sqlite:///{folder / 'linli.db'}")
        with engine.connect() as db:  # WAL: the -wal and -shm files exist while a connection is open
            db.execute(text("CREATE TABLE t (x INTEGER)"))
            db.execute(text("INSERT INTO t VALUES (1)"))
            db.commit()
            files = {path.name: mode(path) for path in folder.iterdir()}
        engine.dispose()
    finally:
        os.umask(before)
    assert files == {"linli.db": 0o600, "linli.db-wal": 0o600, "linli.db-shm": 0o600}
    assert mode(folder) == 0o700 and mode(folder.parent) == 0o700, "folders made for the database too"


def test_an_older_readable_database_is_closed_to_others(tmp_path: Path) -> None:
    path = tmp_path / "linli.db"
    path.touch()
    path.chmod(0o644)
    (tmp_path / "linli.db-wal").touch()
    (tmp_path / "linli.db-wal").chmod(0o664)
    make_engine(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600 and mode(tmp_path / "linli.db-wal") == 0o600
    make_engine("sqlite:///:memory:").dispose()  # nothing to create


# --- the ledger -----------------------------------------------------------------------------------------

FORMULA = '=HYPERLINK("http://x")'


def test_the_ledger_writes_formulas_as_text_and_drops_control_characters(hood: Neighbourhood,
                                                                          tmp_path: Path) -> None:
    hood.report("王阿姨", "3栋2单元楼道灯坏了")
    hood.report("李姐", "5栋电梯坏了")
    with hood.db() as db:
        first, second = (hood.order(1), hood.order(2))
        first.text, first.title = FORMULA, "+1 " + FORMULA
        second.text, second.title = "灯坏了\x0b又坏了\x00", "-灯坏了"
        reporter = db.get(Person, first.reporter_id)
        assert reporter is not None
        reporter.name = "@SUM(1+1)"
        db.add_all([db.merge(first), db.merge(second), reporter])
        db.commit()
    path = tmp_path / "台账.xlsx"
    result = export_ledger(hood.engine, path, community_id=hood.core.community.grid_id, tz=hood.core.community.tz,
                           now=hood.clock.now())
    assert result["orders"] == 2
    book = load_workbook(path)
    assert all(cell.data_type != "f" for sheet in book for row in sheet.iter_rows() for cell in row)
    rows = {row[0].value: row for row in book["工单"].iter_rows(min_row=2)}
    text_of, title_of, reporter_of = (lambda n: rows[n][6], lambda n: rows[n][5], lambda n: rows[n][2])
    assert text_of(1).value == FORMULA and text_of(1).data_type == "s" and text_of(1).quotePrefix
    assert title_of(1).value == "+1 " + FORMULA and title_of(1).quotePrefix
    assert reporter_of(1).value.startswith("@") and reporter_of(1).quotePrefix
    assert text_of(2).value == "灯坏了又坏了" and title_of(2).value == "-灯坏了"
    assert not text_of(2).quotePrefix, "ordinary text keeps its ordinary style"
    with zipfile.ZipFile(path) as archive:
        assert not any("<f>" in archive.read(name).decode() for name in archive.namelist() if name.endswith(".xml"))
