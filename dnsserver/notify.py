"""NOTIFY (RFC 1996): tell secondaries the zone changed, so they transfer it at once.

Changes are coalesced: whatever happened while a round of NOTIFYs was out, the next
round carries the newest SOA. Each target gets its NOTIFY until it answers, at most
a few times; a target that never answers still refreshes at the SOA's refresh time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any, cast

from dnsserver import codec
from dnsserver.forward import UpstreamServer
from dnsserver.records import Name, Soa

logger = logging.getLogger("meshdns.dns")

NOTIFY_TRIES = 5
NOTIFY_TIMEOUT = 1.0


class Notifier:
    """Sends NOTIFY for ``origin`` to ``targets`` after every :meth:`changed`."""

    def __init__(self, origin: Name, targets: list[UpstreamServer], soa: Callable[[], Soa]) -> None:
        self._origin = origin
        self._targets = targets
        self._soa = soa
        self._changed = asyncio.Event()
        # Rounds sent and answered, per target, for tests and logs.
        self.answered: dict[str, int] = {str(target): 0 for target in targets}

    def changed(self) -> None:
        """The zone has a new SOA serial: notify (soon, once per burst of changes)."""
        self._changed.set()

    async def run(self) -> None:
        """Notify on every change until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            soa = self._soa()
            await asyncio.gather(*(self._notify(target, soa) for target in self._targets))

    async def _notify(self, target: UpstreamServer, soa: Soa) -> None:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()
        message_id = random.randrange(0x10000)
        message = codec.encode_notify(message_id, self._origin, soa)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _NotifyProtocol(message_id, answered),
            remote_addr=(str(target.address), target.port),
        )
        try:
            for _ in range(NOTIFY_TRIES):
                cast(asyncio.DatagramTransport, transport).sendto(message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(answered), NOTIFY_TIMEOUT)
                    self.answered[str(target)] += 1
                    logger.debug("%s took NOTIFY for serial %d", target, soa.serial)
                    return
            logger.warning("%s did not answer NOTIFY for serial %d", target, soa.serial)
        finally:
            transport.close()


class _NotifyProtocol(asyncio.DatagramProtocol):
    def __init__(self, message_id: int, answered: asyncio.Future[None]) -> None:
        self._id = message_id
        self._answered = answered

    def datagram_received(self, data: bytes, addr: Any) -> None:
        header = codec.parse_header(data)
        if header is not None and header.qr and header.id == self._id:
            if not self._answered.done():
                self._answered.set_result(None)

    def error_received(self, exc: Exception) -> None:
        logger.debug("NOTIFY: %s", exc)
