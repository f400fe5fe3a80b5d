"""A Postgres failover under steady DNS queries and writes: the primary crashes, its
synchronous standby is promoted (what an HA manager such as Patroni does), and two
`meshdns serve` replicas pointed at both hosts (`target_session_attrs=read-write`) ride
through it: no DNS answer lost, no acknowledged write lost, writes back within seconds,
and both replicas' answers equal to the new primary's contents."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dns.message
import dns.query
import httpx
import pytest

from tests.factories import dataplane
from tests.helpers import eventually
from tests.live.conftest import migrate, new_cluster
from tests.live.livetesting import DnsProbe, put_dataplane, resolve
from tests.pgcluster import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(240)]

BASELINE = {"alpha": "127.0.40.1", "beta": "127.0.41.1"}
FIRST_WRITE_WITHIN = 30.0  # seconds from the crash to the first acknowledged write


def sql(cluster: PostgresCluster, statement: str) -> str:
    import subprocess

    result = subprocess.run(
        [str(cluster.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port)]
        + ["-U", "postgres", "-d", "postgres", "-Atc", statement],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def replicated() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    """A migrated primary and its streaming standby, replication synchronous."""
    primary = new_cluster()
    standby = None
    try:
        primary.start()
        migrate(primary)
        standby = PostgresCluster(standby_of=primary)
        standby.start()
        # Synchronous from now on: a commit is acknowledged once the standby has it.
        sql(primary, "ALTER SYSTEM SET synchronous_standby_names = 'walreceiver'")
        sql(primary, "SELECT pg_reload_conf()")
        eventually(
            lambda: sql(primary, "SELECT sync_state FROM pg_stat_replication") == "sync",
            "the standby streaming synchronously",
        )
        yield primary, standby
    finally:
        primary.cleanup()
        if standby is not None:
            standby.cleanup()


def endpoints_over_tcp(port: int, name: str) -> list[str]:
    """The A records of `name`, over TCP (more than fit a UDP answer)."""
    reply = dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    return sorted(item.to_text() for rrset in reply.answer for item in rrset)


def both_hosts(primary: PostgresCluster, standby: PostgresCluster) -> str:
    return (
        "postgresql+asyncpg://postgres@/postgres"
        f"?host=127.0.0.1:{primary.port}&host=127.0.0.1:{standby.port}"
        "&target_session_attrs=read-write"
    )


class Writer:
    """PUTs a new dataplane of service `w` every 50 ms through the replicas in turn,
    keeping those acknowledged (201) with when."""

    def __init__(self, apis: list[str]) -> None:
        self.apis = apis
        self.acknowledged: dict[str, float] = {}  # address -> when
        self.refused: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            index += 1
            address = f"127.0.{50 + index // 250}.{index % 250 + 1}"
            api = self.apis[index % len(self.apis)]
            try:
                answer = put_dataplane(api, dataplane(f"w-{index}", address, "w"), timeout=5)
                if answer.status_code == 201:
                    self.acknowledged[address] = time.monotonic()
                else:
                    self.refused.append(answer.status_code)
            except httpx.HTTPError:
                self.refused.append(0)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_crashed_primary_and_a_promoted_standby_lose_nothing(replicated, start_meshdns):
    primary, standby = replicated
    url = both_hosts(primary, standby)
    first, second = start_meshdns(url), start_meshdns(url)
    for service, address in BASELINE.items():
        created = put_dataplane(first.api, dataplane(f"{service}-1", address, service))
        assert created.status_code == 201, created.text
    names = [f"{service}.mesh" for service in BASELINE] + ["alpha.endpoints.mesh"]
    for server in (first, second):
        eventually(
            lambda server=server: (
                resolve(server.dns_port, "beta.endpoints.mesh") == ("NOERROR", (BASELINE["beta"],))
            ),
            "the baseline in both replicas",
        )
    baseline = {name: resolve(first.dns_port, name) for name in names}
    probes = [DnsProbe(server.dns_port, names, interval=0.02).start() for server in (first, second)]
    writer = Writer([first.api, second.api]).start()
    time.sleep(2)

    primary.stop("immediate")  # the primary's crash: no checkpoint, no goodbye
    crashed = time.monotonic()
    standby.promote()
    eventually(
        lambda: any(when > crashed for when in writer.acknowledged.values()),
        "a write acknowledged after the failover",
        timeout=FIRST_WRITE_WITHIN + 10,
    )
    first_write = min(when for when in writer.acknowledged.values() if when > crashed) - crashed
    time.sleep(2)
    writer.stop()
    observations = [probe.stop() for probe in probes]

    # Every DNS question was answered, and as before (the baseline never changed).
    for observed in observations:
        assert observed, "the probe asked nothing"
        wrong = [(o.name, o.answer) for o in observed if o.answer != baseline[o.name]]
        assert not wrong, wrong[:5]
    # Writes came back well within the bound; none acknowledged was lost.
    print(
        f"first write {first_write:.2f} s after the crash; refused meanwhile: "
        f"{len(writer.refused)} ({sorted(set(writer.refused))})"
    )
    assert first_write < FIRST_WRITE_WITHIN
    stored = set(sql(standby, "SELECT address FROM dataplanes WHERE name LIKE 'w-%'").split())
    lost = set(writer.acknowledged) - stored
    assert not lost, f"acknowledged writes lost in the failover: {sorted(lost)[:5]}"
    # Both replicas answer what the new primary holds.
    expected = sorted(stored)
    for server in (first, second):
        eventually(
            lambda server=server: (
                endpoints_over_tcp(server.dns_port, "w.endpoints.mesh") == expected
            ),
            "the replica's answer equal to the new primary's contents",
            timeout=15,
        )
