"""CORS as Crew answers it (Express's ``cors()`` defaults), and narrowed by --cors-origins."""

from __future__ import annotations

import pytest

from crew_aio.config import ConfigError, Settings
from tests.integration.conftest import Api, ApiFactory

V1 = "/api/v1"
UI = "http://localhost:8080"  # where `crew-ui serve` runs


async def test_every_answer_allows_any_origin(api: Api) -> None:
    for headers in ({"Origin": UI}, {}):  # Crew's cors() sends it whether asked or not
        resp = await api.client.get(f"{V1}/task_groups", headers=headers)
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in resp.headers
    missing = await api.client.get(f"{V1}/task/nope", headers={"Origin": UI})
    assert missing.status == 404 and missing.headers["Access-Control-Allow-Origin"] == "*"
    unknown = await api.client.get("/no/such/route", headers={"Origin": UI})
    assert unknown.status == 404 and unknown.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_streamed_listing_carries_the_header(api: Api) -> None:
    gid = await api.group()
    body = [{"name": f"t{i}", "channel": "c"} for i in range(1200)]  # past one chunk: streamed
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    resp = await api.client.get(f"{V1}/task_group/{gid}/tasks?limit=0", headers={"Origin": UI})
    assert resp.status == 200 and "Content-Length" not in resp.headers
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert len(await resp.json()) == 1200


async def test_a_preflight_needs_no_token_and_allows_what_is_asked(make_api: ApiFactory) -> None:
    api = await make_api(api_token="secret")
    for path in (f"{V1}/task_group/x/tasks", f"{V1}/task/x", "/anything/at/all"):
        resp = await api.client.options(path, headers={
            "Origin": UI,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization,content-type",
        })  # fmt: skip
        assert resp.status == 204, path
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
        assert resp.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
        assert resp.headers["Vary"] == "Access-Control-Request-Headers"
        assert await resp.read() == b""
    # the real request still needs its token
    refused = await api.client.get(f"{V1}/task_groups", headers={"Origin": UI})
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"


async def test_the_websocket_handshake_allows_any_origin(api: Api) -> None:
    ws = await api.client.ws_connect(f"{V1}/ws", headers={"Origin": UI})
    assert ws._response.headers["Access-Control-Allow-Origin"] == "*"
    await ws.close()


async def test_an_allow_list_reflects_only_its_origins(make_api: ApiFactory) -> None:
    api = await make_api(cors_origins=f"{UI}, https://ui.example.com/")
    for origin in (UI, "https://ui.example.com"):
        resp = await api.client.get(f"{V1}/task_groups", headers={"Origin": origin})
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in resp.headers["Vary"]
    other = await api.client.get(f"{V1}/task_groups", headers={"Origin": "https://evil.example"})
    assert other.status == 200  # the server answers; the browser refuses to show it
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]
    preflight = await api.client.options(
        f"{V1}/task_groups", headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_none_sends_no_cors_header(make_api: ApiFactory) -> None:
    api = await make_api(cors_origins="none")
    resp = await api.client.get(f"{V1}/task_groups", headers={"Origin": UI})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    preflight = await api.client.options(f"{V1}/task_groups", headers={"Origin": UI})
    assert preflight.status == 405


@pytest.mark.parametrize("bad", ["", "ftp://x", "https://ui.example.com/path", "ui.example.com"])
def test_a_malformed_origin_list_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="origins"):
        Settings(cors_origins=bad).validate()
