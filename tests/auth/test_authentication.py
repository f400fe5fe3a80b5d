"""Who a request is: loopback admin, a valid bearer token, or 401 (SQLite and Postgres)."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.auth.authentication import Authenticator
from registry.auth.identity import Unauthenticated
from registry.auth.tokens import (
    add_signing_key,
    delete_signing_key,
    list_signing_keys,
    revoke_token,
    token_id_of,
)
from registry.errors import DatabaseUnavailable
from registry.store.database import create_engine
from tests.auth.conftest import ADMIN, dataplane_token, eventually_async, hours_ago


def forged(token: str, kid: str | None = None) -> str:
    """The token's claims signed by a key the registry never had."""
    claims = jwt.decode(token, options={"verify_signature": False})
    header = {"kid": kid or jwt.get_unverified_header(token)["kid"]}
    return jwt.encode(claims, Ed25519PrivateKey.generate(), "EdDSA", header)


async def bad_token(api, case: str) -> str | None:
    if case == "missing":
        return None
    if case == "garbage":
        return "not-a-jwt"
    if case == "expired":
        return await api.issue(ADMIN, timedelta(hours=1), now=hours_ago(2))
    good = await api.issue(ADMIN)
    if case == "revoked":
        await revoke_token(api.store.engine, token_id_of(good))
        return good
    if case == "forged":  # the registry's key id, another key's signature
        return forged(good)
    if case == "unknown key":  # e.g. another registry's token
        return forged(good, kid="0123456789abcdef")
    if case == "retired key":
        await add_signing_key(api.store.engine)
        await delete_signing_key(api.store.engine, jwt.get_unverified_header(good)["kid"])
        return good
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "details"),
    [
        ("missing", "needs a bearer token"),
        ("garbage", "not a JWT"),
        ("expired", "expired"),
        ("revoked", "has been revoked"),
        ("forged", "Signature verification failed"),
        ("unknown key", "does not have"),
        ("retired key", "does not have"),
    ],
)
async def test_no_valid_token_is_401_in_kumas_error_shape(api, case, details):
    app = api()
    client = app.client(await bad_token(app, case))

    response = await client.get("/meshes")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["title"] == "Unauthorized" and body["causes"] == []
    assert details in body["details"]


async def test_a_header_that_is_not_bearer_is_401(api):
    client = api().client()
    response = await client.get("/meshes", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert response.status_code == 401 and "Bearer <token>" in response.json()["details"]


async def test_an_unauthenticated_request_learns_nothing_of_its_body_or_parameters(api):
    client = api().client()
    assert (await client.put("/meshes/default/dataplanes/x", content=b"{")).status_code == 401
    assert (await client.get("/meshes", params={"size": "many"})).status_code == 401


async def test_health_and_readiness_need_no_token(api):
    client = api(loopback_admin=False).client()
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_loopback_is_admin_without_a_token(api, host):
    client = api().client(host=host)
    assert (await client.put("/meshes/other", json={"type": "Mesh"})).status_code == 201
    assert (await client.delete("/meshes/other")).status_code == 200


async def test_no_loopback_admin_makes_loopback_need_a_token(api):
    app = api(loopback_admin=False)

    response = await app.client(host="127.0.0.1").get("/meshes")

    assert response.status_code == 401
    admin = app.client(await app.issue(ADMIN), host="127.0.0.1")
    assert (await admin.get("/meshes")).status_code == 200


async def test_a_token_from_loopback_decides_who_the_request_is(api):
    app = api()
    scoped = app.client(await app.issue(dataplane_token("web")), host="127.0.0.1")
    assert (await scoped.get("/meshes")).status_code == 403
    assert (await app.client("garbage", host="127.0.0.1").get("/meshes")).status_code == 401


async def test_an_admin_token_may_do_everything(api):
    app = api()
    admin = await app.token_client(ADMIN)
    assert (await admin.put("/meshes/other", json={"type": "Mesh"})).status_code == 201
    document = {
        "type": "Dataplane",
        "networking": {
            "address": "10.0.0.9",
            "inbound": [{"port": 80, "tags": {"kuma.io/service": "db"}}],
        },
    }
    assert (await admin.put("/meshes/other/dataplanes/db-1", json=document)).status_code == 201
    assert (await admin.get("/meshes/other/dataplanes/db-1")).status_code == 200
    assert (await admin.get("/meshes/other/services")).json()["total"] == 1
    assert (await admin.delete("/meshes/other/dataplanes/db-1")).status_code == 200
    assert (await admin.delete("/meshes/other")).status_code == 200


async def test_rotation_new_tokens_use_the_new_key_old_ones_stay_valid_until_it_is_deleted(api):
    app = api()
    engine = app.store.engine
    old = await app.issue(ADMIN)
    old_kid = jwt.get_unverified_header(old)["kid"]

    new_kid = await add_signing_key(engine)
    new = await app.issue(ADMIN)

    assert jwt.get_unverified_header(new)["kid"] == new_kid != old_kid
    keys = await list_signing_keys(engine)
    assert [(key.kid, key.signing) for key in keys] == [(old_kid, False), (new_kid, True)]
    for token in (old, new):
        assert (await app.client(token).get("/meshes")).status_code == 200

    await delete_signing_key(engine, old_kid)

    async def old_refused() -> bool:
        return (await app.client(old).get("/meshes")).status_code == 401

    await eventually_async(old_refused, "the old key's token refused", timeout=3)
    assert (await app.client(new).get("/meshes")).status_code == 200


async def test_a_revoked_token_is_refused_within_a_second(api):
    app = api()
    token = await app.issue(dataplane_token("web"))
    other = await app.issue(dataplane_token("web"))
    client = app.client(token)
    assert (await client.get("/meshes/default/dns-records")).status_code == 200

    assert await revoke_token(app.store.engine, token_id_of(token)) is True
    assert await revoke_token(app.store.engine, token_id_of(token)) is False  # already

    async def refused() -> bool:
        response = await client.get("/meshes/default/dns-records")
        return response.status_code == 401 and "revoked" in response.json()["details"]

    # The API re-reads revocations at most a second old (registry/auth/__init__.py).
    assert await eventually_async(refused, "the revoked token refused", timeout=3) < 1.5
    other_client = app.client(other)
    assert (await other_client.get("/meshes/default/dns-records")).status_code == 200


async def test_with_the_database_down_the_last_keys_and_revocations_are_kept(api):
    app = api()
    token = await app.issue(ADMIN)
    assert (await app.client(token).get("/meshes/default/dns-records")).status_code == 200
    down = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/meshdns")
    try:
        app.auth.engine, app.auth.refresh_seconds = down, 0.0
        # Every request now tries to re-read, fails, and goes on with what it had.
        assert (await app.auth.verify(token)).is_admin
        with pytest.raises(Unauthenticated, match="does not have"):
            await app.auth.verify(forged(token, kid="0123456789abcdef"))
        # With nothing read yet, it is the database outage it is: 503.
        fresh = Authenticator(down)
        with pytest.raises(DatabaseUnavailable):
            await fresh.verify(token)
    finally:
        await down.dispose()
