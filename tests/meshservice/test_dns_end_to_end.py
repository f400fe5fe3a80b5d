"""Kuma's service model end to end: a real `meshdns serve` (SQLite and Postgres), `meshdns
apply` of Kuma's Universal YAML, the real `dig`, and the API's `status`.

One server per backend for the module: each test works in names of its own, and the
restart comes last.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, PostgresAdmin, postgres_url
from tests.helpers import Meshdns, dig, eventually, poll

pytestmark = pytest.mark.integration

MESH_SERVICE_RANGE = ipaddress.ip_network("241.0.0.0/8")
EXTERNAL_SERVICE_RANGE = ipaddress.ip_network("242.0.0.0/8")
LEGACY_RANGE = ipaddress.ip_network("240.0.0.0/4")
OPEN_MESH_CLIENT = "127.0.0.2"  # a dataplane of mesh `open`: its queries are answered there

EXCLUSIVE = """
type: Mesh
name: default
meshServices:
  mode: Exclusive
---
type: Dataplane
mesh: default
name: redis-1
networking:
  address: 127.0.20.1
  inbound:
    - port: 6379
      tags:
        kuma.io/service: redis
---
type: Dataplane
mesh: default
name: redis-2
networking:
  address: 127.0.20.2
  inbound:
    - port: 6379
      tags:
        kuma.io/service: redis
"""

EVERYWHERE = f"""
type: Mesh
name: open
meshServices:
  mode: Everywhere
---
type: Dataplane
mesh: open
name: cache-1
networking:
  address: {OPEN_MESH_CLIENT}
  inbound:
    - port: 11211
      tags:
        kuma.io/service: cache
"""

BY_TEAM = """
type: HostnameGenerator
name: by-team
spec:
  selector:
    meshService:
      matchLabels:
        team: payments
  template: "{{ .DisplayName }}.{{ label \\"team\\" }}.teams.mesh.local"
---
type: MeshService
name: api
mesh: default
labels:
  team: payments
spec:
  selector:
    dataplaneTags:
      kuma.io/service: api
  ports:
    - port: 8080
      targetPort: 8080
      appProtocol: http
"""

BAD_NAMES = """
type: HostnameGenerator
name: bad-names
spec:
  selector:
    meshService:
      matchLabels:
        naming: bad
  template: "{{ label \\"alias\\" }}.bad.mesh.local"
---
type: MeshService
name: oddity
mesh: default
labels:
  naming: bad
  alias: Not_A_Hostname
spec:
  selector:
    dataplaneTags:
      kuma.io/service: oddity
  ports:
    - port: 80
"""

SHARED = """
type: HostnameGenerator
name: shared
spec:
  selector:
    meshService:
      matchLabels:
        shared: "yes"
  template: "{{ label \\"alias\\" }}.shared.mesh.local"
"""


def shared_service(name: str) -> str:
    return f"""
type: MeshService
name: {name}
mesh: default
labels:
  shared: "yes"
  alias: cache
spec:
  selector:
    dataplaneTags:
      kuma.io/service: {name}
  ports:
    - port: 6379
"""


HTTPBIN = """
type: MeshExternalService
name: httpbin
mesh: default
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: tcp
  endpoints:
    - address: httpbin.org
      port: 443
"""


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Meshdns]:
    """One `meshdns serve` per backend, shared by the module's tests."""
    directory = tmp_path_factory.mktemp(f"meshservice-{request.param}")
    admin: PostgresAdmin | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'meshdns.db'}"
    else:
        admin = request.getfixturevalue("postgres_admin")
        admin.require()
        database = admin.create_migrated()
        url = postgres_url(database)
    started = Meshdns(database_url=url, cwd=directory).start()
    yield started
    started.stop()
    if admin is not None:
        admin.drop(database)


def apply(server: Meshdns, documents: str) -> None:
    applied = server.cli("apply", "-f", "-", input=documents)
    assert applied.returncode == 0, applied.stderr


def ask(server: Meshdns, name: str, rdtype: str = "A", client: str = "127.0.0.1") -> str:
    return dig(server.dns_port, "-b", client, "+norecurse", name, rdtype)


def rcode(output: str) -> str:
    match = re.search(r"status: (\w+)", output)
    assert match, output
    return match.group(1)


def flags(output: str) -> set[str]:
    match = re.search(r";; flags: ([a-z ]+);", output)
    assert match, output
    return set(match.group(1).split())


def records(output: str, rdtype: str = "A") -> list[str]:
    """The data of the answer section's records of ``rdtype``."""
    pattern = rf"^\S+\s+\d+\s+IN\s+{rdtype}\s+(.+)$"
    answer = output.split(";; ANSWER SECTION:", 1)[-1].split("\n\n", 1)[0]
    return re.findall(pattern, answer, re.MULTILINE) if ";; ANSWER SECTION:" in output else []


def resource(server: Meshdns, path: str) -> dict[str, Any]:
    response = httpx.get(server.api + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def addresses(
    server: Meshdns, name: str, rdtype: str = "A", client: str = "127.0.0.1"
) -> list[str]:
    return records(ask(server, name, rdtype, client), rdtype)


def conditions(status: dict[str, Any], generator: str) -> list[dict[str, str]]:
    for entry in status.get("hostnameGenerators", []):
        if entry["hostnameGeneratorRef"]["coreName"] == generator:
            return entry["conditions"]
    return []


def test_an_exclusive_mesh_answers_its_mesh_service_only(server):
    apply(server, EXCLUSIVE)
    answered = eventually(lambda: addresses(server, "redis.svc.mesh.local"), "redis's VIP")
    assert len(answered) == 1
    vip = ipaddress.ip_address(answered[0])
    assert vip in MESH_SERVICE_RANGE
    output = ask(server, "redis.svc.mesh.local")
    assert rcode(output) == "NOERROR" and "aa" in flags(output)
    legacy = ask(server, "redis.mesh")
    assert rcode(legacy) == "NXDOMAIN" and "aa" in flags(legacy)
    status = resource(server, "/meshes/default/meshservices/redis")["status"]
    assert status["vips"][0]["ip"] == str(vip)
    assert status["addresses"][0]["hostname"] == "redis.svc.mesh.local"
    # SRV: both dataplanes, their addresses alongside.
    srv = ask(server, "_6379._tcp.redis.svc.mesh.local", "SRV")
    assert sorted(records(srv, "SRV")) == [
        "0 1 6379 7f001401.addr.mesh.",
        "0 1 6379 7f001402.addr.mesh.",
    ]
    assert addresses(server, "7f001401.addr.mesh") == ["127.0.20.1"]
    reverse = ".".join(reversed(str(vip).split("."))) + ".in-addr.arpa"
    assert records(ask(server, reverse, "PTR"), "PTR") == ["redis.svc.mesh.local."]
    assert rcode(ask(server, "svc.mesh.local", "SOA")) == "NOERROR"


def test_an_everywhere_mesh_answers_both_names(server):
    apply(server, EVERYWHERE)
    name = "cache.svc.mesh.local"
    answered = eventually(
        lambda: addresses(server, name, client=OPEN_MESH_CLIENT), "cache's MeshService VIP"
    )
    assert ipaddress.ip_address(answered[0]) in MESH_SERVICE_RANGE
    legacy = addresses(server, "cache.mesh", client=OPEN_MESH_CLIENT)
    assert len(legacy) == 1 and ipaddress.ip_address(legacy[0]) in LEGACY_RANGE
    assert ipaddress.ip_address(legacy[0]) not in MESH_SERVICE_RANGE
    # Mesh `open`'s names are its clients' only.
    assert rcode(ask(server, name)) == "NXDOMAIN"


def test_a_custom_generator_names_answer_within_a_second_of_apply(server):
    apply(server, BY_TEAM)
    name = "api.payments.teams.mesh.local"
    answered, elapsed = poll(lambda: addresses(server, name), timeout=1.0)
    assert answered, f"{name} not answered within 1 s of apply ({elapsed:.2f} s)"
    assert ipaddress.ip_address(answered[0]) in MESH_SERVICE_RANGE
    output = ask(server, name)
    assert "aa" in flags(output)
    status = resource(server, "/meshes/default/meshservices/api")["status"]
    assert name in {address["hostname"] for address in status["addresses"]}
    assert status["vips"][0]["ip"] == answered[0]
    assert rcode(ask(server, "teams.mesh.local", "SOA")) == "NOERROR"
    assert rcode(ask(server, "nobody.payments.teams.mesh.local")) == "NXDOMAIN"


def test_a_template_rendering_an_invalid_name_gives_a_template_error_and_no_name(server):
    apply(server, BAD_NAMES)
    status = resource(server, "/meshes/default/meshservices/oddity")["status"]
    (condition,) = conditions(status, "bad-names")
    assert condition["type"] == "Generated"
    assert condition["status"] == "False" and condition["reason"] == "TemplateError"
    hostnames = {address["hostname"] for address in status.get("addresses", [])}
    assert not any(hostname.endswith(".bad.mesh.local") for hostname in hostnames)
    assert rcode(ask(server, "not_a_hostname.bad.mesh.local")) == "NXDOMAIN"
    assert rcode(ask(server, "bad.mesh.local", "SOA")) == "NOERROR"


def test_two_services_of_one_hostname_the_older_answers_the_newer_collides(server):
    apply(server, SHARED + "---" + shared_service("older"))
    older = resource(server, "/meshes/default/meshservices/older")["status"]
    apply(server, shared_service("newer"))
    newer = resource(server, "/meshes/default/meshservices/newer")["status"]
    assert addresses(server, "cache.shared.mesh.local") == [older["vips"][0]["ip"]]
    assert newer["vips"][0]["ip"] != older["vips"][0]["ip"]
    (condition,) = conditions(newer, "shared")
    assert condition["status"] == "False" and condition["reason"] == "Collision"
    assert "cache.shared.mesh.local" not in {a["hostname"] for a in newer.get("addresses", [])}
    (kept,) = conditions(resource(server, "/meshes/default/meshservices/older")["status"], "shared")
    assert kept["status"] == "True" and kept["reason"] == "Generated"


def test_a_mesh_external_service_answers_under_extsvc(server):
    apply(server, HTTPBIN)
    name = "httpbin.extsvc.mesh.local"
    answered, _ = poll(lambda: addresses(server, name), timeout=1.0)
    assert answered and ipaddress.ip_address(answered[0]) in EXTERNAL_SERVICE_RANGE
    assert "aa" in flags(ask(server, name))
    status = resource(server, "/meshes/default/meshexternalservices/httpbin")["status"]
    assert status["vip"]["ip"] == answered[0]
    assert status["addresses"][0]["hostname"] == name
    srv = ask(server, f"_443._tcp.{name}", "SRV")
    assert records(srv, "SRV") == ["0 1 443 httpbin.org."]


def test_a_restart_keeps_the_vips_and_names(server):
    """Last: it restarts the module's server."""
    before = addresses(server, "redis.svc.mesh.local")
    status = resource(server, "/meshes/default/meshservices/redis")["status"]
    external = addresses(server, "httpbin.extsvc.mesh.local")
    shared = addresses(server, "cache.shared.mesh.local")
    assert before and external and shared
    assert server.stop() == 0
    server.start()
    assert addresses(server, "redis.svc.mesh.local") == before
    assert addresses(server, "httpbin.extsvc.mesh.local") == external
    # The older of two services of one hostname still holds it.
    assert addresses(server, "cache.shared.mesh.local") == shared
    again = resource(server, "/meshes/default/meshservices/redis")["status"]
    assert again["vips"] == status["vips"]
    assert again["addresses"] == status["addresses"]
    assert rcode(ask(server, "redis.mesh")) == "NXDOMAIN"
