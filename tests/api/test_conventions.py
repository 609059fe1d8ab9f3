"""One API convention, checked over the whole OpenAPI document and a few real requests.

Every route declares its answer (a 2xx without a schema fails here), lists are ``{items, next_cursor}``
with ``limit``/``cursor``, field names are snake_case, authentication is the HTTPBearer scheme, ``/``
redirects to the docs, and every answer carries a request ID that the JSON access log repeats.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from datavalley.api.app import create_app
from datavalley.api.logs import JsonLines
from datavalley.exchange import Exchange
from datavalley.home import init_home, open_exchange

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
# Open documents whose field names are fixed by outside standards (JSON-LD / ODRL / DCAT), not by us.
FOREIGN_SCHEMAS: set[str] = set()
# Routes of an outside protocol whose names are fixed by its specification: Delta Sharing (camelCase query
# parameters such as maxResults/pageToken, docs/DELIVERY.md). Its file routes are authorised by the signed
# URL itself (HMAC, short expiry), not by a bearer header.
FOREIGN_PROTOCOL = "/delta-sharing/"
SIGNED_URL_ROUTES = "/delta-sharing/files/"


@pytest.fixture(scope="module")
def app_and_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    home: Path = tmp_path_factory.mktemp("conv") / "home"
    token = init_home(home).token.secret
    ex: Exchange = open_exchange(home)
    try:
        yield create_app(ex), token
    finally:
        ex.close()


@pytest.fixture(scope="module")
def spec(app_and_token: tuple[Any, str]) -> dict[str, Any]:
    document: dict[str, Any] = app_and_token[0].openapi()
    return document


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return resolved
    return schema


def test_every_success_response_declares_a_schema(spec: dict[str, Any]) -> None:
    missing = []
    for method, path, op in _operations(spec):
        for code, response in op["responses"].items():
            if not code.startswith("2"):
                continue
            content = response.get("content") or {}
            json_schema = content.get("application/json", {}).get("schema")
            other_media = [m for m in content if m != "application/json"]
            if not content or ("application/json" in content and not json_schema and not other_media):
                missing.append(f"{method} {path} {code}")
    assert missing == [], f"2xx answers without a response model: {missing}"
    assert len(list(_operations(spec))) >= 80


def test_lists_are_items_and_next_cursor_with_limit_and_cursor(spec: dict[str, Any]) -> None:
    lists = 0
    for method, path, op in _operations(spec):
        schema = op["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema")
        if method != "GET" or not schema:
            continue
        props = _resolve(spec, schema).get("properties", {})
        if "items" not in props:
            continue
        lists += 1
        assert "next_cursor" in props, f"{path}: a list without next_cursor"
        params = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert {"limit", "cursor"} <= params, f"{path}: a list without limit/cursor ({params})"
    assert lists >= 15


def test_field_names_are_snake_case(spec: dict[str, Any]) -> None:
    bad = []
    for name, schema in spec["components"]["schemas"].items():
        if name in FOREIGN_SCHEMAS:
            continue
        bad += [f"{name}.{p}" for p in schema.get("properties", {}) if not SNAKE.match(p)]
    for method, path, op in _operations(spec):
        if path.startswith(FOREIGN_PROTOCOL):
            continue
        bad += [
            f"{method} {path} ?{p['name']}" for p in op.get("parameters", []) if not SNAKE.match(p["name"])
        ]
    assert bad == []


def test_bearer_security_scheme_on_every_authenticated_route(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    unsecured = [
        f"{m} {p}"
        for m, p, op in _operations(spec)
        if p != "/v1/health" and not p.startswith(SIGNED_URL_ROUTES) and not op.get("security")
    ]
    assert unsecured == []


def _client(app: Any, token: str | None = None) -> httpx.Client:
    from datavalley.client import InProcessTransport

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url="http://dv.test", transport=InProcessTransport(app), headers=headers)


def test_root_redirects_to_the_docs(app_and_token: tuple[Any, str]) -> None:
    app, _ = app_and_token
    with _client(app) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/docs"
        assert c.get("/docs").status_code == 200


def test_request_id_header_and_json_access_log(
    app_and_token: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, token = app_and_token
    with caplog.at_level(logging.INFO, logger="datavalley.access"), _client(app, token) as c:
        mine = c.get("/v1/whoami", headers={"X-Request-ID": "trace-42"})
        fresh = c.get("/v1/participants/p_nobody")
        hostile = c.get("/v1/whoami", headers={"X-Request-ID": "bad id\nwith newline"})
    assert mine.status_code == 200 and mine.headers["X-Request-ID"] == "trace-42"
    assert fresh.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-ID"])
    assert hostile.headers["X-Request-ID"] != "bad id\nwith newline"
    lines = [json.loads(JsonLines().format(r)) for r in caplog.records if r.name == "datavalley.access"]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["trace-42"]["route"] == "/v1/whoami" and by_id["trace-42"]["status"] == 200
    missing = by_id[fresh.headers["X-Request-ID"]]
    # the route template is logged, never the ID in the path, and never the token
    assert missing["route"] == "/v1/participants/{participant_id}" and missing["status"] == 404
    assert all(token not in json.dumps(line) and "p_nobody" not in json.dumps(line) for line in lines)


def test_paged_whole_lists_follow_cursors(app_and_token: tuple[Any, str]) -> None:
    app, token = app_and_token
    with _client(app, token) as c:
        first = c.get("/v1/accounts", params={"limit": 1}).json()
        assert set(first) == {"items", "next_cursor"} and len(first["items"]) <= 1
        bad = c.get("/v1/accounts", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_input"
