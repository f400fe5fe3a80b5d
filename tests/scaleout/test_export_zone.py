"""`meshdns export-zone`: the mesh's zone as a zone file a secondary can load."""

from __future__ import annotations

import subprocess

import dns.zone
import pytest

from tests.factories import dataplane
from tests.helpers import MESHDNS
from tests.scaleout.scaleouttesting import (
    addresses,
    ask,
    eventually,
    put,
    revision,
    udp_socket,
)

pytestmark = pytest.mark.integration


def test_export_zone_prints_a_loadable_zone_file(start_meshdns, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    server = start_meshdns(url)
    put(server, dataplane("web-1", "10.0.0.5", "web"), dataplane("api-1", "10.0.0.6", "api"))
    with udp_socket() as sock:
        vip = eventually(lambda: addresses(ask(sock, server.dns_port, "web.mesh.")), "web")[0]
    export = subprocess.run(
        [MESHDNS, "export-zone", "-m", "default", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert export.returncode == 0, export.stderr
    lines = export.stdout.splitlines()
    assert lines[0] == "$ORIGIN mesh."
    assert lines[1].split("\t")[4].split()[2] == str(revision(server))  # the SOA serial
    assert f"web.mesh.\t30\tIN\tA\t{vip}" in lines
    assert "api.endpoints.mesh.\t5\tIN\tA\t10.0.0.6" in lines
    # A real master-file parser reads it whole, with the apex SOA and NS it needs.
    zone = dns.zone.from_text(export.stdout, origin="mesh.", check_origin=True)
    assert zone.find_rdataset("web", "A")[0].to_text() == vip
    assert zone.find_rdataset("_api._tcp", "SRV")[0].to_text().endswith("8080 0a000006.addr")

    missing = subprocess.run(
        [MESHDNS, "export-zone", "-m", "nope", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "mesh 'nope' does not exist" in missing.stderr
