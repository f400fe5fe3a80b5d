"""The mesh zone's name scheme: at which names a service answers.

Names here are relative to the zone apex and case-folded, ready to be zone keys.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from dnsserver.records import Name

# ns.<domain>: the name server named by the apex NS record.
NS_NAME: Name = (b"ns",)
# rname of the SOA: hostmaster.<domain> (RFC 2142).
HOSTMASTER_NAME: Name = (b"hostmaster",)
ENDPOINTS_LABEL = b"endpoints"
ADDR_LABEL = b"addr"
TCP_LABEL = b"_tcp"
# Reverse names are outside the zone; these are absolute.
_IPV4_REVERSE: Name = (b"in-addr", b"arpa")
_IPV6_REVERSE: Name = (b"ip6", b"arpa")
# Kuma writes Kubernetes-style service names with underscores for dots.
_ALIAS_SEPARATOR = "_"


def service_label(service: str) -> bytes | None:
    """The DNS label of a service name, or None when the name cannot be one."""
    if not service.isascii():
        return None
    label = service.lower().encode("ascii")
    # A dot would make the label unreachable by name, and control characters or
    # spaces are not something a client can type.
    if not 0 < len(label) <= 63 or any(byte <= 0x20 or byte in (0x2E, 0x7F) for byte in label):
        return None
    return label


def service_name(service: str) -> Name | None:
    """``<service>``: where the service's VIPs answer."""
    label = service_label(service)
    return None if label is None else (label,)


def endpoints_name(service: str) -> Name | None:
    """``<service>.endpoints``: where the service's endpoint addresses answer."""
    label = service_label(service)
    return None if label is None else (label, ENDPOINTS_LABEL)


def dotted_alias(service: str) -> Name | None:
    """Kuma's dotted alias: ``a_b_c_d`` also answers at ``a.b.c.d``.

    None when the service has no underscore or a part is not a valid label
    (e.g. ``a__b`` would need an empty label).
    """
    parts = service.split(_ALIAS_SEPARATOR)
    if len(parts) < 2:
        return None
    labels = [service_label(part) for part in parts]
    if any(label is None for label in labels):
        return None
    return tuple(label for label in labels if label is not None)


def srv_name(service: str) -> Name | None:
    """``_<service>._tcp``: where the service's SRV records answer (RFC 2782)."""
    label = service_label(service)
    if label is None or len(label) > 62:
        return None
    return (b"_" + label, TCP_LABEL)


def dotted_endpoints_alias(service: str) -> Name | None:
    """The dotted alias of the endpoints name: ``a.b.c.d.endpoints`` for ``a_b_c_d``."""
    alias = dotted_alias(service)
    return None if alias is None else (*alias, ENDPOINTS_LABEL)


def addr_name(address: IPv4Address | IPv6Address) -> Name:
    """``<hex>.addr``: the address as the hex of its packed form, as Consul writes it."""
    return (address.packed.hex().encode("ascii"), ADDR_LABEL)


def reverse_name(address: IPv4Address | IPv6Address) -> Name:
    """The absolute ``in-addr.arpa`` / ``ip6.arpa`` name of an address (RFC 1035, 3596)."""
    if isinstance(address, IPv4Address):
        return tuple(str(byte).encode("ascii") for byte in reversed(address.packed)) + (
            _IPV4_REVERSE
        )
    nibbles = address.packed.hex()
    return tuple(nibble.encode("ascii") for nibble in reversed(nibbles)) + _IPV6_REVERSE


_HEX_DIGITS = frozenset(b"0123456789abcdef")


def address_of_addr_name(name: Name) -> IPv4Address | IPv6Address | None:
    """The address an ``<hex>.addr`` name (relative, folded) encodes; None for any other."""
    if len(name) != 2 or name[1] != ADDR_LABEL:
        return None
    label = name[0]
    if len(label) not in (8, 32) or not _HEX_DIGITS.issuperset(label):
        return None
    packed = bytes.fromhex(label.decode("ascii"))
    return IPv4Address(packed) if len(packed) == 4 else IPv6Address(packed)


def address_of_reverse_name(name: Name) -> IPv4Address | IPv6Address | None:
    """The address a reverse name (absolute, folded) stands for; None for any other.

    Only the canonical spelling counts (decimal octets without leading zeros, one
    nibble a label), so each address has exactly one reverse name, as when built.
    """
    if name[-2:] == _IPV4_REVERSE and len(name) == 6:
        octets = name[3::-1]
        if not all(o.isdigit() and (o == b"0" or o[:1] != b"0") and int(o) < 256 for o in octets):
            return None
        return IPv4Address(bytes(int(octet) for octet in octets))
    if name[-2:] == _IPV6_REVERSE and len(name) == 34:
        nibbles = name[31::-1]
        if not all(len(n) == 1 and n[0] in _HEX_DIGITS for n in nibbles):
            return None
        return IPv6Address(bytes.fromhex(b"".join(nibbles).decode("ascii")))
    return None
