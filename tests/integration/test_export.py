"""`meshdns export`, then `meshdns apply` of its file on an empty control plane: every name
answers the same, VIPs included (they are not the ones a fresh allocation would give)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.factories import dataplane, mesh, traffic_permission
from tests.helpers import ROOT, Meshdns, dig, eventually

pytestmark = pytest.mark.integration

EXTERNAL = ROOT / "examples" / "kuma" / "meshexternalservice-01-tcp.yaml"


def apply(server: Meshdns, path: Path, *documents: dict) -> None:
    if documents:
        path.write_text(yaml.safe_dump_all(documents))
    applied = server.cli("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr


def answers(server: Meshdns, names: list[str]) -> dict[str, tuple[str, ...]]:
    found = {}
    for name in names:
        for rdtype in ("A", "SRV"):
            output = dig(server.dns_port, "+short", name, rdtype)
            found[f"{name} {rdtype}"] = tuple(sorted(output.split()))
    return found


def test_an_export_applied_on_an_empty_control_plane_answers_alike(start_meshdns, tmp_path):
    first = start_meshdns(f"sqlite+aiosqlite:///{tmp_path}/first.db")
    apply(
        first,
        tmp_path / "setup.yaml",
        mesh("default", meshServices={"mode": "Everywhere"}),
        dataplane("gone-1", "10.0.0.9", "gone"),
        dataplane("web-1", "10.0.0.1", "web"),
        dataplane("backend-1", "10.0.0.2", "backend"),
        dataplane("backend-2", "10.0.0.3", "backend", port=9090),
        traffic_permission("web-to-backend", ["web"], ["backend"]),
    )
    apply(first, EXTERNAL)
    # A service that goes leaves its VIP in quarantine: the VIPs left are not those a
    # fresh control plane would hand out in order.
    assert first.cli("delete", "dataplane", "gone-1").returncode == 0
    names = [
        "web.mesh",
        "backend.mesh",
        "gone.mesh",
        "web.svc.mesh.local",
        "backend.svc.mesh.local",
        "_backend._tcp.mesh",
        "backend.endpoints.mesh",
        "mes-tcp.extsvc.mesh.local",
    ]
    # The generator writes the MeshServices within seconds of the dataplanes.
    generated = ("web.svc.mesh.local A", "backend.svc.mesh.local A")
    before = eventually(
        lambda: all((found := answers(first, names))[name] for name in generated) and found,
        "both generated MeshServices answered",
    )
    assert before["web.mesh A"] and before["mes-tcp.extsvc.mesh.local A"]

    exported = first.cli("export", "-o", str(tmp_path / "export.yaml"))
    assert exported.returncode == 0, exported.stderr
    documents = list(yaml.safe_load_all((tmp_path / "export.yaml").read_text()))
    kinds = [document["type"] for document in documents]
    assert kinds[0] == "Mesh" and kinds[-1] == "VirtualIPs", kinds
    assert {"Dataplane", "TrafficPermission", "MeshService", "MeshExternalService"} <= set(kinds)
    assert not any("creationTime" in document or "status" in document for document in documents)

    second = start_meshdns(f"sqlite+aiosqlite:///{tmp_path}/second.db")
    restored = second.cli("apply", "-f", str(tmp_path / "export.yaml"))
    assert restored.returncode == 0, restored.stderr
    assert 'Resource type="VirtualIPs" mesh="default" name="default" Recorded' in restored.stdout
    after = eventually(
        lambda: (found := answers(second, names)) == before and found,
        lambda: json.dumps({"before": before, "after": answers(second, names)}, indent=1),
    )
    assert after == before
