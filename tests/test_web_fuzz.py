"""`linli web` answers bad or huge parameters with a 4xx, never a 500, and serves photos only from its own folder.

Schemathesis fuzzes every operation of the app's own /openapi.json (the JSON API and Open311) with a valid
token, so the handlers really run on the fortnight of tests/test_web.py; the URLs that once answered 500 are
kept as plain cases; photo references that lead out of Linli's folder must answer 404.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlmodel import select

from storage.db import session
from storage.models import Order, Photo
from tests.test_web import Site, World, busy_neighbourhood, open_site, tiny_png

SUPERVISOR = "周主任"  # sees the whole community, so every handler gets past the scope checks
MAX_EXAMPLES = 150  # per operation and generation mode: 7 operations, ~1,200 requests, about 15 s on 2 cores
BIG = "9" * 30  # past what SQLite's 64-bit INTEGER holds
calls: Counter[tuple[str, int]] = Counter()  # (operation, status class) → responses, for the coverage check


# Opened at import: @schema.parametrize() needs the operations when pytest collects. The fortnight is built once
# per run (functools.cache), shared with tests/test_web.py, and these tests only add tokens to it.
SITE = open_site(busy_neighbourhood())
schema = schemathesis.openapi.from_asgi("/openapi.json", SITE.client.app)


@pytest.fixture(scope="module")
def world() -> World:
    return busy_neighbourhood()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    yield SITE
    SITE.engine.dispose()


@pytest.fixture(scope="module")
def headers(site: Site) -> dict[str, str]:
    return site.as_(SUPERVISOR)


# --- the fuzz ---------------------------------------------------------------------------------------
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,  # no saved examples: each run starts fresh
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case: schemathesis.Case, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    calls[case.operation.label, response.status_code // 100] += 1
    assert response.status_code < 500, f"{case.as_curl_command()} → {response.status_code}: {response.text[:300]}"


def test_the_fuzz_reached_every_operation_with_good_and_bad_input() -> None:
    """Guards the fuzz itself: with a refused token every case would be a harmless 401."""
    if not calls:
        pytest.skip("the fuzz did not run in this session")
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert {label for label, status in calls if status == 2} == labels
    assert {label for label, status in calls if status == 4} >= labels - {"GET /open311/v2/services.json"}
    assert not any(status == 5 for _, status in calls)


# --- the URLs that answered 500 ---------------------------------------------------------------------
REFUSED = [
    "/api/orders/99999999999999999999",
    "/api/orders/9223372036854775808",  # 2**63: one past SQLite's INTEGER
    "/api/orders/2147483648",  # one past PostgreSQL's INTEGER
    "/api/orders/-99999999999999999999",
    "/api/orders?offset=1e20",
    "/api/orders?offset=99999999999999999999",
    "/api/orders?limit=-5",
    "/api/orders?to=9999-12-31",
    "/api/orders?from=0001-01-01",
    "/api/orders?from=1999-12-31",
    "/api/orders?to=2101-01-01",
    "/api/orders?grid=" + "x" * 65,
    "/api/orders?grid=YG%00A",
    "/api/rates?to=9999-12-31",
    "/api/rates?from=0001-01-01",
    "/api/rates/series?to=9999-12-31",
    "/api/rates/series?from=0001-01-01",
    "/open311/v2/requests.json?start_date=0001-01-01T00:00:00",
    "/open311/v2/requests.json?start_date=0001-01-01T00:00:00%2B14:00",
    "/open311/v2/requests.json?end_date=0001-01-01T00:00:00",
    "/open311/v2/requests.json?start_date=9999-12-31T23:59:59-14:00",
    "/open311/v2/requests.json?service_code=" + ",".join(["noise"] * 200),
    "/open311/v2/requests.json?service_code=noise%00",
    "/open311/v2/requests/" + "1" * 65 + ".json",
    "/orders/99999999999999999999",
    "/orders/1/photos/99999999999999999999",
    "/?to=9999-12-31",
    "/?from=0001-01-01",
]
NOT_FOUND = ["/open311/v2/requests/①.json", "/open311/v2/requests/１２.json", "/open311/v2/requests/².json",
             f"/open311/v2/requests/{BIG}.json", "/api/orders/2147483647", "/orders/2147483647"]
NOTHING = [f"/open311/v2/requests.json?service_request_id={ids}" for ids in ("①", "１２", BIG, f"{BIG},x")]
ACCEPTED = ["/api/orders?from=2000-01-01&to=2100-12-31", "/api/orders?offset=2147483647",
            "/api/rates/series?from=2000-01-01", "/api/rates?to=2100-12-31", "/?from=2000-01-01&to=2100-12-31",
            "/open311/v2/requests.json?start_date=2000-01-01T00:00:00%2B14:00&end_date=2100-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("url", REFUSED)
def test_bad_parameters_are_refused_as_invalid(site: Site, headers: dict[str, str], url: str) -> None:
    assert site.client.get(url, headers=headers).status_code == 422


@pytest.mark.parametrize("url", NOT_FOUND)
def test_ids_that_name_no_order_are_not_found(site: Site, headers: dict[str, str], url: str) -> None:
    assert site.client.get(url, headers=headers).status_code == 404


@pytest.mark.parametrize("url", NOTHING)
def test_open311_ids_that_name_no_order_match_nothing(site: Site, headers: dict[str, str], url: str) -> None:
    answer = site.client.get(url, headers=headers)
    assert (answer.status_code, answer.json()) == (200, [])


@pytest.mark.parametrize("url", ACCEPTED)
def test_the_edges_of_the_ranges_are_accepted(site: Site, headers: dict[str, str], url: str) -> None:
    assert site.client.get(url, headers=headers).status_code == 200


def test_a_bad_date_in_a_page_link_gets_a_page(site: Site, headers: dict[str, str]) -> None:
    answer = site.client.get("/?from=0001-01-01", headers=headers)
    assert answer.status_code == 422 and "参数有误" in answer.text and "from" in answer.text
    api = site.client.get("/api/rates?from=0001-01-01", headers=headers)
    assert api.json()["detail"][0]["loc"] == ["query", "from"]  # the API keeps FastAPI's 422


def test_open311_still_finds_an_order_by_its_number(site: Site, headers: dict[str, str]) -> None:
    listed = site.client.get("/open311/v2/requests.json", params={"service_request_id": "4, 5,①"},
                             headers=headers).json()
    assert sorted(r["service_request_id"] for r in listed) == ["4", "5"]


# --- photos only from Linli's folder ------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_copy(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Path]]:
    """The fortnight in a folder of its own (so the shared world keeps its photos), and a folder beside it
    holding an image that must never be served."""
    base = tmp_path_factory.mktemp("photos")
    folder, outside = base / "linli", base / "outside"
    folder.mkdir()
    outside.mkdir()
    shutil.copy(world.path, folder / "linli.db")
    tiny_png(outside / "secret.png")
    copy = open_site(replace(world, path=folder / "linli.db", url=f"sqlite:///{folder / 'linli.db'}"))
    yield copy, outside / "secret.png"
    copy.engine.dispose()


def add_photo(site: Site, number: int, ref: str) -> int:
    with session(site.engine) as db:
        order = db.exec(select(Order).where(Order.number == number)).one()
        photo = Photo(order_id=order.id or 0, service="console", ref=ref, purpose="completion", at=order.created_at)
        db.add(photo)
        db.commit()
        return photo.id or 0


def photo_answer(site: Site, number: int, ref: str) -> int:
    photo_id = add_photo(site, number, ref)
    detail = site.client.get(f"/api/orders/{number}", headers=site.as_(SUPERVISOR)).json()
    shown = next(p for p in detail["photos"] if p["id"] == photo_id)
    status = site.client.get(f"/orders/{number}/photos/{photo_id}", headers=site.as_(SUPERVISOR)).status_code
    assert shown["local"] is (status == 200)  # the page offers exactly what is served
    return status


def test_a_photo_in_linlis_folder_is_served(own_copy: tuple[Site, Path]) -> None:
    site, _ = own_copy
    media = site.client.app.state.media  # type: ignore[attr-defined]
    tiny_png(media / "done.png")
    (media / "linli-media" / "example.org").mkdir(parents=True)
    tiny_png(media / "linli-media" / "example.org" / "abc.png")
    assert photo_answer(site, 2, str(media / "done.png")) == 200  # absolute, inside
    assert photo_answer(site, 2, "done.png") == 200  # relative to Linli's folder, wherever `linli web` started
    assert photo_answer(site, 2, "linli-media/example.org/abc.png") == 200


@pytest.mark.parametrize("ref", ["../../etc/passwd.jpg", "/root/x.png", "/etc/passwd", "~/x.png",
                                 "photos/\0.png", "https://example.org/x.png"])
def test_a_photo_reference_out_of_linlis_folder_is_not_found(own_copy: tuple[Site, Path], ref: str) -> None:
    assert photo_answer(own_copy[0], 3, ref) == 404


def test_an_existing_image_outside_linlis_folder_is_not_served(own_copy: tuple[Site, Path]) -> None:
    site, secret = own_copy
    media = site.client.app.state.media  # type: ignore[attr-defined]
    (media / "sneaky.png").symlink_to(secret)
    for ref in (str(secret), "../outside/secret.png", "linli-media/../../outside/secret.png", "sneaky.png"):
        assert photo_answer(site, 4, ref) == 404, ref


def test_the_original_photo_outside_the_copys_folder_is_not_served(own_copy: tuple[Site, Path],
                                                                    world: World) -> None:
    """Order #1's photo lives beside the shared world's database: served there, not from the copy's folder."""
    site, _ = own_copy
    detail = site.client.get("/api/orders/1", headers=site.as_(SUPERVISOR)).json()
    first = detail["photos"][0]
    assert first["ref"] == str(world.photo) and first["local"] is False
    assert site.client.get(f"/orders/1/photos/{first['id']}", headers=site.as_(SUPERVISOR)).status_code == 404


def test_the_same_urls_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL's INTEGER is 32-bit and its text refuses NUL: the bounds hold there too."""
    from tests.test_web import play_fortnight

    site = open_site(play_fortnight(postgres_url, tmp_path, days=2))
    try:
        headers = site.as_(SUPERVISOR)
        got = {url: site.client.get(url, headers=headers).status_code for url in [*REFUSED, *NOT_FOUND, *ACCEPTED]}
        want = {**dict.fromkeys(REFUSED, 422), **dict.fromkeys(NOT_FOUND, 404), **dict.fromkeys(ACCEPTED, 200)}
        assert got == want
        assert all(site.client.get(url, headers=headers).json() == [] for url in NOTHING)
    finally:
        site.engine.dispose()
