"""The authoritative DNS server for the mesh zones: wire codec, lookups and UDP/TCP transport.

The zones are ``--domain``'s (the legacy names) and those MeshServices' hostnames fall
under (``svc.mesh.local``...). Reads the registry only through its immutable
:class:`registry.snapshot.Snapshot`; never opens a database.
"""

from dnsserver.config import ZoneConfig
from dnsserver.errors import BindError, ConfigError, DnsError, FormError
from dnsserver.handler import Handler
from dnsserver.server import DnsServer

__all__ = [
    "BindError",
    "ConfigError",
    "DnsError",
    "DnsServer",
    "FormError",
    "Handler",
    "ZoneConfig",
]
