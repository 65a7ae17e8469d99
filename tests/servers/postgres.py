"""A real, throw-away PostgreSQL server for the test session.

Fixtures
--------
``postgres_server`` (session)
    Starts one PostgreSQL cluster per test session (``initdb`` + ``pg_ctl``) on a random
    127.0.0.1 port, tuned for speed (fsync/synchronous_commit/full_page_writes off) and
    removes it at session end. Skips only when the server binaries are missing and cannot
    be installed with ``apt-get install -y postgresql``.
``postgres_url`` (function)
    Creates a fresh database ``test_<n>`` and yields its SQLAlchemy URL
    ``postgresql+psycopg://postgres@127.0.0.1:PORT/test_<n>``; drops it afterwards.

``initdb`` refuses to run as root, so when running as root every server command runs as
the ``postgres`` OS user (``runuser -u postgres --``) inside a ``mkdtemp`` directory under
/tmp that is chowned to that user (pytest's ``tmp_path`` is not enterable by it).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_OS_USER = "postgres"
PG_DB_USER = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("LINLI_PG_START_TIMEOUT", "60"))

SPEED_SETTINGS = """
# --- linli test-suite tuning: durability off, we throw the cluster away ---
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 30min
max_wal_size = 1GB
max_connections = 200
log_min_messages = warning
log_min_error_statement = error
"""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are missing and could not be installed."""


# ---------------------------------------------------------------------------------------
# binaries
# ---------------------------------------------------------------------------------------


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([\d.]+)/bin", path)
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


def find_postgres_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl`` (newest /usr/lib/postgresql/*/bin first)."""
    override = os.environ.get("LINLI_PG_BINDIR")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    for initdb in candidates:
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def install_postgres_binaries(timeout: float = 900) -> tuple[bool, str]:
    """Try ``apt-get install -y postgresql``. Returns (ok, message)."""
    if os.geteuid() != 0:
        return False, "not root, cannot apt-get install postgresql"
    if not shutil.which("apt-get"):
        return False, "apt-get not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    output = ""
    try:
        for attempt in range(2):
            if attempt == 1:  # package lists may be missing/stale: update once and retry
                subprocess.run(
                    ["apt-get", "update"], env=env, capture_output=True, timeout=timeout, check=False
                )
            proc = subprocess.run(
                install, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
            output = (proc.stdout + proc.stderr).strip()[-1500:]
            if proc.returncode == 0:
                if find_postgres_bindir():
                    return True, "installed"
                return (
                    False,
                    "apt-get install postgresql succeeded, but no initdb/pg_ctl was found afterwards",
                )
    except subprocess.TimeoutExpired:
        return False, f"apt-get timed out after {timeout:.0f}s"
    except OSError as exc:
        return False, f"apt-get could not run: {exc}"
    return False, f"apt-get install postgresql failed:\n{output}"


def ensure_postgres_bindir() -> Path:
    """Find the server binaries, installing them with apt-get if they are missing."""
    bindir = find_postgres_bindir()
    if bindir:
        return bindir
    ok, message = install_postgres_binaries()
    bindir = find_postgres_bindir()
    if not ok or bindir is None:
        where = os.environ.get("LINLI_PG_BINDIR") or "/usr/lib/postgresql/*/bin or PATH"
        raise PostgresUnavailable(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found in {where}; {message}"
        )
    return bindir


# ---------------------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_OS_USER, "--", *cmd]
    return cmd


def _ensure_os_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
            check=True,
            capture_output=True,
            timeout=30,
        )


@dataclass
class PostgresServer:
    bindir: Path
    base_dir: Path
    port: int
    host: str = HOST
    user: str = PG_DB_USER
    startup_seconds: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URI for ``psycopg.connect``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"<no log: {exc}>"

    # -- databases ------------------------------------------------------------------

    def _admin_execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        _check_identifier(name)
        self._admin_execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        _check_identifier(name)
        self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- lifecycle ------------------------------------------------------------------

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]),
            cwd=self.base_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        opts = f"-h {self.host} -p {self.port} -k {self.socket_dir} -F"
        proc = self._pg_ctl(
            "-l",
            str(self.log_path),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
            timeout=START_TIMEOUT + 30,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed (rc={proc.returncode}) on port {self.port}:\n"
                f"{proc.stdout}{proc.stderr}\n--- postgres.log ---\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """Stop the server and delete its directory. Idempotent, never raises."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self._pg_ctl("-m", "immediate", "-w", "-t", "20", "stop", timeout=40)
                self._kill_postmaster()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _check_identifier(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"unsafe database name: {name!r}")


def start_postgres(bindir: Path | None = None, attempts: int = 3) -> PostgresServer:
    """initdb + start a fresh cluster on a free port. Caller must call ``.stop()``."""
    bindir = bindir or ensure_postgres_bindir()
    _ensure_os_user()
    started = time.monotonic()
    base_dir = Path(tempfile.mkdtemp(prefix="linli-pg-", dir="/tmp"))
    server = PostgresServer(bindir=bindir, base_dir=base_dir, port=0)
    try:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(base_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(base_dir, 0o700)
        initdb = subprocess.run(
            _as_pg_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(server.data_dir),
                    "--auth=trust",
                    "-U",
                    PG_DB_USER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            cwd=base_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed (rc={initdb.returncode}):\n{initdb.stdout}{initdb.stderr}")
        with open(server.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(SPEED_SETTINGS)

        last_error: Exception | None = None
        for _ in range(attempts):
            server.port = free_port()
            try:
                server.start()
                break
            except RuntimeError as exc:  # most likely lost a race for the port: retry
                last_error = exc
                server._kill_postmaster()
        else:
            raise RuntimeError(f"PostgreSQL did not start after {attempts} attempts") from last_error
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - started
    return server


# ---------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        bindir = ensure_postgres_bindir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    server = start_postgres(bindir)
    atexit.register(server.stop)  # safety net if the session dies before teardown
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"test_{next(_db_counter)}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


def to_psycopg_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` (for ``psycopg.connect``)."""
    return re.sub(r"^postgresql\+psycopg://", "postgresql://", sqlalchemy_url)
