"""How followers of a registry wait before they try a lost database again."""

from __future__ import annotations

FIRST_DELAY = 0.1  # seconds
MAX_DELAY = 5.0  # seconds: a database back from an outage is noticed this soon at worst


class Backoff:
    """Delays between retries: doubling from FIRST_DELAY up to MAX_DELAY, and back to
    FIRST_DELAY once a try succeeds (:meth:`reset`)."""

    def __init__(self) -> None:
        self._delay = FIRST_DELAY

    def next(self) -> float:
        """The delay to wait before this retry; the next one waits twice as long."""
        delay = self._delay
        self._delay = min(delay * 2, MAX_DELAY)
        return delay

    def reset(self) -> None:
        self._delay = FIRST_DELAY
