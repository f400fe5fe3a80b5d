"""The answer `dig` would get for a service, from the DNS server's own tables."""

from __future__ import annotations

from collections.abc import Callable

from dnsserver.handler import Handler
from dnsserver.lookup import lookup
from dnsserver.records import RecordType, name_from_text
from dnsserver.zonefile import render

# (mesh, service, query type such as "A") -> the answer section as dig prints it, one
# record a line ("backend.mesh.\t30\tIN\tA\t240.0.0.1"); empty for NODATA or NXDOMAIN.
DnsAnswer = Callable[[str, str, str], list[str]]


def handler_answers(handler: Handler) -> DnsAnswer:
    """Answers from ``handler``'s current tables, as a client of the mesh gets them.

    The mesh's own tables: a service only another zone offers is answered per client
    (mTLS and TrafficPermissions decide who sees it), so it has no one answer to show.
    """

    def answer(mesh: str, service: str, qtype: str) -> list[str]:
        zones = handler.zones
        zone = zones.zone_of(zones.meshes.get(mesh, zones.empty))
        name = name_from_text(f"{service}.{handler.config.domain}")
        found = lookup(zone, name, RecordType[qtype])
        if not found.answer:
            return []
        # The first line is the $ORIGIN directive; the records follow, names absolute.
        return render(list(found.answer), zone.origin).splitlines()[1:]

    return answer
