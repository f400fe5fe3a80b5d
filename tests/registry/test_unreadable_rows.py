"""One stored row the snapshot reader cannot read never stops the feed.

A scoped IPv6 address (``fe80::1%eth0``) was once accepted by the schema, stored, and then
failed the reader's ``inet_pton``: the follower took it for a lost database and froze at
the old revision. Now the schema refuses what the reader cannot hold, and the reader
leaves out (and reports once) any row it cannot read, whoever wrote it.
"""

from __future__ import annotations

import logging
from ipaddress import IPv6Address, ip_address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import InvalidResource
from registry.feed.follower import RegistryFollower
from registry.feed.reader import parse_address
from registry.feed.view import RegistryView
from registry.schema import Dataplane, parse_resource
from registry.store import Store
from tests.factories import dataplane_resource
from tests.registry.registrytesting import mesh, registered_dataplane

SCOPES = st.sampled_from(["eth0", "lo", "\n", "x" * 5000, "1", "%", ""])
ADDRESS_TEXTS = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.tuples(st.ip_addresses(v=6).map(str), SCOPES).map(lambda pair: f"{pair[0]}%{pair[1]}"),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(address=ADDRESS_TEXTS)
def test_every_address_the_schema_accepts_survives_the_snapshot_reader(address):
    document = {
        "type": "Dataplane",
        "name": "web-1",
        "networking": {
            "address": address,
            "advertisedAddress": address,
            "inbound": [{"port": 8080, "address": address, "tags": {"kuma.io/service": "web"}}],
        },
    }
    try:
        resource = parse_resource(document)
    except InvalidResource:
        return
    assert isinstance(resource, Dataplane)
    stored = resource.networking.address  # what the store writes to the address columns
    assert parse_address(stored) == ip_address(stored)
    assert resource.networking.inbound[0].address == stored


def unreadable_dataplane(name: str, address: str = "fe80::1%eth0") -> Dataplane:
    """A dataplane as an older meshdns (or a hand-made row) could have stored it: the
    registration rules of today's schema are not applied."""
    return dataplane_resource(name, address, "scoped")


async def test_the_follower_skips_a_row_it_cannot_read_and_keeps_following(
    store: Store, caplog: pytest.LogCaptureFixture
):
    await store.put_many([mesh(), registered_dataplane("web-1")])
    await store.put(unreadable_dataplane("scoped-1"))
    published = []
    follower = RegistryFollower(store, lambda snapshot, delta: published.append(snapshot))
    with caplog.at_level(logging.ERROR, logger="meshdns.feed"):
        await follower.load()
        services = follower.view.snapshot.meshes["default"].services
        assert set(services) == {"web"}
        assert follower.unreadable_rows == 1

        # Written after it: flows as ever, and the bad row is reported once, not per batch.
        await store.put(registered_dataplane("db-1", "10.0.0.2", "db"))
        await store.put(unreadable_dataplane("scoped-1", "fe80::2%eth1"))
        await store.put(registered_dataplane("api-1", "10.0.0.3", "api"))
        await follower.catch_up()
    assert set(follower.view.snapshot.meshes["default"].services) == {"web", "db", "api"}
    assert follower.connected
    reports = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(reports) == 2  # the first row, then its second (different) version
    assert "default/scoped-1" in reports[0].getMessage()
    assert follower.unreadable_rows == 2

    # A fresh reader (a restarted serve) loads the same registry without failing.
    again = RegistryFollower(store, lambda snapshot, delta: None)
    await again.load()
    assert set(again.view.snapshot.meshes["default"].services) == {"web", "db", "api"}


async def test_a_readable_version_replaces_an_unreadable_one(store: Store):
    await store.put_many([mesh(), unreadable_dataplane("scoped-1")])
    follower = RegistryFollower(store, lambda snapshot, delta: None)
    await follower.load()
    assert "scoped" not in follower.view.snapshot.meshes["default"].services
    fixed = registered_dataplane("scoped-1", "fe80::1", "scoped")
    await store.put(fixed)
    await follower.catch_up()
    [endpoint] = follower.view.snapshot.meshes["default"].services["scoped"].endpoints
    assert endpoint.address == IPv6Address("fe80::1")


@pytest.mark.parametrize(
    ("owners", "mapped"),
    [
        ([("default", "10.0.0.1")], "default"),
        ([("default", "10.0.0.1"), ("default", "10.0.0.1")], "default"),
        ([("default", "10.0.0.1"), ("evil", "10.0.0.1")], None),
        ([("prod", "10.0.0.1"), ("evil", "10.0.0.1")], None),
    ],
)
def test_an_address_selects_a_mesh_only_when_all_its_dataplanes_are_of_one(owners, mapped):
    from registry.feed.states import DataplaneState, InboundState

    view = RegistryView()
    states = {}
    for index, (mesh_name, address) in enumerate(owners):
        parsed = ip_address(address)
        states[(mesh_name, f"dp-{index}")] = DataplaneState(
            mesh=mesh_name,
            name=f"dp-{index}",
            address=parsed,
            advertised=None,
            inbounds=(InboundState("web", parsed, 8080, True),),
        )
    meshes = {name: False for name, _ in owners}
    view.apply(1, meshes, states, {})
    assert view.snapshot.dataplane_meshes.get(ip_address("10.0.0.1")) == mapped
    # Taking the other mesh's dataplane away gives the address back to the one left.
    if mapped is None:
        gone = next(key for key in states if key[0] != owners[0][0])
        view.apply(2, {}, {gone: None}, {})
        assert view.snapshot.dataplane_meshes.get(ip_address("10.0.0.1")) == owners[0][0]
