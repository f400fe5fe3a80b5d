"""The console over a real store, in process: a FastAPI app with only its router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from dnsserver.handler import Handler
from meshdns.console import console_router, handler_answers
from registry.agents.liveness import Liveness
from registry.schema import Dataplane, Mesh
from registry.snapshot import Snapshot
from registry.store import Store
from tests.dns.dnstesting import zone_config
from tests.serve_settings import liveness_settings

FAST = liveness_settings(heartbeat_interval=1.0, offline_after=3)


def dataplane(
    name: str,
    address: str,
    service: str,
    port: int = 8080,
    *,
    mesh: str = "default",
    ready: bool = True,
    tags: dict[str, str] | None = None,
) -> Dataplane:
    inbound = {
        "port": port,
        "tags": {"kuma.io/service": service, **(tags or {})},
        "health": {"ready": ready},
    }
    return Dataplane.model_validate(
        {"mesh": mesh, "name": name, "networking": {"address": address, "inbound": [inbound]}}
    )


@dataclass
class Console:
    """The console's app, its HTTP client, and the registry it shows."""

    store: Store
    http: httpx.AsyncClient
    liveness: Liveness
    handler: Handler
    snapshot: Snapshot = field(default_factory=Snapshot.empty)

    async def follow(self) -> None:
        """Take the registry's current state, as serve's follower would publish it."""
        self.snapshot = await self.store.load_snapshot()
        self.handler.update(self.snapshot)

    async def page(self, path: str, status: int = 200) -> str:
        answer = await self.http.get(path)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        return answer.text


def make_app(console: Console, **options) -> FastAPI:
    app = FastAPI()
    app.include_router(
        console_router(
            console.store,
            lambda: console.snapshot,
            answer=handler_answers(console.handler),
            insights=console.liveness.insights,
            **options,
        )
    )
    return app


@pytest.fixture
async def console(store: Store) -> AsyncIterator[Console]:
    await store.put(Mesh.model_validate({"name": "default"}))
    shown = Console(store, httpx.AsyncClient(), Liveness(store, FAST), Handler(zone_config()))
    await shown.follow()
    transport = httpx.ASGITransport(app=make_app(shown), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        shown.http = http
        yield shown
