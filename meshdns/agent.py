"""`meshdns dp run`: the dataplane agent beside a workload.

It registers its dataplane with the control plane, keeps it online with heartbeats,
follows what its dataplane sees incrementally (``GET /meshes/{mesh}/dataplanes/{name}/
dns-records?after=R``, a long poll that resumes from R after any outage) and answers DNS
on 127.0.0.1:15053 with dnsserver's own Handler and DnsServer over a Snapshot built from
what the control plane sent (meshdns/agent_records.py): the names the control plane
answers that dataplane, by the same code. Other names go upstream. When the control
plane is unreachable the last state keeps being answered; SIGTERM disconnects (an
agent-created dataplane is deleted at once) and exits.

With ``--token-file`` every request carries the dataplane token as a bearer token; the
file is read again after a 401, so a renewed token is taken up without a restart.
``--ca-cert`` verifies an https control plane signed by a private CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dnsserver.config import DnsLimits, ZoneConfig
from dnsserver.forward import Forwarder, UpstreamServer, system_upstreams
from dnsserver.handler import Handler
from dnsserver.server import DnsServer
from meshdns.agent_records import LocalRecords, carries_changes
from registry.agents.records import RecordsError
from registry.documents import DocumentError, load_yaml
from registry.errors import InvalidResource
from registry.schema import Dataplane, parse_resource

log = logging.getLogger("meshdns.agent")

LONG_POLL_WAIT = 30.0  # seconds the control plane holds a records request open
MAX_BACKOFF = 2.0


class AgentError(Exception):
    """The agent cannot start."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """What the agent is told (meshdns/wiring.py builds it from `dp run`'s settings)."""

    cp: str
    dataplane_file: Path
    dns_address: str
    dns_port: int
    upstream: tuple[str, ...]
    token_file: Path | None
    ca_cert: Path | None
    # What one client may cost the local DNS server, as on the central one.
    limits: DnsLimits
    # Queries from these are answered in the mesh, never as a dataplane's (ZoneConfig).
    resolver_addresses: frozenset[IPv4Address | IPv6Address]


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise AgentError(f"cannot read the token file {path}: {error.strerror}") from None
    if not token:
        raise AgentError(f"the token file {path} is empty")
    return token


class TokenFileAuth(httpx.Auth):
    """The token in a file as the bearer token; after a 401 the file is read again and,
    when it holds another token, the request is sent once more with that one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.token = read_token(path)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code != 401:
            return
        try:
            fresh = read_token(self.path)
        except AgentError as error:
            log.warning("%s", error)
            return
        if fresh != self.token:
            log.info("the control plane refused the token; using the new one in %s", self.path)
            self.token = fresh
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request


def http_client(settings: AgentSettings) -> httpx.AsyncClient:
    """The agent's HTTP client: its token, and the CA that signed an https control plane."""
    verify: ssl.SSLContext | bool = True
    if settings.ca_cert is not None:
        try:
            verify = ssl.create_default_context(cafile=str(settings.ca_cert))
        except (OSError, ssl.SSLError) as error:
            raise AgentError(f"cannot use the CA certificate {settings.ca_cert}: {error}") from None
    auth = TokenFileAuth(settings.token_file) if settings.token_file is not None else None
    return httpx.AsyncClient(timeout=10, auth=auth, verify=verify)


def refusal(response: httpx.Response) -> str:
    """What a 4xx answer says: Kuma's error details, else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("details"):
        return f"{response.status_code} {body.get('title', '')}: {body['details']}"
    return f"{response.status_code}: {response.text[:200]}"


def load_dataplane(path: Path) -> Dataplane:
    """The Dataplane in `path` (Kuma's Universal YAML or JSON)."""
    try:
        document = load_yaml(path.read_text())
    except (OSError, DocumentError) as error:
        raise AgentError(f"cannot read the dataplane file {path}: {error}") from None
    if isinstance(document, dict):
        document.setdefault("type", "Dataplane")
        document.setdefault("mesh", "default")
    try:
        resource = parse_resource(document)
    except InvalidResource as error:
        raise AgentError(f"{path}: {error}") from None
    if not isinstance(resource, Dataplane):
        raise AgentError(f"{path} holds a {type(resource).__name__}, not a Dataplane")
    return resource


class AgentClient:
    """The agent's side of the control-plane protocol: connect, heartbeats, records."""

    def __init__(
        self,
        cp: str,
        dataplane: Dataplane,
        on_records: Callable[[dict[str, Any]], None],
        *,
        http: httpx.AsyncClient | None = None,
        wait: float = LONG_POLL_WAIT,
    ) -> None:
        self.base = f"{cp.rstrip('/')}/meshes/{quote(dataplane.mesh, safe='')}"
        self.path = f"{self.base}/dataplanes/{quote(dataplane.name, safe='')}"
        self.body = dataplane.dump()
        self.on_records = on_records
        self.http = http or httpx.AsyncClient(timeout=10)
        self.wait = wait
        self.revision = 0
        self.heartbeat_interval = 5.0
        self.beats_sent = 0
        self._reachable = True

    async def connect(self) -> dict[str, Any]:
        """Register the dataplane, retrying until the control plane answers; its config."""
        backoff = 0.1
        while True:
            try:
                response = await self.http.post(f"{self.path}/connect", json=self.body)
            except httpx.HTTPError as error:
                self._lost(error)
            else:
                if response.status_code in (200, 201):
                    config: dict[str, Any] = response.json()
                    self.heartbeat_interval = float(config["heartbeatInterval"])
                    self._back()
                    return config
                if response.status_code < 500:
                    raise AgentError(
                        f"the control plane refused the dataplane ({refusal(response)})"
                    )
                self._lost(f"connect answered {response.status_code}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def heartbeats(self) -> None:
        """Send a heartbeat every interval until cancelled; register again when forgotten."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                response = await self.http.post(f"{self.path}/heartbeat")
            except httpx.HTTPError as error:
                self._lost(error)
                continue
            if response.status_code == 404:
                log.info("the control plane forgot this dataplane; registering again")
                await self.connect()
            elif response.status_code in (401, 403):
                self._refused("heartbeat", response)
            elif response.is_success:
                self.beats_sent += 1
                self._back()

    async def fetch(self, wait: float) -> bool:
        """One dns-records request; True when it was answered (and applied)."""
        try:
            response = await self.http.get(
                f"{self.path}/dns-records",
                params={"after": self.revision, "wait": wait},
                timeout=wait + 10,
            )
            if response.status_code in (401, 403):
                self._refused("records", response)
                return False
            response.raise_for_status()
            answer = response.json()
            if carries_changes(answer):
                self.on_records(answer)
            self.revision = int(answer["revision"])
        except httpx.HTTPError as error:
            self._lost(error)
            return False
        except (ValueError, KeyError, TypeError, RecordsError) as error:
            # Kept from before, and asked for again after a backoff.
            log.error("the control plane sent records that cannot be read: %s", error)
            return False
        self._back()
        return True

    async def follow(self) -> None:
        """Long-poll for changes after the revision held, from there after any outage."""
        backoff = 0.1
        while True:
            if await self.fetch(self.wait):
                backoff = 0.1
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def disconnect(self, timeout: float = 3.0) -> None:
        try:
            await self.http.post(f"{self.path}/disconnect", timeout=timeout)
        except httpx.HTTPError as error:
            log.warning("could not deregister from the control plane: %s", error)

    def _refused(self, what: str, response: httpx.Response) -> None:
        # Every time: a refused token is for an operator to fix, not a passing outage.
        log.error("the control plane refused the %s request (%s)", what, refusal(response))

    def _lost(self, error: object) -> None:
        if self._reachable:
            log.warning(
                "control plane unreachable (%s); answering DNS from revision %s",
                error,
                self.revision,
            )
        self._reachable = False

    def _back(self) -> None:
        if not self._reachable:
            log.info("control plane reachable again; resuming from revision %s", self.revision)
        self._reachable = True


def agent_upstreams(settings: AgentSettings) -> list[UpstreamServer]:
    given = [item.strip() for value in settings.upstream for item in value.split(",")]
    servers = (
        [UpstreamServer.parse(item) for item in given if item] if any(given) else system_upstreams()
    )
    ours = ip_address(settings.dns_address)
    return [s for s in servers if not (s.port == settings.dns_port and s.address == ours)]


def zone_config(
    config: dict[str, Any], mesh: str, resolver_addresses: frozenset[IPv4Address | IPv6Address]
) -> ZoneConfig:
    """The central server's DNS settings, answered in this dataplane's mesh."""
    return ZoneConfig(
        domain=config["domain"],
        default_mesh=mesh,
        ttl=config["ttl"],
        endpoints_ttl=config["endpointsTtl"],
        negative_ttl=config["negativeTtl"],
        ns_address=None,
        local_zone=config.get("zone"),
        # The agent serves its own workload over loopback only.
        allow_recursion=(IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")),
        recursion_for_dataplanes=False,
        resolver_addresses=resolver_addresses,
        allow_transfer=(),
    )


async def run_agent(settings: AgentSettings, signals: Sequence[int] = ()) -> None:
    """Run until SIGTERM or SIGINT; then disconnect from the control plane and stop."""
    dataplane = load_dataplane(settings.dataplane_file)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in signals or (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    records = LocalRecords(dataplane.mesh)
    handler: Handler | None = None

    def on_records(answer: dict[str, Any]) -> None:
        snapshot, delta = records.apply(answer)
        if handler is not None:
            handler.update(snapshot, delta)

    async with http_client(settings) as http:
        client = AgentClient(settings.cp, dataplane, on_records, http=http)
        connecting = asyncio.create_task(client.connect())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():
            connecting.cancel()
            return
        stopping.cancel()
        config = connecting.result()
        log.info(
            "dataplane %s/%s connected to %s; heartbeat every %ss",
            dataplane.mesh,
            dataplane.name,
            settings.cp,
            client.heartbeat_interval,
        )
        await client.fetch(wait=0)  # answer from the current state from the first query
        upstreams = agent_upstreams(settings)
        forwarder = Forwarder(upstreams) if upstreams else None
        handler = Handler(
            zone_config(config, dataplane.mesh, settings.resolver_addresses),
            records.snapshot,
            forwarding=forwarder is not None,
        )
        dns = DnsServer(
            handler,
            settings.dns_address,
            settings.dns_port,
            limits=settings.limits,
            forwarder=forwarder,
        )
        await dns.start()
        log.info("local DNS on %s:%s", settings.dns_address, settings.dns_port)
        tasks = {
            asyncio.create_task(client.heartbeats(), name="heartbeats"),
            asyncio.create_task(client.follow(), name="records"),
        }
        try:
            await stop.wait()
        finally:
            log.info("stopping: deregistering %s/%s", dataplane.mesh, dataplane.name)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await client.disconnect()
            await dns.close()
            if forwarder is not None:
                await forwarder.close()
