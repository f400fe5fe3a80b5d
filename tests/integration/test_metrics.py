"""`/metrics` of a real `meshdns serve` after real queries (issue 9, acceptance 2).

dnsperf sends a mix of questions whose answers are known (a service's A: NOERROR, its
AAAA: NODATA, so NOERROR too, names that do not exist: NXDOMAIN); the server's counts by
type and rcode must match what dnsperf saw answered, and may exceed it only by what was
lost on the way back.
"""

from __future__ import annotations

import json
import re
import subprocess
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshdns.sync_metrics import SyncCollector
from registry.sync import SyncStats
from tests.helpers import ROOT, dig, require_tool

pytestmark = pytest.mark.integration

DATAPLANE = """\
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.21
  inbound:
    - port: 8080
      tags: {kuma.io/service: backend}
"""


def scrape(api: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``api``'s /metrics, by name and sorted labels."""
    response = httpx.get(api + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def dns_requests(samples: dict, **wanted: str) -> float:
    """The sum of meshdns_dns_requests_total over the series with the ``wanted`` labels."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "meshdns_dns_requests_total"
        and all(dict(labels).get(key) == value_ for key, value_ in wanted.items())
    )


def dnsperf_rcodes(output: str) -> tuple[int, dict[str, int]]:
    """(queries sent, replies received by rcode) from dnsperf's report."""
    sent = re.search(r"Queries sent:\s+(\d+)", output)
    codes = re.search(r"Response codes:\s+(.*)", output)
    assert sent and codes, output
    return int(sent.group(1)), {
        code: int(count) for code, count in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1))
    }


@pytest.mark.serial  # dnsperf's 5,000 queries/s must be sent and answered in time
def test_dnsperf_queries_are_counted_by_type_and_rcode(start_meshdns, tmp_path):
    dnsperf = require_tool("dnsperf")
    server = start_meshdns("", "--rate-limit", "0")
    applied = server.cli("apply", "-f", "-", input=DATAPLANE)
    assert applied.returncode == 0, applied.stderr
    before = scrape(server.api)

    queries = tmp_path / "queries.txt"
    # 3 A (NOERROR), 1 AAAA (NODATA: NOERROR), 2 missing names (NXDOMAIN)
    lines = ["backend.mesh A"] * 3 + ["backend.mesh AAAA", "nothing.mesh A", "no.such.mesh A"]
    queries.write_text("\n".join(lines) + "\n")
    command = [dnsperf, "-s", "127.0.0.1", "-p", str(server.dns_port), "-d", str(queries)]
    command += ["-Q", "5000", "-l", "2", "-t", "1", "-c", "2"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    sent, received = dnsperf_rcodes(output)
    assert sent > 5000 and sum(received.values()) >= 0.95 * sent, output

    after = scrape(server.api)

    def counted(**labels: str) -> float:
        return dns_requests(after, **labels) - dns_requests(before, **labels)

    report = f"dnsperf: {output}\nmetrics: {after}"
    udp_total = counted(transport="udp")
    # What the server answered: what dnsperf received, and at most what it sent.
    assert sum(received.values()) <= udp_total <= sent, report
    for rcode in ("NOERROR", "NXDOMAIN"):
        assert received.get(rcode, 0) <= counted(rcode=rcode, transport="udp"), report
    lost = udp_total - sum(received.values())
    assert counted(rcode="NOERROR") <= received["NOERROR"] + lost, report
    assert counted(rcode="NXDOMAIN") <= received["NXDOMAIN"] + lost, report
    assert received["NXDOMAIN"] > 0.25 * sent and received["NOERROR"] > 0.5 * sent, report
    # By type: two in three questions are A... of the NOERRORs, 1 in 4 is AAAA.
    assert counted(type="AAAA", rcode="NOERROR") > 0.1 * sent, report
    assert counted(type="A", rcode="NXDOMAIN") == counted(rcode="NXDOMAIN"), report
    assert counted(rcode="SERVFAIL") == 0, report

    # The answer cache served nearly all of them; latencies were sampled.
    hits = (
        after[("meshdns_dns_cache_hits_total", ())] - before[("meshdns_dns_cache_hits_total", ())]
    )
    assert hits >= 0.9 * udp_total, report
    timed = after[("meshdns_dns_request_duration_seconds_count", ())]
    assert 0.5 * udp_total / 64 <= timed <= 2 * udp_total / 64 + 10, report


def test_metrics_after_dig_over_tcp_and_api_requests(start_meshdns):
    server = start_meshdns("")
    applied = server.cli("apply", "-f", "-", input=DATAPLANE)
    assert applied.returncode == 0, applied.stderr
    assert "240." in dig(server.dns_port, "+tcp", "backend.mesh", "A")
    assert "NXDOMAIN" in dig(server.dns_port, "+tcp", "nowhere.mesh", "SRV")
    httpx.get(server.api + "/meshes/default/dataplanes/backend-1").raise_for_status()
    assert httpx.get(server.api + "/meshes/default/dataplanes/gone").status_code == 404

    samples = scrape(server.api)
    assert dns_requests(samples, type="A", rcode="NOERROR", transport="tcp") == 1
    assert dns_requests(samples, type="SRV", rcode="NXDOMAIN", transport="tcp") == 1

    def api_requests(method: str, route: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return samples.get(("meshdns_api_requests_total", labels), 0)

    # By the route's template: names in paths make no series of their own.
    assert api_requests("GET", "/meshes/{mesh}/dataplanes/{name}", "200") == 1
    assert api_requests("GET", "/meshes/{mesh}/dataplanes/{name}", "404") == 1
    assert samples[("meshdns_dataplanes", (("mesh", "default"), ("status", "online")))] == 1
    assert samples[("meshdns_dataplanes", (("mesh", "default"), ("status", "offline")))] == 0
    assert samples[("meshdns_services", (("mesh", "default"),))] == 1
    assert samples[("meshdns_meshes", ())] == 1
    assert samples[("meshdns_snapshot_revision", ())] > 0
    assert samples[("meshdns_feed_lag_revisions", ())] == 0
    assert 0 <= samples[("meshdns_snapshot_age_seconds", ())] < 10
    assert samples[("meshdns_feed_connected", ())] == 1
    info = [labels for name, labels in samples if name == "meshdns_build_info"]
    assert info and dict(info[0])["mode"] == "standalone"


def test_the_dashboard_uses_only_metrics_meshdns_exports(start_meshdns):
    server = start_meshdns("")
    assert "SOA" in dig(server.dns_port, "mesh", "SOA")  # a series of DNS counts
    exported = {name for name, _ in scrape(server.api)}
    stats = SyncStats(lag={"zone->global": 0}, caught_up_at=0.0)
    stats.rows[("zone->global", "dataplanes")] = 1
    worker = SimpleNamespace(zone="zone-a", stats=stats, resyncs={"push": 0, "pull": 0})
    sync = SyncCollector(worker)  # type: ignore[arg-type]
    exported |= {sample.name for family in sync.collect() for sample in family.samples}
    dashboard = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bmeshdns_\w+", expr)}
    assert used and used <= exported, used - exported
