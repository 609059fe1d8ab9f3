"""Identity rules hold through the API on SQLite and PostgreSQL: validation, roles, tokens, keys."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from conftest import World, make_uscc
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from datavalley.events import EventRow
from datavalley.identity.tables import KeyRow, ParticipantRow, TokenRow
from datavalley.keys import public_key_b64


def _counts(world: World) -> tuple[int, int]:
    with world.exchange.session(write=False) as s:
        return (
            s.scalar(select(func.count()).select_from(ParticipantRow)) or 0,
            s.scalar(select(func.count()).select_from(EventRow)) or 0,
        )


def test_invalid_uscc_is_refused_and_writes_nothing(world: World) -> None:
    """A USCC with a wrong check character is InvalidInput naming the code; no row or event is written."""
    before = _counts(world)
    good = make_uscc()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(InvalidInput, match="not a valid unified social credit code") as exc:
        world.operator.register_participant(
            name="Bad Co", kind="enterprise", registry_id=bad, roles=["provider"], admin_name="x"
        )
    assert exc.value.details["field"] == "registry_id"
    assert _counts(world) == before


def test_duplicate_participant_conflicts_and_writes_nothing(world: World) -> None:
    """Registering the same USCC twice is a Conflict naming the existing participant."""
    code = make_uscc()
    first = world.operator.register_participant(
        name="A", kind="enterprise", registry_id=code, roles=["provider"], admin_name="a"
    ).value[0]
    before = _counts(world)
    with pytest.raises(Conflict, match=first.id):
        world.operator.register_participant(
            name="A again", kind="enterprise", registry_id=code, roles=["consumer"], admin_name="b"
        )
    assert _counts(world) == before


def test_foreign_organisation_uses_country_and_registry_number(world: World) -> None:
    """A non-CN organisation is identified by country + registry number; bad country codes are refused."""
    p = world.operator.register_participant(
        name="Acme GmbH",
        kind="enterprise",
        country="de",
        registry_id="HRB 12345",
        roles=["consumer"],
        admin_name="x",
    ).value[0]
    assert (p.country, p.registry_id) == ("DE", "HRB 12345")
    with pytest.raises(InvalidInput, match="alpha-2"):
        world.operator.register_participant(
            name="Bad", kind="enterprise", country="DEU", registry_id="1", roles=["consumer"], admin_name="x"
        )


def test_status_transitions(world: World) -> None:
    """pending -> verified -> suspended -> verified; wrong transitions are Conflicts."""
    op = world.operator
    p = op.register_participant(
        name="T", kind="enterprise", registry_id=make_uscc(), roles=["provider"], admin_name="t"
    ).value[0]
    assert p.status.value == "pending"
    with pytest.raises(Conflict, match="it is pending, not verified"):
        op.change_participant_status(p.id, "suspend")
    assert op.change_participant_status(p.id, "verify").value.status.value == "verified"
    assert op.change_participant_status(p.id, "suspend").value.status.value == "suspended"
    assert op.change_participant_status(p.id, "reinstate").value.status.value == "verified"
    with pytest.raises(Conflict):
        op.change_participant_status(p.id, "verify")


def test_only_operator_registers_and_verifies(world: World) -> None:
    """A provider's token cannot register or verify participants (Forbidden names the role)."""
    _, _, token = world.onboard("Provider Co", ["provider"])
    prov = world.client_for(token)
    with pytest.raises(Forbidden, match="needs the operator role"):
        prov.register_participant(
            name="X", kind="enterprise", registry_id=make_uscc(), roles=["consumer"], admin_name="x"
        )


def test_suspension_stops_tokens_at_once(world: World) -> None:
    """A suspended participant's tokens are refused; reinstating restores them."""
    p, _, token = world.onboard("Suspend Co", ["consumer"])
    c = world.client_for(token)
    assert c.whoami()["participant_id"] == p.id
    world.operator.change_participant_status(p.id, "suspend", reason="unpaid fees")
    with pytest.raises(Unauthenticated, match="suspended"):
        c.whoami()
    world.operator.change_participant_status(p.id, "reinstate")
    assert c.whoami()["participant_id"] == p.id


def test_token_expiry_revocation_and_garbage(world: World) -> None:
    """Expired, revoked, unknown and malformed tokens each get their own 401 message."""
    _, admin, _ = world.onboard("Tok Co", ["consumer"])
    issued = world.operator.issue_token(admin.id, ttl_days=1).value
    c = world.client_for(issued.secret)
    assert c.whoami()["member_id"] == admin.id
    world.clock.advance(days=1, seconds=1)
    with pytest.raises(Unauthenticated, match="expired"):
        c.whoami()
    fresh = world.operator.issue_token(admin.id).value
    world.operator.revoke_token(fresh.token.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        world.client_for(fresh.secret).whoami()
    with pytest.raises(Unauthenticated, match="not known"):
        world.client_for("dvt_" + "A" * 43).whoami()
    with pytest.raises(Unauthenticated, match="malformed"):
        world.client_for("Bearer-nonsense").whoami()
    with pytest.raises(Unauthenticated, match="no API token"):
        world.client_for(None).whoami()


def test_tokens_are_stored_only_as_hashes(world: World) -> None:
    """The database holds the SHA-256 of a token, never the token."""
    _, admin, _ = world.onboard("Hash Co", ["consumer"])
    issued = world.operator.issue_token(admin.id).value
    with world.exchange.session(write=False) as s:
        stored = s.get(TokenRow, issued.token.id)
        assert stored is not None
        assert issued.secret not in stored.token_hash
        import hashlib

        assert stored.token_hash == hashlib.sha256(issued.secret.encode()).hexdigest()


def test_token_scopes_cannot_exceed_member_roles(world: World) -> None:
    """Scopes beyond the member's roles are refused; a narrowed token loses the other roles."""
    _, admin, token = world.onboard("Scope Co", ["provider", "consumer"])
    c = world.client_for(token)
    with pytest.raises(Forbidden, match="does not hold role"):
        c.issue_token(admin.id, scopes=["operator"])
    narrow = c.issue_token(admin.id, scopes=["consumer"]).value.secret
    assert world.client_for(narrow).whoami()["roles"] == ["consumer"]
    with pytest.raises(InvalidInput, match="ttl_days"):
        c.issue_token(admin.id, ttl_days=10_000)


def test_member_roles_within_participant_roles(world: World) -> None:
    """Members get at most their participant's roles; only admins add members."""
    p, _, token = world.onboard("Member Co", ["provider"])
    admin = world.client_for(token)
    with pytest.raises(Forbidden, match="does not hold role"):
        admin.add_member(p.id, name="Li Si", roles=["consumer"])
    m = admin.add_member(p.id, name="Li Si", roles=["provider"]).value
    staff = world.client_for(admin.issue_token(m.id).value.secret)
    with pytest.raises(Forbidden, match="admin member"):
        staff.add_member(p.id, name="Wang Wu", roles=["provider"])
    assert [x.id for x in admin.list_members(p.id).items][-1] == m.id


def test_other_participants_members_are_invisible(world: World) -> None:
    """A participant cannot read another participant's members or tokens (404/403, not data)."""
    a, a_admin, _ = world.onboard("A Co", ["provider"])
    _, _, b_token = world.onboard("B Co", ["consumer"])
    b = world.client_for(b_token)
    with pytest.raises(NotFound):
        b.get_member(a_admin.id)
    with pytest.raises(Forbidden):
        b.list_members(a.id)
    with pytest.raises(NotFound):
        b.issue_token(a_admin.id)


def test_pending_participants_are_hidden_from_others(world: World) -> None:
    """Only overseers and the participant itself see a pending participant."""
    pending, _, pending_token = world.onboard("Pending Co", ["consumer"], verify=False)
    _, _, other = world.onboard("Other Co", ["consumer"])
    with pytest.raises(NotFound):
        world.client_for(other).get_participant(pending.id)
    assert world.client_for(pending_token).get_participant(pending.id).id == pending.id
    assert pending.id in [p.id for p in world.operator.iter_participants()]
    assert pending.id not in [p.id for p in world.client_for(other).iter_participants()]


def test_key_registration_requires_proof_of_possession(world: World) -> None:
    """A key registers only with a signature by its private key over the registration message."""
    p, _, token = world.onboard("Key Co", ["provider"])
    c = world.client_for(token)
    key = Ed25519PrivateKey.generate()
    k = c.register_key(p.id, key).value
    assert k.public_key == public_key_b64(key)
    with pytest.raises(Conflict, match="already registered"):
        c.register_key(p.id, key)
    other = Ed25519PrivateKey.generate()
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(b"x")).decode()
    with pytest.raises(InvalidInput, match="proof"):
        c.post(f"/v1/participants/{p.id}/keys", {"public_key": public_key_b64(other), "proof": forged})
    with pytest.raises(InvalidInput, match="32 bytes"):
        c.post(
            f"/v1/participants/{p.id}/keys",
            {"public_key": base64.b64encode(b"short").decode(), "proof": forged},
        )
    with world.exchange.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(KeyRow)) == 1
    revoked = c.revoke_key(k.id).value
    assert revoked.revoked_at is not None
    with pytest.raises(Conflict):
        c.revoke_key(k.id)


def test_unknown_ids_are_not_found(world: World) -> None:
    """Unknown participant, member, token and key IDs are 404 with the ID in the message."""
    op = world.operator
    for call in (
        lambda: op.get_participant("p_nope"),
        lambda: op.get_member("m_nope"),
        lambda: op.revoke_token("t_nope"),
        lambda: op.revoke_key("k_nope"),
        lambda: op.change_participant_status("p_nope", "verify"),
    ):
        with pytest.raises(NotFound, match="_nope"):
            call()


def test_events_carry_no_personal_data(world: World) -> None:
    """Member names never reach the event outbox or the ledger; digests do."""
    p, _, token = world.onboard("Privacy Co", ["provider"])
    world.client_for(token).add_member(p.id, name="身份证持有人王小明", roles=["provider"])
    with world.exchange.session(write=False) as s:
        payloads = [str(e.payload) + str(e.subjects) for e in s.scalars(select(EventRow))]
    assert payloads and not any("王小明" in x or "admin of" in x for x in payloads)
    bundle = world.operator.export_ledger()
    raw = "".join(base64.b64decode(e).decode() for e in bundle["entries"])
    assert "王小明" not in raw and "c1:" in raw
