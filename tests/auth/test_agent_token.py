"""The agent's token file: sent as the bearer token, read again after a 401."""

from __future__ import annotations

import httpx
import pytest

from meshdns.agent import AgentError, TokenFileAuth, read_token
from registry.auth.tokens import revoke_token, token_id_of
from tests.auth.conftest import REMOTE, dataplane_token, eventually_async
from tests.factories import dataplane


async def test_a_renewed_token_file_is_taken_up_after_a_401(api, tmp_path):
    app = api()
    old = await app.issue(dataplane_token("web"))
    path = tmp_path / "web.token"
    path.write_text(old + "\n")
    transport = httpx.ASGITransport(app=app.app, client=(REMOTE, 40000))
    base = "/meshes/default/dataplanes/web-1"
    async with httpx.AsyncClient(
        transport=transport, base_url="http://meshdns", auth=TokenFileAuth(path)
    ) as agent:
        assert (
            await agent.post(f"{base}/connect", json=dataplane("web-1", "10.0.0.1", "web"))
        ).status_code == 201
        await revoke_token(app.store.engine, token_id_of(old))

        async def refused() -> bool:
            return (await agent.post(f"{base}/heartbeat")).status_code == 401

        await eventually_async(refused, "the revoked token refused")
        path.write_text(await app.issue(dataplane_token("web")))

        assert (await agent.post(f"{base}/heartbeat")).status_code == 204


def test_an_empty_or_missing_token_file_stops_the_agent(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AgentError, match="is empty"):
        read_token(tmp_path / "empty")
    with pytest.raises(AgentError, match="cannot read the token file"):
        read_token(tmp_path / "missing")
