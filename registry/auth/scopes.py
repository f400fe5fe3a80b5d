"""The scope a route declares: which callers besides an admin may reach it.

A route declares its scope with :func:`requires` on its endpoint function; the API's
authentication dependency reads the matched route's with :func:`route_scope`, and the
Guard (registry/auth/authorization.py) decides what each kind of token may reach. A
route that declares nothing is ``ADMIN``: any route added later stays closed to tokens
until it says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class Scope(Enum):
    """Who besides an admin may call a route."""

    PUBLIC = "public"  # anyone, without a token: health and readiness probes
    ADMIN = "admin"  # admin tokens only (zone tokens still read every GET route)
    DATAPLANE_WRITE = "dataplane write"  # registering dataplanes: dataplane and zone tokens
    MESH_RECORDS = "mesh records"  # following a mesh's DNS records: its dataplane tokens
    ZONE_WRITE = "zone write"  # writing zone ingresses and egresses: zone tokens


# Keyed by the endpoint function: a route's endpoint is the function it was declared on,
# and an app's routes (and their closures) go away with the app.
_DECLARED: WeakKeyDictionary[Callable[..., Any], Scope] = WeakKeyDictionary()


def requires(scope: Scope) -> Callable[[Endpoint], Endpoint]:
    """Declare the scope of the route an endpoint function serves (decorator)."""

    def declare(endpoint: Endpoint) -> Endpoint:
        _DECLARED[endpoint] = scope
        return endpoint

    return declare


def route_scope(route: object) -> Scope:
    """The scope a matched route declared; ADMIN when it declared none."""
    endpoint = getattr(route, "endpoint", None)
    if endpoint is None:
        return Scope.ADMIN
    return _DECLARED.get(endpoint, Scope.ADMIN)
