"""Smoke tests for the session Synapse fixtures (tests/servers/synapse.py)."""

from __future__ import annotations

import io
import struct
import zlib

from nio import (
    JoinResponse,
    MemoryDownloadResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomMessageImage,
    RoomMessageText,
    RoomSendError,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)

from tests.servers.synapse import SynapseServer, sync_until


def tiny_png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_server_basics(synapse_server: SynapseServer) -> None:
    resp = synapse_server.api("GET", "/_matrix/client/versions")
    assert resp.status_code == 200
    assert synapse_server.server_name == "localhost"
    assert synapse_server.url.startswith("http://127.0.0.1:")
    assert 0 < synapse_server.startup_seconds < 60
    # registration is closed except through the shared-secret admin API
    resp = synapse_server.api(
        "POST", "/_matrix/client/v3/register", json_body={"username": "x", "password": "y"}
    )
    assert resp.status_code == 403


async def test_invite_join_message_roundtrip(synapse_server: SynapseServer) -> None:
    alice_name, bob_name = synapse_server.unique_name("alice"), synapse_server.unique_name("bob")
    bob_id, bob_token = synapse_server.register(bob_name, "bob-password")
    assert bob_id == f"@{bob_name}:localhost" and bob_token

    async with (
        synapse_server.client_session(alice_name) as alice,
        synapse_server.client_session(bob_name, fresh_login=True) as bob,
    ):
        created = await alice.room_create(name="3号楼报修群")
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        invited = await alice.room_invite(room_id, bob_id)
        assert isinstance(invited, RoomInviteResponse), invited
        await sync_until(bob, lambda r: room_id in r.rooms.invite)

        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined

        sent = await bob.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "楼道灯坏了 #报修"}
        )
        assert isinstance(sent, RoomSendResponse), sent

        def bobs_message(resp: SyncResponse) -> RoomMessageText | None:
            room = resp.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if isinstance(event, RoomMessageText) and event.sender == bob_id:
                    return event
            return None

        event = await sync_until(alice, bobs_message)
        assert event.body == "楼道灯坏了 #报修"
        assert event.event_id == sent.event_id
        assert bob_id in alice.rooms[room_id].users


async def test_upload_and_download_image(synapse_server: SynapseServer) -> None:
    png = tiny_png()
    async with (
        synapse_server.client_session(synapse_server.unique_name("uploader")) as uploader,
        synapse_server.client_session(synapse_server.unique_name("viewer")) as viewer,
    ):
        uploaded, decryption_keys = await uploader.upload(
            io.BytesIO(png), content_type="image/png", filename="leak.png", filesize=len(png)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        assert decryption_keys is None
        assert uploaded.content_uri.startswith("mxc://localhost/")

        # send it as an m.image so the flow matches what the bot does
        room = await uploader.room_create(invite=[viewer.user_id])
        assert isinstance(room, RoomCreateResponse), room
        assert isinstance(await viewer.join(room.room_id), JoinResponse)
        content = {
            "msgtype": "m.image",
            "body": "leak.png",
            "url": uploaded.content_uri,
            "info": {"mimetype": "image/png", "size": len(png), "w": 2, "h": 2},
        }
        assert isinstance(await uploader.room_send(room.room_id, "m.room.message", content), RoomSendResponse)

        def image_event(resp: SyncResponse) -> RoomMessageImage | None:
            joined = resp.rooms.join.get(room.room_id)
            for event in joined.timeline.events if joined else []:
                if isinstance(event, RoomMessageImage):
                    return event
            return None

        image = await sync_until(viewer, image_event)
        assert image.url == uploaded.content_uri

        # nio 0.26 downloads through the authenticated /_matrix/client/v1/media API
        downloaded = await viewer.download(mxc=image.url)
        assert isinstance(downloaded, MemoryDownloadResponse), downloaded
        assert downloaded.body == png
        assert downloaded.content_type == "image/png"
        assert downloaded.filename == "leak.png"


async def test_new_room_version_is_12(synapse_server: SynapseServer) -> None:
    async with synapse_server.client_session(synapse_server.unique_name("creator")) as creator:
        created = await creator.room_create()
        assert isinstance(created, RoomCreateResponse), created
        create_event = await creator.room_get_state_event(created.room_id, "m.room.create")
        assert isinstance(create_event, RoomGetStateEventResponse), create_event

        caps = synapse_server.api("GET", "/_matrix/client/v3/capabilities", token=creator.access_token).json()
        default_version = caps["capabilities"]["m.room_versions"]["default"]
        assert create_event.content["room_version"] == default_version == "12"

        # v12: room IDs carry no server name; creators are not in the power_levels users map
        assert ":" not in created.room_id
        power = await creator.room_get_state_event(created.room_id, "m.room.power_levels")
        assert isinstance(power, RoomGetStateEventResponse), power
        assert creator.user_id not in power.content.get("users", {})


async def test_strict_server_rate_limits_and_override(synapse_strict: SynapseServer) -> None:
    assert not synapse_strict.relaxed_limits
    name = synapse_strict.unique_name("chatty")
    async with synapse_strict.client_session(name) as client:
        room = await client.room_create()
        assert isinstance(room, RoomCreateResponse), room

        async def send(body: str) -> RoomSendResponse | RoomSendError:
            return await client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": body})

        # default rc_message is 0.2/s with burst 10; Synapse delays each 429 by ~0.5 s
        limited = None
        for i in range(15):
            if isinstance(result := await send(f"msg {i}"), RoomSendError):
                limited = result
                break
        assert limited is not None, "expected M_LIMIT_EXCEEDED from the strict server"
        assert limited.status_code == "M_LIMIT_EXCEEDED"
        assert limited.retry_after_ms

        admin_id, admin_token = synapse_strict.admin_user()
        assert admin_id.startswith("@admin_")
        synapse_strict.override_ratelimit(client.user_id, admin_token)
        for i in range(15):
            assert isinstance(await send(f"unlimited {i}"), RoomSendResponse)
