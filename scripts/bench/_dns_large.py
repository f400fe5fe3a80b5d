"""A DNS server over a large registry snapshot, for scripts/bench/dns.

Loading 100,000 dataplanes through the store takes many minutes on this machine (the
scale benchmark measures that); what this measures is answering from a zone of that
size. So the snapshot the follower would publish is built here directly, and served by
the same Handler and DnsServer that `meshdns serve` runs, under uvloop.

    python _dns_large.py DATAPLANES SERVICES   # prints the port, serves until SIGTERM
"""

from __future__ import annotations

import asyncio
import signal
import sys
from ipaddress import IPv4Address
from types import MappingProxyType

import uvloop

from dnsserver import Handler
from meshdns.settings import Settings
from meshdns.wiring import build_dns_server, zone_config
from registry.snapshot import Endpoint, MeshView, ServiceView, Snapshot

FIRST_ENDPOINT = IPv4Address("10.0.0.1")
FIRST_VIP = IPv4Address("240.0.0.1")


def snapshot(dataplanes: int, services: int) -> Snapshot:
    members: list[list[Endpoint]] = [[] for _ in range(services)]
    for number in range(dataplanes):
        address = FIRST_ENDPOINT + number
        members[number % services].append(Endpoint(f"dp-{number}", address, 8080))
    views = {
        f"svc-{index}": ServiceView(f"svc-{index}", FIRST_VIP + index, None, tuple(endpoints))
        for index, endpoints in enumerate(members)
    }
    mesh = MeshView("default", services=MappingProxyType(views))
    return Snapshot(revision=1, meshes=MappingProxyType({"default": mesh}))


async def serve(dataplanes: int, services: int) -> None:
    # dnsperf asks from one address: no rate limit, as `scripts/bench/dns` runs `serve`.
    settings = Settings(allow_recursion=("none",), rate_limit=0)
    handler = Handler(zone_config(settings), snapshot(dataplanes, services))
    async with build_dns_server(settings, handler, None, port=0) as server:
        print(server.port, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
