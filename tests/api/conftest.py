from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from registry.api.app import create_app


@pytest.fixture
async def client(store) -> AsyncIterator[httpx.AsyncClient]:
    """The API over a real store (SQLite and Postgres), spoken to in-process over ASGI."""
    changes: list[int] = []  # the revision of each committed write

    async def on_change(revision: int) -> None:
        changes.append(revision)

    app = create_app(store, on_change=on_change)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        http.changes = changes  # type: ignore[attr-defined]
        yield http
