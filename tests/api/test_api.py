"""The HTTP surface: status codes, error bodies, malformed JSON, idempotency, pagination, OpenAPI."""

from __future__ import annotations

import pytest

from conftest import World, make_uscc
from datavalley.errors import Conflict, InvalidInput


def _register_body(name: str = "Idem Co", code: str | None = None) -> dict[str, object]:
    return {
        "name": name,
        "kind": "enterprise",
        "country": "CN",
        "registry_id": code or make_uscc(),
        "roles": ["provider"],
        "admin_name": "someone",
    }


def test_error_body_shape_and_status(world: World) -> None:
    """Errors answer {error, message, details} with the class's status: 401, 404, 422."""
    raw = world.client_for(None)._http
    r = raw.get("/v1/participants")
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    op = world.operator._http
    r = op.get("/v1/participants/p_missing")
    assert r.status_code == 404
    assert r.json() == {
        "error": "not_found",
        "message": "participant p_missing does not exist",
        "details": {"participant_id": "p_missing"},
    }


def test_malformed_json_is_invalid_input(world: World) -> None:
    """A body that is not JSON, or lacks fields, is 422 invalid_input naming the field."""
    op = world.operator._http
    r = op.post("/v1/participants", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"
    r = op.post("/v1/participants", json={"name": "x"})
    assert r.status_code == 422
    assert r.json()["details"]["field"] in {"kind", "registry_id", "roles", "admin_name"}
    r = op.post("/v1/participants", json={**_register_body(), "surprise": 1})
    assert r.status_code == 422 and "surprise" in r.json()["message"]


def test_idempotency_key_replays_and_conflicts(world: World) -> None:
    """The same key and body replays the first answer (one participant); another body under it is 409."""
    op = world.operator
    body = _register_body()
    first = op.post("/v1/participants", body, idempotency_key="reg-1")
    again = op.post("/v1/participants", body, idempotency_key="reg-1")
    assert first[0] == again[0] and again[2] is True and first[2] is False
    assert again[1][0]["index"] == first[1][0]["index"]  # same ledger entry, not a new one
    names = [p.name for p in op.iter_participants()]
    assert names.count("Idem Co") == 1
    with pytest.raises(Conflict, match="different request"):
        op.post("/v1/participants", _register_body("Other"), idempotency_key="reg-1")


def test_token_replay_never_shows_the_secret_again(world: World) -> None:
    """A replayed token issue says the token exists but cannot reveal the secret a second time."""
    _, admin, _ = world.onboard("Secret Co", ["consumer"])
    first = world.operator.issue_token(admin.id, idempotency_key="tok-1")
    replay = world.operator.issue_token(admin.id, idempotency_key="tok-1")
    assert first.value.secret.startswith("dvt_")
    assert replay.replayed and replay.value.secret == "" and replay.value.token.id == first.value.token.id
    assert len(world.operator.list_tokens(admin.id).items) == 2  # the onboarding token and this one


def test_cursor_pagination_walks_every_item_once(world: World) -> None:
    """Pages of 2 cover all participants exactly once, in creation order; bad cursors are 422."""
    for i in range(5):
        world.operator.register_participant(
            name=f"Page {i}", kind="enterprise", registry_id=make_uscc(), roles=["consumer"], admin_name="x"
        )
    seen, cursor = [], None
    while True:
        page = world.operator.list_participants(limit=2, cursor=cursor)
        seen += [p.id for p in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 6 and seen == sorted(seen)
    assert [p.id for p in world.operator.iter_participants()] == seen
    with pytest.raises(InvalidInput):
        world.operator.list_participants(limit=1000)


def test_openapi_lists_the_routes(world: World) -> None:
    """/openapi.json documents participants, tokens, keys and ledger routes."""
    spec = world.operator._http.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/participants",
        "/v1/members/{member_id}/tokens",
        "/v1/participants/{participant_id}/keys",
        "/v1/ledger/checkpoint",
        "/v1/ledger/proofs/inclusion",
    } <= paths


def test_mutations_return_receipts(world: World) -> None:
    """Every state change answers with a receipt whose checkpoint covers its entry."""
    res = world.operator.register_participant(
        name="Receipt Co", kind="enterprise", registry_id=make_uscc(), roles=["provider"], admin_name="x"
    )
    (r,) = res.receipts
    size = int(r["checkpoint"].split("\n")[1])
    assert 0 <= r["index"] < size
