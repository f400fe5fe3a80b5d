"""The real Prometheus discovers dataplanes through meshdns (issue 9, acceptance 1).

Prometheus (the Debian package's binary, on a free loopback port) has two jobs: one
whose targets come from `GET /prometheus/sd` (`http_sd_configs`), where a dataplane
registered with Kuma's `metrics` field points at a scrape target this test serves; and
one that scrapes meshdns's own `/metrics`. Prometheus's API must show the dataplane
discovered with the documented labels and both targets up.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import yaml

from tests.factories import dataplane
from tests.helpers import eventually, free_port, require_tool, stop_process

pytestmark = pytest.mark.integration

T = TypeVar("T")

TARGET_ADDRESS = "127.0.0.31"
METRICS_PATH = "/stats/prometheus"


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != METRICS_PATH:
            self.send_error(404)
            return
        body = b"# TYPE demo_requests_total counter\ndemo_requests_total 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scrape_target() -> Iterator[int]:
    """A dataplane's metrics endpoint: a tiny HTTP server on TARGET_ADDRESS."""
    server = http.server.ThreadingHTTPServer((TARGET_ADDRESS, 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def dataplanes_yaml(metrics_port: int) -> str:
    """backend-1 (its metrics on `metrics_port`) and no-metrics, as `apply -f -` reads them."""
    return yaml.safe_dump_all(
        [
            dataplane(
                "backend-1",
                TARGET_ADDRESS,
                "backend",
                tags={"kuma.io/protocol": "http", "version": "v1"},
                metrics={
                    "type": "prometheus",
                    "conf": {"port": metrics_port, "path": METRICS_PATH},
                },
            ),
            dataplane("no-metrics", "127.0.0.32", "backend"),
        ],
        sort_keys=False,
    )


def quietly(check: Callable[[], T]) -> Callable[[], T | None]:
    """``check`` for :func:`eventually`: a failed assertion or request is "not yet"."""

    def attempt() -> T | None:
        try:
            return check()
        except (AssertionError, httpx.HTTPError, KeyError, ValueError):
            return None

    return attempt


def start_prometheus(tmp_path: Path, api_port: int) -> tuple[subprocess.Popen, str]:
    binary = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dataplanes
    http_sd_configs:
      - url: http://127.0.0.1:{api_port}/prometheus/sd?mesh=default
        refresh_interval: 1s
  - job_name: meshdns
    static_configs:
      - targets: ["127.0.0.1:{api_port}"]
"""
    )
    with (tmp_path / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


def test_prometheus_discovers_and_scrapes_dataplanes_and_meshdns(
    start_meshdns, scrape_target, tmp_path
):
    server = start_meshdns("")
    applied = server.cli("apply", "-f", "-", input=dataplanes_yaml(scrape_target))
    assert applied.returncode == 0, applied.stderr
    prometheus, url = start_prometheus(tmp_path, server.api_port)
    try:

        def targets_up() -> dict[str, dict]:
            response = httpx.get(url + "/api/v1/targets", timeout=2)
            active = response.json()["data"]["activeTargets"]
            by_job = {target["labels"]["job"]: target for target in active}
            assert {"dataplanes", "meshdns"} <= by_job.keys(), active
            assert all(target["health"] == "up" for target in by_job.values()), active
            return by_job

        try:
            by_job = eventually(quietly(targets_up), "Prometheus has both targets up", timeout=30)
        except AssertionError:
            print((tmp_path / "prometheus.log").read_text())
            raise
        target = by_job["dataplanes"]
        assert target["scrapeUrl"] == f"http://{TARGET_ADDRESS}:{scrape_target}{METRICS_PATH}"
        labels = target["labels"]
        assert labels["mesh"] == "default"
        assert labels["dataplane"] == "backend-1"
        assert labels["service"] == "backend"
        assert "zone" not in labels  # standalone: empty, which Prometheus leaves out
        assert labels["kuma_io_service"] == "backend"
        assert labels["kuma_io_protocol"] == "http"
        assert labels["version"] == "v1"

        def scraped() -> list[dict]:
            response = httpx.get(
                url + "/api/v1/query", params={"query": "demo_requests_total"}, timeout=2
            )
            result = response.json()["data"]["result"]
            assert result, "not scraped yet"
            return result

        result = eventually(
            quietly(scraped), "the dataplane's metrics are in Prometheus", timeout=20
        )
        assert result[0]["metric"]["dataplane"] == "backend-1"
        assert result[0]["value"][1] == "42"

        own = eventually(
            quietly(
                lambda: httpx.get(
                    url + "/api/v1/query",
                    params={"query": 'meshdns_dataplanes{status="online"}'},
                    timeout=2,
                ).json()["data"]["result"]
            ),
            "meshdns's own metrics are in Prometheus",
            timeout=20,
        )
        assert own[0]["value"][1] == "2"
    finally:
        stop_process(prometheus)


MESH_WITH_BACKEND = """\
type: Mesh
name: observed
metrics:
  enabledBackend: prom
  backends: [{name: prom, type: prometheus, conf: {port: 9102}}]
---
type: Dataplane
mesh: observed
name: web-1
networking:
  address: fd00::5
  advertisedAddress: 2001:db8::5
  inbound:
    - port: 80
      tags: {kuma.io/service: web, kuma.io/zone: east, 9lives: "yes"}
"""


def test_discovery_document(start_meshdns, scrape_target):
    server = start_meshdns("")
    for document in (dataplanes_yaml(scrape_target), MESH_WITH_BACKEND):
        applied = server.cli("apply", "-f", "-", input=document)
        assert applied.returncode == 0, applied.stderr
    everything = httpx.get(server.api + "/prometheus/sd").json()
    observed = httpx.get(server.api + "/prometheus/sd", params={"mesh": "observed"}).json()
    assert httpx.get(server.api + "/prometheus/sd", params={"mesh": "nowhere"}).json() == []
    # The dataplane without a metrics port (its own or its mesh's) is not listed.
    assert sorted(group["labels"]["dataplane"] for group in everything) == ["backend-1", "web-1"]
    # The mesh's enabled backend; Kuma's default path; the advertised address.
    assert observed == [
        {
            "targets": ["[2001:db8::5]:9102"],
            "labels": {
                "kuma_io_service": "web",
                "kuma_io_zone": "east",
                "_9lives": "yes",
                "mesh": "observed",
                "dataplane": "web-1",
                "service": "web",
                "zone": "east",
                "__metrics_path__": "/metrics",
            },
        }
    ]
