"""Money calls under concurrency and hostile numbers: eight simultaneous requests with one Idempotency-Key
have one effect and every caller gets that one result (or 409 "in progress" with Retry-After), never a
500; non-finite numbers anywhere in a body are 422; oversized integers are 422 in bodies and 404 as IDs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import World
from datavalley.api.app import create_app
from datavalley.errors import InvalidInput
from datavalley.market.contracts import record_use
from datavalley.market.model import Product
from market.conftest import Party, assert_money_ok, digest_of, negotiate
from psi.support import ThreadServer

N = 8


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """The test's exchange behind a real HTTP server, so the eight requests really run at once."""
    with ThreadServer(create_app(world.exchange)) as s:
        yield f"http://127.0.0.1:{s.port}"


def _all_at_once(url: str, token: str, path: str, body: Any, key: str) -> list[httpx.Response]:
    barrier = threading.Barrier(N)
    out: list[httpx.Response | BaseException] = [httpx.Response(0)] * N

    def go(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
            barrier.wait()
            try:
                out[i] = c.post(path, json=body, headers=headers)
            except BaseException as exc:
                out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    errors = [r for r in out if isinstance(r, BaseException)]
    assert not errors, errors
    return [r for r in out if isinstance(r, httpx.Response)]


def _one_result(responses: list[httpx.Response], status: int) -> dict[str, Any]:
    assert all(r.status_code in (status, 409) for r in responses), [r.text for r in responses]
    busy = [r for r in responses if r.status_code == 409]
    for r in busy:
        assert r.json()["message"].endswith("still in progress; retry shortly") and r.headers["Retry-After"]
    done = [r for r in responses if r.status_code == status]
    assert done, "no caller got the result"
    assert all(r.json()["data"] == done[0].json()["data"] for r in done)
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in done) == len(done) - 1
    data: dict[str, Any] = done[0].json()["data"]
    return data


def test_eight_simultaneous_uses_with_one_key_charge_once_and_all_get_the_result(
    world: World, server: str, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=5)
    body = {
        "operation": "dv:aggregateQuery",
        "purpose": "insurance-pricing",
        "request_digest": digest_of("SELECT 1"),
        "privacy_cost": 0.5,
        "min_group_size": 10,
    }
    used = _one_result(_all_at_once(server, insurer.token, f"/v1/contracts/{c.id}/uses", body, "use-1"), 201)
    after = insurer.client.get_contract(c.id)
    assert (after.uses, after.budget_spent, after.released) == (1, 0.5, 500)
    assert [u.id for u in insurer.client.uses(c.id)] == [used["id"]]
    # the same key with another request is a conflict, not a second use
    r = httpx.post(
        f"{server}/v1/contracts/{c.id}/uses",
        json={**body, "privacy_cost": 0.25},
        headers={"Authorization": f"Bearer {insurer.token}", "Idempotency-Key": "use-1"},
    )
    assert r.status_code == 409 and "different request" in r.json()["message"]
    assert insurer.client.get_contract(c.id).uses == 1
    assert_money_ok(world)


def test_eight_simultaneous_deposits_with_one_key_make_one_payment(
    world: World, server: str, insurer: Party
) -> None:
    body = {"amount": 12_345, "reference": "bank ref 77"}
    before = len(insurer.client.payments())
    paid = _one_result(_all_at_once(server, insurer.token, "/v1/payments/deposits", body, "dep-1"), 201)
    payments = insurer.client.payments()
    assert len(payments) == before + 1 and payments[-1].id == paid["id"]
    assert_money_ok(world)


def test_non_finite_numbers_anywhere_in_a_body_are_422_and_change_nothing(
    world: World, insurer: Party, logistics: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=5)
    client = insurer.client
    for number in ("NaN", "Infinity", "-Infinity", "1e999", "-1e400"):
        use_body = (
            '{"operation": "dv:aggregateQuery", "purpose": "insurance-pricing", "min_group_size": 10, '
            f'"request_digest": "{digest_of("SELECT 1")}", "privacy_cost": {number}}}'
        )
        bodies = [
            (f"/v1/contracts/{c.id}/uses", use_body),
            (f"/v1/contracts/{c.id}/queries", f'{{"sql": "SELECT COUNT(*) FROM data", "epsilon": {number}}}'),
            (
                "/v1/contracts",
                f'{{"product_id": "{analytics.id}", "purpose": "risk-control", '
                f'"privacy": {{"epsilon": {number}}}}}',
            ),
            (
                "/v1/products",
                '{"name": "x", "kind": "private_analytics", "resource_ids": ["r_x"], '
                f'"price": {{"model": "free"}}, "terms": {{"deep": [1, {{"x": {number}}}]}}}}',
            ),
        ]
        for path, text in bodies:
            r = client._http.post(path, content=text, headers={"content-type": "application/json"})
            assert r.status_code == 422, (number, path, r.status_code, r.text)
            assert r.json()["error"] == "invalid_input" and "finite" in r.json()["message"]
    # in-process callers (the node) pass floats, not JSON: the service refuses NaN/inf itself
    principal = world.exchange.authenticate(insurer.token)
    for bad in (float("nan"), float("inf"), float("-inf"), -0.5):
        with pytest.raises(InvalidInput, match="privacy_cost"):
            world.exchange.run(
                principal,
                record_use,
                c.id,
                render=lambda u: {},
                operation="dv:aggregateQuery",
                purpose="insurance-pricing",
                privacy_cost=bad,
                request_digest=digest_of("x"),
                min_group_size=10,
            )
    after = client.get_contract(c.id)
    assert (after.uses, after.budget_spent) == (0, 0.0)
    assert len(client.contracts()) == 1


def test_oversized_integers_are_404_as_ids_and_422_in_bodies(world: World, insurer: Party) -> None:
    http = insurer.client._http
    huge = 10**30
    for path in (
        f"/v1/ledger/receipts/{huge}",
        f"/v1/ledger/checkpoints/{huge}",
        f"/v1/ledger/receipts/{2**63}",
        f"/v1/ledger/receipts/-{huge}",
    ):
        r = http.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.json()["error"] == "not_found"
    for path, params in (
        ("/v1/ledger/entries", {"start": 0, "end": huge}),
        ("/v1/ledger/proofs/inclusion", {"size": huge, "index": 0}),
        ("/v1/ledger/proofs/consistency", {"old_size": 1, "new_size": huge}),
    ):
        r = http.get(path, params=params)
        assert r.status_code in (404, 422), (path, r.status_code, r.text)
    before = insurer.client.payments()
    for amount in (huge, 2**63, -(2**63) - 1):
        body = f'{{"amount": {amount}, "reference": "bank ref 9"}}'
        r = http.post("/v1/payments/deposits", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "64-bit" in r.json()["message"], r.text
    assert insurer.client.payments() == before


def test_a_repeat_waits_for_the_first_request_and_replays_it_or_is_told_to_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request holds its key for as long as it runs; a repeat waits and replays its answer.
    On PostgreSQL a repeat that would wait longer than the bound is a 409 with a retry hint."""
    import time

    from datavalley import exchange as exchange_module
    from datavalley.errors import Conflict
    from datavalley.exchange import Context, Idempotency

    ex = world.exchange
    principal = ex.authenticate(world.operator_token)
    calls: list[str] = []

    def slow(ctx: Context, hold: float) -> dict[str, Any]:
        calls.append("ran")
        ctx.emit("test.slow", [], {"hold": hold})
        time.sleep(hold)
        return {"ran": len(calls)}

    def run(key: str, hold: float, out: list[Any]) -> None:
        try:
            idem = Idempotency.of(key, "POST", "/test", {"x": 1})
            out.append(ex.run(principal, slow, hold, render=lambda v: v, idempotency=idem))
        except Exception as exc:
            out.append(exc)

    first: list[Any] = []
    second: list[Any] = []
    a = threading.Thread(target=run, args=("k-wait", 1.0, first))
    a.start()
    time.sleep(0.3)
    run("k-wait", 0.0, second)
    a.join(30)
    assert calls == ["ran"]  # the repeat never ran the use case
    assert not first[0].replayed and second[0].replayed and second[0].body == first[0].body == {"ran": 1}
    if ex.engine.dialect.name != "postgresql":
        return  # SQLite serialises writers at BEGIN IMMEDIATE: a repeat always waits for the answer
    monkeypatch.setattr(exchange_module, "IDEMPOTENCY_WAIT_MS", 200)
    first.clear()
    second.clear()
    a = threading.Thread(target=run, args=("k-busy", 2.0, first))
    a.start()
    time.sleep(0.3)
    run("k-busy", 0.0, second)
    a.join(30)
    assert isinstance(second[0], Conflict) and second[0].details["retry_after"] == 1
    assert "still in progress" in second[0].message and calls == ["ran", "ran"]
    run("k-busy", 0.0, second)  # once the first has committed, the retry replays its answer
    assert second[1].replayed and second[1].body == first[0].body
