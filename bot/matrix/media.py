"""Photos on Matrix: a local copy of every image people send (size-limited), and images the bot posts.

The core keeps the mxc:// URI as the photo's reference; the copy under the media directory is named
after it, so a photo can be found on disk from its reference alone (`path_for`).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import re
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)
MAX_IMAGE_BYTES = 10 * 1024 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_CHUNK = 64 * 1024


class TooLarge(Exception):
    """An image over the size limit: its mxc URI is kept, no local copy is made."""


def split_mxc(mxc: str) -> tuple[str, str]:
    if not mxc.startswith("mxc://"):
        raise ValueError(f"not an mxc URI: {mxc!r}")
    server, _, media_id = mxc[len("mxc://"):].partition("/")
    if not server or not media_id or "/" in media_id:
        raise ValueError(f"not an mxc URI: {mxc!r}")
    return server, media_id


def path_for(media_dir: Path, mxc: str, mimetype: str | None = None) -> Path:
    """Where the local copy of `mxc` lives (the extension follows its mimetype)."""
    server, media_id = split_mxc(mxc)
    suffix = (mimetypes.guess_extension(mimetype) if mimetype else None) or ""
    return media_dir / _safe(server) / (_safe(media_id) + suffix)


def _safe(part: str) -> str:
    """A file name from an id: no separators, and no leading dot (so never "." or "..")."""
    name = _SAFE.sub("_", part)
    return "_" + name[1:] if name.startswith(".") else name


def find_copy(media_dir: Path, mxc: str) -> Path | None:
    base = path_for(media_dir, mxc)
    if base.exists():
        return base
    return next(iter(sorted(base.parent.glob(base.name + ".*"))), None) if base.parent.exists() else None


class MediaStore:
    """Downloads media through the authenticated media API, streaming, never over `limit` bytes."""

    def __init__(self, homeserver: str, media_dir: Path, limit: int = MAX_IMAGE_BYTES) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.media_dir = media_dir
        self.limit = limit
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def keep(self, mxc: str, token: str, *, size: int | None = None, mimetype: str | None = None) -> Path:
        """The local copy of `mxc`, downloaded first if there is none yet."""
        found = find_copy(self.media_dir, mxc)
        if found is not None:
            return found
        if size is not None and size > self.limit:
            raise TooLarge(f"{mxc} announces {size} bytes (limit {self.limit})")
        path = path_for(self.media_dir, mxc, mimetype)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # residents' photos: the owner's only
        server, media_id = split_mxc(mxc)
        partial = path.with_name(path.name + ".part")
        try:
            for prefix in ("/_matrix/client/v1/media/download", "/_matrix/media/v3/download"):
                if await self._fetch(f"{self.homeserver}{prefix}/{server}/{media_id}", token, partial):
                    os.replace(partial, path)
                    return path
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        raise FileNotFoundError(f"could not download {mxc}")

    async def _fetch(self, url: str, token: str, target: Path) -> bool:
        """Stream `url` to `target`; False if this API is not there (an older homeserver)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        async with self._http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status in (400, 404) and "/client/v1/" in url:
                return False
            response.raise_for_status()
            if (response.content_length or 0) > self.limit:
                raise TooLarge(f"{url} is {response.content_length} bytes (limit {self.limit})")
            got = 0
            with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    got += len(chunk)
                    if got > self.limit:
                        raise TooLarge(f"{url} is over {self.limit} bytes")
                    out.write(chunk)
        return True
