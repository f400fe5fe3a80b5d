"""Servers the interop tests run meshdns's DNS server in."""

from __future__ import annotations

import asyncio
import threading

from dnsserver import DnsServer, Handler
from dnsserver.forward import Forwarder, UpstreamServer
from tests.dns.stubupstream import StubUpstream


class ServerThread:
    """A DnsServer on a free port, on its own event loop in a background thread."""

    def __init__(self, handler: Handler, forwarder: Forwarder | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.forwarder = forwarder
        self.server = DnsServer(handler, port=0, forwarder=forwarder)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DnsServer:
        self.thread.start()
        try:
            self._run(self.server.start())
        except BaseException:
            self._stop_loop()
            raise
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._run(self.server.close())
            if self.forwarder is not None:
                self._run(self.forwarder.close())
        finally:
            self._stop_loop()

    def _run(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def forwarder_for(upstream: StubUpstream) -> Forwarder:
    return Forwarder([UpstreamServer.parse(upstream.address)])
