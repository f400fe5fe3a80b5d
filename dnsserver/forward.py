"""Forwarding names outside the zone to upstream resolvers, with aiodns (c-ares).

The handler stays pure: for a question it may not answer itself it returns a
:class:`Forward`; the transport awaits :meth:`Forwarder.resolve` for it (other
queries go on meanwhile) and hands the :class:`Upstream` answer back to the
handler, which builds the reply as it builds every other one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import aiodns
import aiodns.error
import pycares

from dnsserver.codec import Query, Rcode
from dnsserver.errors import ConfigError
from dnsserver.records import (
    Cname,
    Mx,
    Name,
    Ns,
    Ptr,
    Question,
    Record,
    RecordData,
    RecordType,
    Soa,
    Srv,
    Txt,
    name_from_text,
)

logger = logging.getLogger("meshdns.dns")

DNS_PORT = 53
# The whole time a client waits for an upstream before it gets SERVFAIL.
FORWARD_TIMEOUT = 2.0
# Forwarded questions in flight at once; past this, SERVFAIL at once rather than
# holding memory for a flood.
MAX_PENDING = 1024
# The question types forwarded: those whose records we can write back.
FORWARDED_TYPES = frozenset(
    {
        RecordType.A,
        RecordType.AAAA,
        RecordType.CNAME,
        RecordType.MX,
        RecordType.NS,
        RecordType.PTR,
        RecordType.SOA,
        RecordType.SRV,
        RecordType.TXT,
        RecordType.ANY,
    }
)
_ERROR_RCODES = {
    aiodns.error.ARES_ENODATA: Rcode.NOERROR,
    aiodns.error.ARES_ENOTFOUND: Rcode.NXDOMAIN,
    aiodns.error.ARES_EREFUSED: Rcode.REFUSED,
    aiodns.error.ARES_ENOTIMP: Rcode.NOTIMP,
}


@dataclass(frozen=True, slots=True)
class Forward:
    """A query the transport must ask upstream before the handler can reply to it."""

    query: Query
    tcp: bool

    @property
    def question(self) -> Question:
        return self.query.question


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the upstream resolvers answered: an rcode and the records of each section."""

    rcode: int
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """An upstream resolver's address and port."""

    address: IPv4Address | IPv6Address
    port: int = DNS_PORT

    @classmethod
    def parse(cls, text: str) -> UpstreamServer:
        """``ADDR``, ``ADDR:PORT``, ``[IPV6]:PORT``; raise :class:`ConfigError` otherwise."""
        host, port = text.strip(), str(DNS_PORT)
        if host.startswith("["):
            host, _, rest = host[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"upstream {text!r}: expected [ADDRESS]:PORT")
                port = rest[1:]
        elif host.count(":") == 1:
            host, port = host.split(":")
        try:
            address = ip_address(host)
            number = int(port)
        except ValueError:
            raise ConfigError(
                f"upstream {text!r} is not ADDRESS[:PORT] (e.g. 10.0.0.2, 10.0.0.2:5353, [::1]:53)"
            ) from None
        if not 0 < number < 65536:
            raise ConfigError(f"upstream {text!r}: port {number} is not between 1 and 65535")
        return cls(address, number)

    def __str__(self) -> str:
        if isinstance(self.address, IPv6Address):
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def system_upstreams(path: Path = Path("/etc/resolv.conf")) -> list[UpstreamServer]:
    """The ``nameserver`` lines of resolv.conf (empty when it cannot be read)."""
    try:
        text = path.read_text()
    except OSError as error:
        logger.warning("cannot read %s for upstream resolvers: %s", path, error)
        return []
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(UpstreamServer(ip_address(fields[1].split("%", 1)[0])))
            except ValueError:
                logger.warning("%s: ignoring nameserver %r", path, fields[1])
    return servers


class Forwarder:
    """Asks upstream resolvers what the handler may not answer itself."""

    def __init__(
        self,
        servers: Sequence[UpstreamServer],
        *,
        timeout: float = FORWARD_TIMEOUT,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if not servers:
            raise ConfigError("forwarding needs at least one upstream resolver")
        self.servers = tuple(servers)
        self._timeout = timeout
        self._max_pending = max_pending
        self._pending = 0
        self._resolver: aiodns.DNSResolver | None = None

    async def resolve(self, question: Question) -> Upstream:
        """The upstreams' answer to ``question``; SERVFAIL when they fail or time out."""
        if question.qtype not in FORWARDED_TYPES:
            return Upstream(Rcode.NOTIMP)
        if self._pending >= self._max_pending:
            logger.warning("SERVFAIL: %d forwarded questions already in flight", self._pending)
            return Upstream(Rcode.SERVFAIL)
        self._pending += 1
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._channel().query_dns(
                    _name_text(question.name), RecordType(question.qtype).name
                )
        except TimeoutError:
            logger.info("SERVFAIL: no upstream answered %s in time", _name_text(question.name))
            return Upstream(Rcode.SERVFAIL)
        except aiodns.error.DNSError as error:
            code = error.args[0] if error.args else None
            return Upstream(_ERROR_RCODES.get(code, Rcode.SERVFAIL))
        finally:
            self._pending -= 1
        return Upstream(
            Rcode.NOERROR,
            answer=_records(result.answer),
            authority=_records(result.authority),
            additional=_records(result.additional),
        )

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    def _channel(self) -> aiodns.DNSResolver:
        if self._resolver is None:
            # Made on first use, inside the running loop. c-ares tries each upstream
            # in turn; half the budget per try, two tries, stays within the timeout.
            self._resolver = aiodns.DNSResolver(
                nameservers=[str(server) for server in self.servers],
                timeout=self._timeout / 2,
                tries=2,
            )
        return self._resolver


def _name_text(name: Name) -> str:
    """A name as c-ares reads it: dots between labels, odd bytes escaped as \\DDD."""
    return ".".join(
        "".join(chr(b) if 0x21 <= b <= 0x7E and b not in b".\\" else f"\\{b:03d}" for b in label)
        for label in name
    )


def _records(records: Sequence[Any]) -> tuple[Record, ...]:
    """Our records for c-ares's; types we cannot write back are left out."""
    converted = []
    for record in records:
        if record.record_class != pycares.QUERY_CLASS_IN:
            continue
        try:
            data = _data(record.data)
            owner = name_from_text(record.name)
        except (ValueError, UnicodeEncodeError):
            data = None
        if data is not None:
            converted.append(Record(owner=owner, ttl=record.ttl, data=data))
    return tuple(converted)


def _data(data: Any) -> RecordData | None:
    if isinstance(data, pycares.ARecordData):
        return IPv4Address(data.addr)
    if isinstance(data, pycares.AAAARecordData):
        return IPv6Address(data.addr)
    if isinstance(data, pycares.CNAMERecordData):
        return Cname(name_from_text(data.cname))
    if isinstance(data, pycares.NSRecordData):
        return Ns(name_from_text(data.nsdname))
    if isinstance(data, pycares.PTRRecordData):
        return Ptr(name_from_text(data.dname))
    if isinstance(data, pycares.MXRecordData):
        return Mx(data.priority, name_from_text(data.exchange))
    if isinstance(data, pycares.SRVRecordData):
        return Srv(data.priority, data.weight, data.port, name_from_text(data.target))
    if isinstance(data, pycares.TXTRecordData):
        return Txt(_character_strings(data.data))
    if isinstance(data, pycares.SOARecordData):
        return Soa(
            name_from_text(data.mname),
            name_from_text(data.rname),
            data.serial,
            data.refresh,
            data.retry,
            data.expire,
            data.minimum,
        )
    return None


def _character_strings(data: bytes) -> tuple[bytes, ...]:
    # c-ares joins a TXT record's strings; split them back into at most 255 bytes each.
    return tuple(data[i : i + 255] for i in range(0, len(data), 255)) or (b"",)
