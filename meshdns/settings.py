"""The one settings object: every option of every command is declared once here.

A declaration gives an option's default, help, type and the commands that take it; the
option is ``--<field-name>`` (unless it names another flag) and also reads the
environment variable ``MESHDNS_<FIELD_NAME>`` (unless it names another). Components
(the DNS zone's config, rate limits, VIPs, liveness, the agent) are built from these
values in meshdns/wiring.py; none of them has defaults of its own for an option.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import click

from dnsserver.errors import ConfigError
from dnsserver.forward import UpstreamServer

ENV_PREFIX = "MESHDNS"

# The commands, by the words that run them (`meshdns token generate`).
SERVE, MIGRATE, SYNC, EXPORT_ZONE, DP_RUN = "serve", "migrate", "sync", "export-zone", "dp run"
TOKEN_COMMANDS = (
    "token generate",
    "token revoke",
    "token rotate-key",
    "token keys",
    "token delete-key",
)
CLIENT_COMMANDS = ("apply", "get", "delete", "export")
COMMANDS = frozenset({SERVE, MIGRATE, SYNC, EXPORT_ZONE, DP_RUN, *TOKEN_COMMANDS, *CLIENT_COMMANDS})

# --allow-recursion words: every registered dataplane address; nobody at all.
RECURSION_DATAPLANES = "dataplanes"
RECURSION_NONE = "none"

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """How one setting is given on the command line and in the environment."""

    help: str
    commands: frozenset[str]
    type: Any = None
    # The flag when it is not --<field-name>, e.g. a boolean's "--on/--off" pair.
    flag: str | None = None
    short: str | None = None
    # A `multiple` option may be repeated, and each value may be a comma-separated list.
    multiple: bool = False
    required: bool = False
    # The variable after MESHDNS_ when it is not the field's name.
    env: str | None = None


def option(
    default: Any,
    help: str,
    *,
    commands: Iterable[str],
    type: Any = None,
    flag: str | None = None,
    short: str | None = None,
    multiple: bool = False,
    required: bool = False,
    env: str | None = None,
) -> Any:
    """A settings field declared as an option of `commands`."""
    taken = frozenset(commands)
    unknown = taken - COMMANDS
    assert not unknown, f"no such command: {', '.join(sorted(unknown))}"
    spec = OptionSpec(help, taken, type, flag, short, multiple, required, env)
    return field(default=default, metadata={"option": spec})


def envvar(name: str) -> str:
    """The environment variable the setting `name` is read from."""
    spec: OptionSpec = SETTINGS_FIELDS[name].metadata["option"]
    return f"{ENV_PREFIX}_{spec.env or name.upper()}"


def split_list(values: tuple[str, ...]) -> list[str]:
    """The items of a repeatable option whose values may also be comma-separated lists."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


_SERVE_AND_EXPORT = (SERVE, EXPORT_ZONE)
_DATABASE = (SERVE, MIGRATE, EXPORT_ZONE, *TOKEN_COMMANDS)
_LOGGING = (SERVE, SYNC, DP_RUN)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `meshdns` and its commands can be told, with DESIGN's defaults.

    A command's `--help` lists its options in the order they are declared here.
    """

    # -- the dataplane agent (`dp run`) ---------------------------------------------------
    cp: str | None = option(
        None, "URL of the control plane API.", commands=(DP_RUN,), required=True
    )
    dataplane_file: str | None = option(
        None,
        "The Dataplane resource (Kuma Universal YAML or JSON).",
        commands=(DP_RUN,),
        type=click.Path(exists=True, dir_okay=False),
        required=True,
    )
    dp_dns_address: str = option(
        "127.0.0.1", "Address of the local DNS server.", commands=(DP_RUN,), flag="--dns-address"
    )
    dp_dns_port: int = option(
        15053,
        "Port of the local DNS server (UDP and TCP).",
        commands=(DP_RUN,),
        type=click.IntRange(0, 65535),
        flag="--dns-port",
    )
    dp_token_file: str | None = option(
        None,
        "File holding a dataplane token (`meshdns token generate --type dataplane`); "
        "read again when the control plane answers 401, so it can be renewed in place.",
        commands=(DP_RUN,),
        type=click.Path(exists=True, dir_okay=False),
        flag="--token-file",
        env="TOKEN_FILE",
    )
    # -- the client commands (and the agent) -----------------------------------------------
    api: str = option("http://127.0.0.1:5681", "URL of the meshdns API.", commands=CLIENT_COMMANDS)
    mesh: str = option(
        "default",
        "The mesh to work on.",
        commands=("get", "delete", EXPORT_ZONE),
        short="-m",
    )
    token_file: str | None = option(
        None,
        "File holding the bearer token for the API (`meshdns token generate`); "
        f"else ${ENV_PREFIX}_TOKEN, else none (loopback is admin by default).",
        commands=CLIENT_COMMANDS,
        type=click.Path(dir_okay=False),
    )
    ca_cert: str | None = option(
        None,
        "PEM CA certificate(s) to verify an https API with (default: the system's).",
        commands=(*CLIENT_COMMANDS, DP_RUN),
        type=click.Path(exists=True, dir_okay=False),
    )
    # -- the registry ----------------------------------------------------------------
    database_url: str = option(
        "sqlite+aiosqlite:///meshdns.db",
        "SQLAlchemy URL of the registry: sqlite+aiosqlite:///FILE or postgresql+asyncpg://...",
        commands=_DATABASE,
    )
    change_log_revisions: int = option(
        100_000,
        "Revisions the change log keeps; older changes are compacted away, and a reader "
        "(DNS process, replica, sync worker) that falls further behind reads the registry "
        "whole again.",
        commands=(SERVE,),
        type=click.IntRange(1),
    )
    change_log_max_age: float = option(
        604800.0,
        "Seconds the change log keeps a change at most, within --change-log-revisions "
        "(7 days); 0: no age limit.",
        commands=(SERVE,),
        type=click.FloatRange(0),
    )
    change_log_compact_interval: float = option(
        30.0,
        "Seconds between compactions of the change log.",
        commands=(SERVE,),
        type=click.FloatRange(0.1),
    )
    # -- the DNS server ----------------------------------------------------------------
    dns_address: str = option(
        "127.0.0.1", "Address the DNS server listens on (UDP and TCP).", commands=_SERVE_AND_EXPORT
    )
    dns_port: int = option(
        5653,
        "Port of the DNS server (UDP and TCP).",
        commands=(SERVE,),
        type=click.IntRange(0, 65535),
    )
    # -- the HTTP API ------------------------------------------------------------------
    api_address: str = option("127.0.0.1", "Address the HTTP API listens on.", commands=(SERVE,))
    api_port: int = option(
        5681, "Port of the HTTP API.", commands=(SERVE,), type=click.IntRange(0, 65535)
    )
    # -- the zone ------------------------------------------------------------------------
    domain: str = option(
        "mesh", "The DNS zone meshdns is authoritative for.", commands=_SERVE_AND_EXPORT
    )
    mode: str = option(
        "standalone",
        "Control plane mode.",
        commands=(SERVE,),
        type=click.Choice(["standalone", "zone", "global"]),
    )
    zone: str | None = option(
        None, "Name of this zone (with --mode zone).", commands=(SERVE, SYNC, EXPORT_ZONE)
    )
    default_mesh: str = option(
        "default",
        "Mesh whose names are answered for clients that are not dataplanes.",
        commands=(SERVE,),
    )
    vip_cidr: str = option(
        "240.0.0.0/4", "IPv4 range virtual IPs are allocated from.", commands=(SERVE,)
    )
    vip6_cidr: str | None = option(
        None, "IPv6 range for IPv6 virtual IPs (off by default).", commands=(SERVE,)
    )
    vip_quarantine: float = option(
        3600.0,
        "Seconds a released virtual IP is held before another service may get it.",
        commands=(SERVE,),
        type=click.FloatRange(0),
    )
    mesh_service_cidr: str = option(
        "241.0.0.0/8",
        "IPv4 range MeshServices' virtual IPs are allocated from (--vip-cidr never "
        "hands out an address in it).",
        commands=(SERVE,),
    )
    mesh_external_service_cidr: str = option(
        "242.0.0.0/8",
        "IPv4 range MeshExternalServices' virtual IPs are allocated from (--vip-cidr "
        "never hands out an address in it).",
        commands=(SERVE,),
    )
    mesh_multizone_service_cidr: str = option(
        "243.0.0.0/8",
        "IPv4 range MeshMultiZoneServices' virtual IPs are allocated from (--vip-cidr "
        "never hands out an address in it).",
        commands=(SERVE,),
    )
    skip_default_hostname_generators: bool = option(
        False,
        "Do not create the default HostnameGenerators at start (those that name "
        "MeshServices <name>.svc.mesh.local and the like).",
        commands=(SERVE,),
        flag="--skip-default-hostname-generators/--create-default-hostname-generators",
    )
    mesh_service_deletion_grace_period: float = option(
        3600.0,
        "Seconds a generated MeshService that no dataplane serves any more is kept before "
        "it is deleted (meshes whose meshServices.mode generates them).",
        commands=(SERVE,),
        type=click.FloatRange(0),
    )
    ttl: int = option(
        30, "TTL of VIP answers, in seconds.", commands=_SERVE_AND_EXPORT, type=click.IntRange(0)
    )
    endpoints_ttl: int = option(
        5,
        "TTL of endpoint answers, in seconds.",
        commands=_SERVE_AND_EXPORT,
        type=click.IntRange(0),
    )
    negative_ttl: int = option(
        30,
        "SOA minimum: how long resolvers may cache NXDOMAIN and NODATA.",
        commands=_SERVE_AND_EXPORT,
        type=click.IntRange(0),
    )
    allow_recursion: tuple[str, ...] = option(
        ("127.0.0.0/8", "::1/128", RECURSION_DATAPLANES),
        "Who may have names outside the zone resolved (forwarded upstream): CIDRs, "
        f"'{RECURSION_DATAPLANES}' for every registered dataplane, or "
        f"'{RECURSION_NONE}'. Repeat or comma-separate; replaces the default. "
        "Everyone else is REFUSED.",
        commands=(SERVE,),
        multiple=True,
    )
    resolver_address: tuple[str, ...] = option(
        ("127.0.0.1", "::1"),
        "Addresses resolvers forward queries from (a node's resolver, on loopback): a "
        "query from one is answered in --default-mesh, never in the view of a dataplane "
        "registered there. Repeat or comma-separate; replaces the default.",
        commands=(SERVE,),
        multiple=True,
    )
    upstream: tuple[str, ...] = option(
        (),
        "Upstream resolver ADDR[:PORT] for names outside the zone. Repeat or "
        "comma-separate; default: the nameservers of /etc/resolv.conf.",
        commands=(SERVE, DP_RUN),
        multiple=True,
    )
    # -- dataplane liveness ------------------------------------------------------------
    heartbeat_interval: float = option(
        5.0,
        "Seconds between a dataplane agent's heartbeats (agents are told at connect); "
        "also how often heartbeats are written and offline dataplanes looked for.",
        commands=(SERVE,),
        type=click.FloatRange(0.05),
    )
    offline_after: int = option(
        3,
        "Missed heartbeats after which an agent's dataplane is offline (no endpoint).",
        commands=(SERVE,),
        type=click.IntRange(2),
    )
    agent_cleanup_delay: float = option(
        60.0,
        "Seconds an offline dataplane registered by an agent is kept before deletion.",
        commands=(SERVE,),
        type=click.FloatRange(0),
    )
    offline_gc_age: float = option(
        259200.0,
        "Seconds an offline dataplane created through the API is kept before deletion "
        "(Kuma's 72 h).",
        commands=(SERVE,),
        type=click.FloatRange(0),
    )
    # -- scale-out, transfers, API security ----------------------------------------------
    dns_workers: int = option(
        1,
        "DNS processes sharing the DNS port (SO_REUSEPORT); each follows the registry "
        "itself. 1: the serve process alone.",
        commands=(SERVE,),
        type=click.IntRange(1, 64),
    )
    allow_transfer: tuple[str, ...] = option(
        (),
        "CIDRs that may transfer the zone (AXFR/IXFR of the default mesh's view). "
        "Repeat or comma-separate; default: nobody (REFUSED).",
        commands=(SERVE,),
        multiple=True,
    )
    notify: tuple[str, ...] = option(
        (),
        "Secondary ADDR[:PORT] to send NOTIFY to when the zone changes. Repeat or comma-separate.",
        commands=(SERVE,),
        multiple=True,
    )
    loopback_admin: bool = option(
        True,
        "Treat API requests from loopback as admin without a token (Kuma's default); "
        "--no-loopback-admin requires a token from everyone.",
        commands=(SERVE,),
        flag="--loopback-admin/--no-loopback-admin",
    )
    api_tls_cert: str | None = option(
        None,
        "PEM certificate (chain) for HTTPS on the API; needs --api-tls-key.",
        commands=(SERVE,),
    )
    api_tls_key: str | None = option(None, "PEM private key of --api-tls-cert.", commands=(SERVE,))
    # -- what one DNS client may cost ----------------------------------------------------
    rate_limit: int = option(
        10000,
        "DNS responses per second to one client network (token bucket, burst of one "
        "second); 0: no limit.",
        commands=(SERVE,),
        type=click.IntRange(0),
    )
    rate_limit_slip: int = option(
        2,
        "Of the UDP responses over the limit, every Nth is sent empty with TC set, so a "
        "real client retries over TCP (BIND's slip); the others are dropped. 0: drop all.",
        commands=(SERVE,),
        type=click.IntRange(0),
    )
    rate_limit_ipv4_prefix: int = option(
        32,
        "IPv4 prefix length that makes one client network for --rate-limit.",
        commands=(SERVE,),
        type=click.IntRange(0, 32),
    )
    rate_limit_ipv6_prefix: int = option(
        64,
        "IPv6 prefix length that makes one client network for --rate-limit.",
        commands=(SERVE,),
        type=click.IntRange(0, 128),
    )
    tcp_max_connections: int = option(
        256,
        "Open DNS TCP connections at most; past it the longest idle one is closed.",
        commands=(SERVE,),
        type=click.IntRange(1),
    )
    tcp_idle_timeout: float = option(
        10.0,
        "Seconds a DNS TCP connection may stay idle before it is closed (RFC 7766).",
        commands=(SERVE,),
        type=click.FloatRange(0.1),
    )
    # -- the sync worker -----------------------------------------------------------------
    zone_database_url: str | None = option(
        None, "`sync`: SQLAlchemy URL of the zone control plane's registry.", commands=(SYNC,)
    )
    global_database_url: str | None = option(
        None, "`sync`: SQLAlchemy URL of the global control plane's registry.", commands=(SYNC,)
    )
    sync_batch: int = option(
        1000,
        "`sync`: changes replicated per transaction.",
        commands=(SYNC,),
        type=click.IntRange(1, 100_000),
    )
    sync_poll_interval: float = option(
        1.0,
        "`sync`: seconds between looks for changes when no NOTIFY says so (Postgres "
        "notifies at once; SQLite is polled).",
        commands=(SYNC,),
        type=click.FloatRange(0.01),
    )
    metrics_port: int | None = option(
        None,
        "`sync`: serve Prometheus metrics on this port (GET /metrics); off by default.",
        commands=(SYNC,),
        type=click.IntRange(0, 65535),
    )
    metrics_address: str = option(
        "127.0.0.1",
        "`sync`: address the metrics port (--metrics-port) listens on.",
        commands=(SYNC,),
    )
    # -- logging -----------------------------------------------------------------------
    log_level: str = option(
        "info",
        "Log level.",
        commands=_LOGGING,
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
    )
    log_format: str = option(
        "text",
        "Log lines as text, or as one JSON object each.",
        commands=_LOGGING,
        type=click.Choice(["text", "json"]),
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
        self._check_kind_ranges()
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
        for name, values in (("--upstream", self.upstream), ("--notify", self.notify)):
            for item in split_list(values):
                try:
                    UpstreamServer.parse(item)
                except ConfigError as error:
                    raise click.BadParameter(str(error), param_hint=name) from None
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

    def _check_kind_ranges(self) -> None:
        """The ranges of MeshServices and their kin are IPv4 networks, none overlapping
        another (each VIP must tell which kind of resource it belongs to)."""
        ranges: list[tuple[str, IPv4Network]] = []
        for name in (
            "mesh_service_cidr",
            "mesh_external_service_cidr",
            "mesh_multizone_service_cidr",
        ):
            hint = "--" + name.replace("_", "-")
            try:
                network = IPv4Network(getattr(self, name))
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint=hint) from None
            for other_hint, other in ranges:
                if network.overlaps(other):
                    raise click.BadParameter(
                        f"{network} overlaps {other_hint} {other}", param_hint=hint
                    )
            ranges.append((hint, network))

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Settings:
        """The settings given as options (by field name); the others keep their defaults."""
        # An option not given comes as None, a repeatable one as (): the default applies.
        return cls(
            **{
                key: value
                for key, value in options.items()
                if key in SETTINGS_FIELDS and value is not None and value != ()
            }
        )


SETTINGS_FIELDS = {spec.name: spec for spec in fields(Settings)}
