"""A real Synapse homeserver for the test session.

Fixtures
--------
``synapse_server`` (session)
    One Synapse on a random 127.0.0.1 port with very relaxed rate limits (SQLite, no
    federation, registration closed except via the shared-secret admin API).
``synapse_strict`` (session, lazy)
    A second Synapse with Synapse's *default* rate limits, only started when a test asks
    for it (for rate-limit tests).

Both are :class:`SynapseServer` objects; see its docstring for the helper API. Use
:func:`start_synapse` directly for a private instance (caller must ``.stop()`` it).

Gotcha: Synapse 1.163's default room version is **12**: room IDs have no ``:server`` part
(``!<hash>``), and room creators get unlimited power *implicitly* – they are not listed in
``m.room.power_levels``'s ``users`` map (matrix-nio 0.26 does not know this and reports the
creator's level as ``users_default``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from nio import AsyncClient, AsyncClientConfig, LoginResponse, SyncResponse

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_NAME = "localhost"
HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("LINLI_SYNAPSE_START_TIMEOUT", "90"))

_UNLIMITED = {"per_second": 10_000, "burst_count": 100_000}

RELAXED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
}

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log_path}
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
  synapse.access.http:
    level: INFO
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


def synapse_python() -> str:
    """The project venv's python (falls back to the running interpreter)."""
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SynapseError(RuntimeError):
    pass


@dataclass
class MatrixUser:
    username: str
    user_id: str
    password: str
    access_token: str
    device_id: str
    admin: bool = False


@dataclass
class SynapseServer:
    """A running Synapse.

    Attributes: ``url`` (``http://127.0.0.1:PORT``), ``server_name`` (``localhost``),
    ``port``, ``base_dir``, ``relaxed_limits``, ``shared_secret``, ``log_path``,
    ``startup_seconds`` (config generation + boot until ``/versions`` answers) and
    ``timings`` (per phase).
    """

    base_dir: Path
    port: int
    relaxed_limits: bool
    shared_secret: str
    server_name: str = SERVER_NAME
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    startup_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    users: dict[str, MatrixUser] = field(default_factory=dict, repr=False)
    _admin: MatrixUser | None = field(default=None, repr=False)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    # -- basics ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "homeserver.log"

    @property
    def stdout_path(self) -> Path:
        return self.base_dir / "stdout.log"

    def user_id(self, username: str) -> str:
        return f"@{username}:{self.server_name}"

    def unique_name(self, prefix: str = "user") -> str:
        """A localpart not used before on this server (the server is shared by the session)."""
        return f"{prefix.lower()}_{next(self._names)}_{secrets.token_hex(2)}"

    def log_tail(self, lines: int = 80) -> str:
        parts = []
        for path in (self.stdout_path, self.log_path):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "<no synapse logs>"

    def api(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        timeout: float = 30,
    ) -> httpx.Response:
        """Synchronous raw HTTP request against the homeserver (``path`` starts with /)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.url + path, headers=headers, json=json_body, timeout=timeout)

    # -- users ----------------------------------------------------------------------

    def register(
        self, username: str, password: str, admin: bool = False, displayname: str | None = None
    ) -> tuple[str, str]:
        """Register via the shared-secret admin API. Returns ``(user_id, access_token)``."""
        nonce_resp = self.api("GET", "/_synapse/admin/v1/register")
        nonce_resp.raise_for_status()
        nonce = nonce_resp.json()["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        for i, part in enumerate((nonce, username, password, "admin" if admin else "notadmin")):
            if i:
                mac.update(b"\x00")
            mac.update(part.encode("utf-8"))
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname:
            body["displayname"] = displayname
        resp = self.api("POST", "/_synapse/admin/v1/register", json_body=body)
        if resp.status_code != 200:
            raise SynapseError(f"register {username!r} failed: {resp.status_code} {resp.text}")
        data = resp.json()
        self.users[username] = MatrixUser(
            username=username,
            user_id=data["user_id"],
            password=password,
            access_token=data["access_token"],
            device_id=data["device_id"],
            admin=admin,
        )
        return data["user_id"], data["access_token"]

    def admin_user(self) -> tuple[str, str]:
        """A lazily registered server admin: ``(user_id, access_token)``."""
        if self._admin is None:
            username = self.unique_name("admin")
            self.register(username, secrets.token_urlsafe(12), admin=True)
            self._admin = self.users[username]
        return self._admin.user_id, self._admin.access_token

    def override_ratelimit(
        self,
        user_id: str,
        admin_token: str | None = None,
        messages_per_second: int = 0,
        burst_count: int = 0,
    ) -> dict[str, Any]:
        """``POST /_synapse/admin/v1/users/<id>/override_ratelimit``.

        0/0 (default) disables rate limiting for the user: Synapse then skips *every*
        requester-keyed limiter (messages, joins, invites, room creation ...), not only
        ``rc_message``. IP-keyed limits (login/registration) still apply.
        """
        admin_token = admin_token or self.admin_user()[1]
        resp = self.api(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit",
            token=admin_token,
            json_body={"messages_per_second": messages_per_second, "burst_count": burst_count},
        )
        if resp.status_code != 200:
            raise SynapseError(f"override_ratelimit {user_id} failed: {resp.status_code} {resp.text}")
        return resp.json()

    async def client(
        self,
        username: str,
        *,
        password: str | None = None,
        admin: bool = False,
        fresh_login: bool = False,
        config: AsyncClientConfig | None = None,
    ) -> AsyncClient:
        """A logged-in ``nio.AsyncClient`` for ``username`` (registered on first use).

        By default it reuses the access token/device from registration (no ``/login``
        call, so it cannot hit ``rc_login`` on the strict server); ``fresh_login=True``
        does a real password login (new device). The caller must ``await client.close()``.
        The default config surfaces 429s as errors (``max_limit_exceeded=0``) instead of
        nio's silent retry-forever, and bounds timeouts.
        """
        user = self.users.get(username)
        if user is None:
            await asyncio.to_thread(
                self.register, username, password or f"pw-{username}-{secrets.token_hex(4)}", admin
            )
            user = self.users[username]
        config = config or AsyncClientConfig(
            encryption_enabled=False,
            store_sync_tokens=False,
            max_limit_exceeded=0,
            max_timeouts=2,
            request_timeout=30,
        )
        client = AsyncClient(self.url, user.user_id, device_id=user.device_id, config=config)
        if fresh_login:
            resp = await client.login(user.password, device_name="linli-tests")
            if not isinstance(resp, LoginResponse):
                await client.close()
                raise SynapseError(f"login {username!r} failed: {resp}")
        else:
            client.restore_login(user.user_id, user.device_id, user.access_token)
        return client

    @contextlib.asynccontextmanager
    async def client_session(self, username: str, **kwargs: Any) -> AsyncIterator[AsyncClient]:
        """``async with server.client_session("alice") as c:`` – like :meth:`client`, closes it."""
        client = await self.client(username, **kwargs)
        try:
            yield client
        finally:
            await client.close()

    # -- lifecycle ------------------------------------------------------------------

    def stop(self, timeout: float = 15) -> None:
        """Terminate the process (SIGTERM, then SIGKILL). Idempotent, never raises."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


async def sync_until(
    client: AsyncClient,
    predicate: Callable[[SyncResponse], Any],
    timeout: float = 20.0,
    poll_ms: int = 500,
) -> Any:
    """Call ``client.sync`` until ``predicate(response)`` is truthy; return that value.

    Always pass a small ``timeout`` to nio's ``sync``: by default it long-polls for
    ``config.request_timeout`` (nio default 60 s). Raises ``TimeoutError`` at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while (remaining := deadline - time.monotonic()) > 0:
        wait_ms = max(0, min(poll_ms, int(remaining * 1000)))
        last = await asyncio.wait_for(client.sync(timeout=wait_ms), timeout=remaining + 10)
        if isinstance(last, SyncResponse):
            result = predicate(last)
            if result:
                return result
    raise TimeoutError(f"sync_until: condition not met within {timeout}s (last response: {last!r:.300})")


def _generate_config(base_dir: Path) -> None:
    proc = subprocess.run(
        [
            synapse_python(),
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            SERVER_NAME,
            "--config-path",
            "homeserver.yaml",
            "--generate-config",
            "--report-stats=no",
        ],
        cwd=base_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise SynapseError(f"synapse --generate-config failed:\n{proc.stdout}{proc.stderr}")


def _override_config(server: SynapseServer) -> dict[str, Any]:
    base = server.base_dir
    config: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": server.url + "/",
        "pid_file": str(base / "homeserver.pid"),
        "listeners": [
            {
                "port": server.port,
                "bind_addresses": [HOST],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(base / "homeserver.db")}},
        "log_config": str(base / "log.config"),
        "media_store_path": str(base / "media_store"),
        "registration_shared_secret": server.shared_secret,
        "enable_registration": False,
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "report_stats": False,
        "enable_metrics": False,
        "bcrypt_rounds": 4,  # password hashing dominates register/login otherwise
        "max_upload_size": "50M",
    }
    if server.relaxed_limits:
        config.update(RELAXED_RATE_LIMITS)
    return config


def _wait_until_ready(server: SynapseServer, deadline: float) -> None:
    assert server.process is not None
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise SynapseError(f"synapse exited early with rc={server.process.returncode}")
            try:
                if http.get(server.url + "/_matrix/client/versions").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise SynapseError(f"synapse did not answer /_matrix/client/versions within {START_TIMEOUT:.0f}s")


def start_synapse(
    tmpdir: str | os.PathLike[str], relaxed_limits: bool = True, attempts: int = 3
) -> SynapseServer:
    """Generate a config in ``tmpdir`` and start Synapse; returns once it serves requests.

    The caller must call ``.stop()``. On failure the Synapse log is included in the error.
    """
    base_dir = Path(tmpdir)
    base_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _generate_config(base_dir)
    t_generated = time.monotonic()
    (base_dir / "log.config").write_text(
        LOG_CONFIG.format(log_path=json.dumps(str(base_dir / "homeserver.log")))
    )

    server = SynapseServer(
        base_dir=base_dir, port=0, relaxed_limits=relaxed_limits, shared_secret=secrets.token_hex(32)
    )
    last_error: Exception | None = None
    for _ in range(attempts):
        server.port = free_port()
        # JSON is valid YAML; later --config-path files override top-level keys of earlier ones
        (base_dir / "override.yaml").write_text(json.dumps(_override_config(server), indent=2))
        boot_start = time.monotonic()
        with open(server.stdout_path, "ab") as out:
            server.process = subprocess.Popen(
                [
                    synapse_python(),
                    "-m",
                    "synapse.app.homeserver",
                    "--config-path",
                    str(base_dir / "homeserver.yaml"),
                    "--config-path",
                    str(base_dir / "override.yaml"),
                ],
                cwd=base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() can kill it cleanly
            )
        try:
            _wait_until_ready(server, time.monotonic() + START_TIMEOUT)
        except SynapseError as exc:
            log = server.log_tail()
            server.stop()
            last_error = SynapseError(f"{exc} (port {server.port})\n{log}")
            if "Address already in use" in log:  # lost a race for the port: retry
                continue
            raise last_error from None
        now = time.monotonic()
        server.timings = {"generate_config": t_generated - t0, "boot": now - boot_start}
        server.startup_seconds = now - t0
        return server
    raise last_error or SynapseError("synapse did not start")


def _session_synapse(
    tmp_path_factory: pytest.TempPathFactory, name: str, relaxed: bool
) -> Iterator[SynapseServer]:
    server = start_synapse(tmp_path_factory.mktemp(name), relaxed_limits=relaxed)
    atexit.register(server.stop)  # safety net if the session dies before teardown
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """Relaxed-rate-limit Synapse shared by the whole session."""
    yield from _session_synapse(tmp_path_factory, "synapse", relaxed=True)


@pytest.fixture(scope="session")
def synapse_strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """Second Synapse with Synapse's default rate limits (started only if requested)."""
    yield from _session_synapse(tmp_path_factory, "synapse_strict", relaxed=False)
