"""The API's first gate: who a request acts as, and whether it may reach its route at all
(by the scope the route declares, registry/auth/scopes.py). Handlers check the
resources themselves (registry/auth/authorization.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from registry.api.reading import check_path_names
from registry.auth.authentication import Authenticator
from registry.auth.authorization import Guard
from registry.auth.identity import ADMIN_IDENTITY, Identity
from registry.auth.scopes import Scope, route_scope


def authentication(
    auth: Authenticator | None, guard: Guard
) -> Callable[[Request], Awaitable[None]]:
    """The app-wide dependency that lets a request through to its route, or refuses it
    (401, 403, or 400 for a name no resource can have); `auth` None: every request is
    admin."""

    async def authenticate(request: Request) -> None:
        # Runs before every route's own parameters: an unauthenticated request learns
        # nothing, not even that its body was invalid.
        scope = route_scope(request.scope.get("route"))
        if scope is Scope.PUBLIC:
            return
        who = ADMIN_IDENTITY
        if auth is not None:
            client = request.client.host if request.client else None
            who = await auth.identify(client, request.headers.get("authorization"))
        check_path_names(request.path_params)
        guard.check_route(who, scope, request.method, request.url.path, request.path_params)
        request.state.identity = who

    return authenticate


def caller(request: Request) -> Identity:
    """Who the request acts as (set by the app's authentication dependency)."""
    who: Identity = request.state.identity
    return who
