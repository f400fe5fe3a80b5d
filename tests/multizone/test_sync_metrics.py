"""`meshdns sync --metrics-port`: the worker's rows by direction and lag, for Prometheus."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import dataplane
from tests.helpers import Meshdns, eventually, free_port
from tests.multizone.conftest import SyncProcess

pytestmark = [pytest.mark.postgres, pytest.mark.integration]


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_sync_metrics_count_rows_by_direction_and_lag(
    databases: Callable[[], str],
    start_meshdns: Callable[..., Meshdns],
    start_sync: Callable[..., SyncProcess],
) -> None:
    global_url, zone_url = databases(), databases()
    start_meshdns(global_url, "--mode", "global")  # creates the mesh default
    zone = start_meshdns(zone_url, "--mode", "zone", "--zone", "zone-a")
    port = free_port()
    start_sync("zone-a", zone_url, global_url, "--metrics-port", str(port))
    eventually(
        lambda: httpx.get(zone.api + "/meshes/default").status_code == 200,
        what="mesh default replicated to zone-a",
    )
    body = dataplane("web-1", "127.0.0.41", "web")
    response = httpx.put(zone.api + "/meshes/default/dataplanes/web-1", json=body, timeout=10)
    assert response.status_code == 201

    pushed = (("direction", "zone->global"), ("kind", "dataplanes"), ("zone", "zone-a"))
    pulled = (("direction", "global->zone"), ("kind", "meshes"), ("zone", "zone-a"))

    def replicated() -> dict | None:
        now = samples(port)
        lag = [value for (name, _), value in now.items() if name == "meshdns_sync_lag_revisions"]
        done = now.get(("meshdns_sync_rows_total", pushed), 0) >= 1 and lag == [0, 0]
        return now if done else None

    now = eventually(replicated, what="the dataplane pushed and no lag", timeout=20)
    assert now[("meshdns_sync_rows_total", pulled)] >= 1
    changes = (("direction", "zone->global"), ("zone", "zone-a"))
    assert now[("meshdns_sync_changes_total", changes)] >= 1
    assert now[("meshdns_sync_errors_total", (("zone", "zone-a"),))] == 0
    assert 0 <= now[("meshdns_sync_caught_up_age_seconds", (("zone", "zone-a"),))] < 10
