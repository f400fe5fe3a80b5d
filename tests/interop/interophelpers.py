"""What the interop tests share: a DNS server in a thread, and real clients' output read back."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from dataclasses import dataclass

from dnsserver import DnsServer, Handler
from dnsserver.forward import Forwarder, UpstreamServer
from tests.dns.dnstesting import dns_server
from tests.dns.stubupstream import StubUpstream
from tests.helpers import require_tool

CLIENT_OPTIONS = {"dig": ["+tries=1", "+time=5"], "kdig": ["+retry=0", "+timeout=5"]}


@dataclass
class Reply:
    status: str
    flags: set[str]
    sections: dict[str, list[list[str]]]

    def data(self, section: str = "ANSWER") -> list[str]:
        return sorted(" ".join(record[4:]) for record in self.sections[section])


class ServerThread:
    """A DnsServer on a free port, on its own event loop in a background thread."""

    def __init__(self, handler: Handler, forwarder: Forwarder | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.forwarder = forwarder
        self.server = dns_server(handler, forwarder=forwarder)
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


def run(client: str, server: DnsServer, name: str, rdtype: str, *options: str) -> Reply:
    command = [require_tool(client), f"@{server.host}", "-p", str(server.port), name, rdtype]
    command += [*CLIENT_OPTIONS[client], *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return read_output(done.stdout)


def read_output(output: str) -> Reply:
    """Read dig's or kdig's output; they differ in punctuation, not in substance."""
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; flags: ([a-z ]*);", output, re.IGNORECASE)
    assert status and flags, output
    sections: dict[str, list[list[str]]] = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    current = None
    for line in output.splitlines():
        heading = re.match(r";; (\w+) SECTION:", line)
        if heading:
            current = heading.group(1)
        elif not line.strip():
            current = None
        elif current in sections and not line.startswith(";"):
            sections[current].append(line.split())
    return Reply(status.group(1), set(flags.group(1).split()), sections)
