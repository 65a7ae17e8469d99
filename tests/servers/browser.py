"""A real headless Chromium for the test session, driven by Playwright.

Fixtures
--------
``browser`` (session)
    Debian's ``chromium`` launched by Playwright with ``executable_path=/usr/bin/chromium``.
    ``playwright install`` cannot download its own browser here, so when /usr/bin/chromium is
    missing the fixture installs it with ``apt-get install -y chromium`` (running ``apt-get update``
    first if that fails), and installs ``fonts-noto-cjk`` when no Chinese font is present, so
    screenshots show Chinese rather than boxes. Skips, saying why, only when Chromium cannot be
    installed or started.
``artifacts`` (session)
    The ``test-artifacts/`` folder at the repository root (git-ignored), for screenshots.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 900


class BrowserUnavailable(RuntimeError):
    """Chromium is missing and could not be installed."""


def _apt(*packages: str) -> None:
    """apt-get install, with one apt-get update and a retry when the first try fails."""
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable("apt-get is not available to install " + " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        first = subprocess.run(install, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT)
        if first.returncode == 0:
            return
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT)
        second = subprocess.run(install, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BrowserUnavailable(f"apt-get install {' '.join(packages)} failed: {error}") from None
    if second.returncode != 0:
        tail = (second.stderr or second.stdout).strip().splitlines()[-3:]
        raise BrowserUnavailable(f"apt-get install {' '.join(packages)} failed: {' / '.join(tail)}")


def _has_chinese_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installed from Debian if needed, with a font that has Chinese glyphs."""
    if not CHROMIUM.exists():
        _apt("chromium")
        if not CHROMIUM.exists():
            raise BrowserUnavailable("apt-get installed chromium but /usr/bin/chromium is missing")
    if not _has_chinese_font():
        with contextlib.suppress(BrowserUnavailable):  # pages still work; only a screenshot would show boxes
            _apt("fonts-noto-cjk")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    try:
        executable = ensure_chromium()
    except BrowserUnavailable as error:
        pytest.skip(f"no Chromium for browser tests: {error}")
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        except Error as error:
            pytest.skip(f"Chromium at {executable} would not start: {error.message.splitlines()[0]}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = ROOT / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder
