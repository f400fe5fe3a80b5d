"""The settings of the mesh zone that the DNS server answers."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from dnsserver.errors import ConfigError

# RFC 1035: every DNS server must accept 512-byte UDP messages; a UDP payload can
# never exceed 65535 bytes.
_MIN_UDP_PAYLOAD = 512
_MAX_UDP_PAYLOAD = 65535


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneConfig:
    """What the DNS server needs to know about its zone.

    No field that a setting of the server gives has a default here (the settings hold
    those); only protocol constants do.
    """

    domain: str
    default_mesh: str
    # TTL of VIP answers: VIPs are stable, so clients may cache them a while.
    ttl: int
    # Endpoints come and go; keep their TTL short.
    endpoints_ttl: int
    # The SOA minimum, i.e. how long resolvers cache NXDOMAIN and NODATA.
    negative_ttl: int
    # The address of ns.<domain> (the zone's NS target); None publishes no glue record.
    ns_address: IPv4Address | IPv6Address | None
    # This control plane's zone: endpoints of other zones are not local ones.
    local_zone: str | None
    # Who may have names outside the zone resolved through us (recursion): these
    # networks, plus every registered dataplane address when ``recursion_for_dataplanes``.
    allow_recursion: tuple[IPv4Network | IPv6Network, ...]
    recursion_for_dataplanes: bool
    # Addresses that resolvers forward whole hosts' queries from: a query from one of
    # them is never answered in the view of a dataplane registered there (the default
    # mesh answers it), so no dataplane can take over what a node's resolver is told.
    resolver_addresses: frozenset[IPv4Address | IPv6Address]
    # Who may transfer the zone (AXFR, IXFR answered in full); nobody when empty.
    allow_transfer: tuple[IPv4Network | IPv6Network, ...]
    # Answered to `id.server.` / `hostname.bind.` CH TXT (as NSD and BIND do), to tell
    # which process answered; None answers those REFUSED like any other class CH query.
    server_id: str | None = None
    # Our EDNS0 payload size; 1232 avoids IP fragmentation (DNS flag day 2020).
    max_udp_payload: int = 1232

    def __post_init__(self) -> None:
        labels = self.domain.strip(".").split(".")
        if (
            not self.domain.isascii()
            or not self.domain.strip(".")
            or any(not 0 < len(label) <= 63 for label in labels)
        ):
            raise ConfigError(f"domain {self.domain!r} is not a valid DNS name; use e.g. 'mesh'")
        for name in ("ttl", "endpoints_ttl", "negative_ttl"):
            value = getattr(self, name)
            if not 0 <= value <= 0x7FFFFFFF:
                raise ConfigError(f"{name}={value} must be between 0 and 2147483647 seconds")
        if not _MIN_UDP_PAYLOAD <= self.max_udp_payload <= _MAX_UDP_PAYLOAD:
            raise ConfigError(
                f"max_udp_payload={self.max_udp_payload} must be between "
                f"{_MIN_UDP_PAYLOAD} and {_MAX_UDP_PAYLOAD} bytes"
            )


@dataclass(frozen=True, slots=True)
class DnsLimits:
    """What one client may cost the DNS server.

    ``rate``: UDP replies a second to one client network (a token bucket with a burst of
    one second; 0 turns rate limiting off), the network being the client's address cut
    to ``ipv4_prefix`` or ``ipv6_prefix`` bits. Of the queries over it, every ``slip``-th
    gets an empty reply with TC set, so a real client asks again over TCP, which is not
    rate limited; the others get nothing (``slip`` 0: all get nothing).
    ``tcp_max_connections``: open TCP connections at most; one more closes the longest
    idle. ``tcp_idle_timeout``: seconds a TCP connection may take to send its next whole
    query (or to read our replies) before it is closed.
    """

    rate: int
    slip: int
    ipv4_prefix: int
    ipv6_prefix: int
    tcp_max_connections: int
    tcp_idle_timeout: float

    def __post_init__(self) -> None:
        for name, low, high in (
            ("rate", 0, None),
            ("slip", 0, None),
            ("ipv4_prefix", 0, 32),
            ("ipv6_prefix", 0, 128),
            ("tcp_max_connections", 1, None),
        ):
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise ConfigError(f"{name}={value} must be {bound}")
        if not self.tcp_idle_timeout > 0:
            raise ConfigError(
                f"tcp_idle_timeout={self.tcp_idle_timeout} must be more than 0 seconds"
            )
