"""The one settings object: every option is declared once here, with its default.

Each field's metadata becomes a click option (``--dns-port``) that also reads the
environment variable ``MESHDNS_DNS_PORT``; commands pick the options they take by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any, TypeVar

import click

from dnsserver.errors import ConfigError
from dnsserver.forward import UpstreamServer

ENV_PREFIX = "MESHDNS"
DEFAULT_API = "http://127.0.0.1:5681"


def _option(
    help: str,
    *,
    type: Any = None,
    flag: str | None = None,
    short: str | None = None,
    multiple: bool = False,
) -> dict[str, Any]:
    # A `multiple` option may be repeated, and each value may be a comma-separated list.
    return {"help": help, "type": type, "flag": flag, "short": short, "multiple": multiple}


def split_list(values: tuple[str, ...]) -> list[str]:
    """The items of a repeatable option whose values may also be comma-separated lists."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


# --allow-recursion words: every registered dataplane address; nobody at all.
RECURSION_DATAPLANES = "dataplanes"
RECURSION_NONE = "none"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `meshdns serve` and friends can be told, with DESIGN's defaults."""

    database_url: str = field(
        default="sqlite+aiosqlite:///meshdns.db",
        metadata=_option(
            "SQLAlchemy URL of the registry: sqlite+aiosqlite:///FILE or postgresql+asyncpg://..."
        ),
    )
    dns_address: str = field(
        default="127.0.0.1", metadata=_option("Address the DNS server listens on (UDP and TCP).")
    )
    dns_port: int = field(
        default=5653,
        metadata=_option("Port of the DNS server (UDP and TCP).", type=click.IntRange(0, 65535)),
    )
    api_address: str = field(
        default="127.0.0.1", metadata=_option("Address the HTTP API listens on.")
    )
    api_port: int = field(
        default=5681, metadata=_option("Port of the HTTP API.", type=click.IntRange(0, 65535))
    )
    domain: str = field(
        default="mesh", metadata=_option("The DNS zone meshdns is authoritative for.")
    )
    mode: str = field(
        default="standalone",
        metadata=_option(
            "Control plane mode.", type=click.Choice(["standalone", "zone", "global"])
        ),
    )
    zone: str | None = field(
        default=None, metadata=_option("Name of this zone (with --mode zone).")
    )
    default_mesh: str = field(
        default="default",
        metadata=_option("Mesh whose names are answered for clients that are not dataplanes."),
    )
    vip_cidr: str = field(
        default="240.0.0.0/4", metadata=_option("IPv4 range virtual IPs are allocated from.")
    )
    vip6_cidr: str | None = field(
        default=None, metadata=_option("IPv6 range for IPv6 virtual IPs (off by default).")
    )
    vip_quarantine: float = field(
        default=3600.0,
        metadata=_option(
            "Seconds a released virtual IP is held before another service may get it.",
            type=click.FloatRange(0),
        ),
    )
    ttl: int = field(
        default=30, metadata=_option("TTL of VIP answers, in seconds.", type=click.IntRange(0))
    )
    endpoints_ttl: int = field(
        default=5, metadata=_option("TTL of endpoint answers, in seconds.", type=click.IntRange(0))
    )
    negative_ttl: int = field(
        default=30,
        metadata=_option(
            "SOA minimum: how long resolvers may cache NXDOMAIN and NODATA.", type=click.IntRange(0)
        ),
    )
    allow_recursion: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128", RECURSION_DATAPLANES),
        metadata=_option(
            "Who may have names outside the zone resolved (forwarded upstream): CIDRs, "
            f"'{RECURSION_DATAPLANES}' for every registered dataplane, or "
            f"'{RECURSION_NONE}'. Repeat or comma-separate; replaces the default. "
            "Everyone else is REFUSED.",
            multiple=True,
        ),
    )
    resolver_address: tuple[str, ...] = field(
        default=("127.0.0.1", "::1"),
        metadata=_option(
            "Addresses resolvers forward queries from (a node's resolver, on loopback): a "
            "query from one is answered in --default-mesh, never in the view of a dataplane "
            "registered there. Repeat or comma-separate; replaces the default.",
            multiple=True,
        ),
    )
    upstream: tuple[str, ...] = field(
        default=(),
        metadata=_option(
            "Upstream resolver ADDR[:PORT] for names outside the zone. Repeat or "
            "comma-separate; default: the nameservers of /etc/resolv.conf.",
            multiple=True,
        ),
    )
    heartbeat_interval: float = field(
        default=5.0,
        metadata=_option(
            "Seconds between a dataplane agent's heartbeats (agents are told at connect); "
            "also how often heartbeats are written and offline dataplanes looked for.",
            type=click.FloatRange(0.05),
        ),
    )
    offline_after: int = field(
        default=3,
        metadata=_option(
            "Missed heartbeats after which an agent's dataplane is offline (no endpoint).",
            type=click.IntRange(2),
        ),
    )
    agent_cleanup_delay: float = field(
        default=60.0,
        metadata=_option(
            "Seconds an offline dataplane registered by an agent is kept before deletion.",
            type=click.FloatRange(0),
        ),
    )
    offline_gc_age: float = field(
        default=259200.0,
        metadata=_option(
            "Seconds an offline dataplane created through the API is kept before deletion "
            "(Kuma's 72 h).",
            type=click.FloatRange(0),
        ),
    )
    dns_workers: int = field(
        default=1,
        metadata=_option(
            "DNS processes sharing the DNS port (SO_REUSEPORT); each follows the registry "
            "itself. 1: the serve process alone.",
            type=click.IntRange(1, 64),
        ),
    )
    allow_transfer: tuple[str, ...] = field(
        default=(),
        metadata=_option(
            "CIDRs that may transfer the zone (AXFR/IXFR of the default mesh's view). "
            "Repeat or comma-separate; default: nobody (REFUSED).",
            multiple=True,
        ),
    )
    notify: tuple[str, ...] = field(
        default=(),
        metadata=_option(
            "Secondary ADDR[:PORT] to send NOTIFY to when the zone changes. Repeat or "
            "comma-separate.",
            multiple=True,
        ),
    )
    loopback_admin: bool = field(
        default=True,
        metadata=_option(
            "Treat API requests from loopback as admin without a token (Kuma's default); "
            "--no-loopback-admin requires a token from everyone.",
            flag="--loopback-admin/--no-loopback-admin",
        ),
    )
    api_tls_cert: str | None = field(
        default=None,
        metadata=_option("PEM certificate (chain) for HTTPS on the API; needs --api-tls-key."),
    )
    api_tls_key: str | None = field(
        default=None, metadata=_option("PEM private key of --api-tls-cert.")
    )
    rate_limit: int = field(
        default=10000,
        metadata=_option(
            "DNS responses per second to one client network (token bucket, burst of one "
            "second); 0: no limit.",
            type=click.IntRange(0),
        ),
    )
    rate_limit_slip: int = field(
        default=2,
        metadata=_option(
            "Of the UDP responses over the limit, every Nth is sent empty with TC set, so a "
            "real client retries over TCP (BIND's slip); the others are dropped. 0: drop all.",
            type=click.IntRange(0),
        ),
    )
    rate_limit_ipv4_prefix: int = field(
        default=32,
        metadata=_option(
            "IPv4 prefix length that makes one client network for --rate-limit.",
            type=click.IntRange(0, 32),
        ),
    )
    rate_limit_ipv6_prefix: int = field(
        default=64,
        metadata=_option(
            "IPv6 prefix length that makes one client network for --rate-limit.",
            type=click.IntRange(0, 128),
        ),
    )
    tcp_max_connections: int = field(
        default=256,
        metadata=_option(
            "Open DNS TCP connections at most; past it the longest idle one is closed.",
            type=click.IntRange(1),
        ),
    )
    tcp_idle_timeout: float = field(
        default=10.0,
        metadata=_option(
            "Seconds a DNS TCP connection may stay idle before it is closed (RFC 7766).",
            type=click.FloatRange(0.1),
        ),
    )
    zone_database_url: str | None = field(
        default=None,
        metadata=_option("`sync`: SQLAlchemy URL of the zone control plane's registry."),
    )
    global_database_url: str | None = field(
        default=None,
        metadata=_option("`sync`: SQLAlchemy URL of the global control plane's registry."),
    )
    sync_batch: int = field(
        default=1000,
        metadata=_option(
            "`sync`: changes replicated per transaction.", type=click.IntRange(1, 100_000)
        ),
    )
    sync_poll_interval: float = field(
        default=1.0,
        metadata=_option(
            "`sync`: seconds between looks for changes when no NOTIFY says so (Postgres "
            "notifies at once; SQLite is polled).",
            type=click.FloatRange(0.01),
        ),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_option(
            "`sync`: serve Prometheus metrics on this port (GET /metrics); off by default.",
            type=click.IntRange(0, 65535),
        ),
    )
    metrics_address: str = field(
        default="127.0.0.1",
        metadata=_option("`sync`: address the metrics port (--metrics-port) listens on."),
    )
    log_level: str = field(
        default="info",
        metadata=_option(
            "Log level.",
            type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        ),
    )
    log_format: str = field(
        default="text",
        metadata=_option(
            "Log lines as text, or as one JSON object each.", type=click.Choice(["text", "json"])
        ),
    )

    def __post_init__(self) -> None:
        # Fail at start-up, with the option's name, rather than deep inside the server.
        try:
            IPv4Network(self.vip_cidr)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--vip-cidr") from None
        if self.vip6_cidr is not None:
            try:
                IPv6Network(self.vip6_cidr)
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="--vip6-cidr") from None
        for item in split_list(self.allow_recursion):
            if item in (RECURSION_DATAPLANES, RECURSION_NONE):
                continue
            try:
                ip_network(item, strict=False)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r} is not a CIDR, {RECURSION_DATAPLANES!r} or {RECURSION_NONE!r}",
                    param_hint="--allow-recursion",
                ) from None
        for item in split_list(self.resolver_address):
            try:
                ip_address(item)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r} is not an IP address", param_hint="--resolver-address"
                ) from None
        for item in split_list(self.upstream):
            try:
                UpstreamServer.parse(item)
            except ConfigError as error:
                raise click.BadParameter(str(error), param_hint="--upstream") from None
        for item in split_list(self.notify):
            try:
                UpstreamServer.parse(item)
            except ConfigError as error:
                raise click.BadParameter(str(error), param_hint="--notify") from None
        for item in split_list(self.allow_transfer):
            try:
                ip_network(item, strict=False)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r} is not a CIDR", param_hint="--allow-transfer"
                ) from None
        if (self.api_tls_cert is None) != (self.api_tls_key is None):
            raise click.BadParameter(
                "--api-tls-cert and --api-tls-key go together", param_hint="--api-tls-cert"
            )
        if self.mode == "zone" and not self.zone:
            raise click.BadParameter("--mode zone needs --zone NAME", param_hint="--zone")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Settings:
        names = {f.name for f in dataclasses.fields(cls)}
        # A repeatable option given no value comes as (): the default then applies.
        return cls(
            **{
                key: value
                for key, value in options.items()
                if key in names and value is not None and value != ()
            }
        )


def _default_text(default: Any) -> str:
    if isinstance(default, tuple):
        return f"  [default: {','.join(default)}]" if default else ""
    return f"  [default: {default}]"


F = TypeVar("F", bound=Callable[..., Any])


def options(*names: str) -> Callable[[F], F]:
    """Add the click options for the named settings fields to a command."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}

    def decorate(command: F) -> F:
        for name in reversed(names):
            spec = fields[name]
            meta = spec.metadata
            flag = meta["flag"] or "--" + name.replace("_", "-")
            decls = [flag] + ([meta["short"]] if meta["short"] else [])
            command = click.option(
                *decls,
                name,
                default=None,
                type=meta["type"],
                multiple=meta["multiple"],
                envvar=f"{ENV_PREFIX}_{name.upper()}",
                show_envvar=True,
                help=f"{meta['help']}{_default_text(spec.default)}",
            )(command)
        return command

    return decorate
