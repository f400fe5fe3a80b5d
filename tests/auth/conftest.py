"""The API with authentication on, in-process over ASGI, spoken to from any address.

``api(mode=..., zone=..., loopback_admin=...)`` builds the app (with the agent routes)
over the test's store; ``api.client(token=..., host=...)`` is an httpx client whose
requests come from ``host`` (default 10.1.2.3: not loopback, so a token is needed) and
carry ``token`` as a bearer token; ``api.issue(identity)`` signs a token with the
registry's keys, as `meshdns token generate` does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from registry.agents.liveness import Liveness
from registry.agents.routes import agent_router
from registry.agents.service_feed import ServiceFeed
from registry.api.app import create_app
from registry.auth.authentication import Authenticator
from registry.auth.identity import Identity
from registry.auth.tokens import issue_token
from registry.store import Store
from tests.serve_settings import liveness_settings

REMOTE = "10.1.2.3"


def dataplane_token(*services: str, mesh: str = "default") -> Identity:
    return Identity("dataplane", mesh=mesh, services=frozenset(services))


def zone_token(zone: str) -> Identity:
    return Identity("zone", zone=zone)


ADMIN = Identity("admin")


class Api:
    def __init__(self, store: Store, **options: Any) -> None:
        self.store = store
        loopback_admin = options.pop("loopback_admin", True)
        if "mode" in options:
            store = Store(store.engine, store.vips, mode=options.pop("mode"))
            self.store = store
        self.auth = Authenticator(store.engine, loopback_admin=loopback_admin)
        self.app = create_app(store, auth=self.auth, **options)
        liveness = Liveness(store, liveness_settings())
        self.app.include_router(
            agent_router(store, liveness, ServiceFeed(), {"domain": "mesh"}, self.app.state.guard)
        )
        self._clients: list[httpx.AsyncClient] = []

    def client(self, token: str | None = None, host: str = REMOTE) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(host, 40000))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.AsyncClient(transport=transport, base_url="http://meshdns", headers=headers)
        self._clients.append(client)
        return client

    async def issue(
        self, identity: Identity, valid_for: timedelta = timedelta(hours=1), **kw: Any
    ) -> str:
        return (await issue_token(self.store.engine, identity, valid_for, **kw)).token

    async def token_client(self, identity: Identity) -> httpx.AsyncClient:
        return self.client(await self.issue(identity))

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Callable[..., Api]]:
    await store.ensure_mesh("default")
    made: list[Api] = []

    def make(**options: Any) -> Api:
        made.append(Api(store, **options))
        return made[-1]

    yield make
    for each in made:
        await each.close()


async def eventually_async(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = 5.0
) -> float:
    """Seconds until ``await check()`` is truthy; fail naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
