"""How the suite shares the pytest-xdist workers: the long tests start first, and the tests
marked ``serial`` run last, each alone.

Order: xdist hands out tests in the order collected, as workers ask for more; so the
modules built around a long wait (an outage of 30 or 60 s, a sync killed again and
again) come first, then the other modules of real processes, then the in-process ones,
and the modules with a ``serial`` test last, where the other worker is only finishing
short tests. Modules move whole, so their module-scoped fixtures are set up once.

Alone: a few tests measure what the machine does under their own load (floods held to a
rate, idle timeouts of a fraction of a second), so another test running beside them
would change the result. Every test holds a lock shared by the workers of one run: a
plain test holds it shared, a ``serial`` one holds it alone. A turnstile in front of
the lock lets a waiting ``serial`` test in before plain tests that come after it, so it
is never starved. The lock files are in the run's own base tmp dir (each worker's is a
folder of it), so two runs on one machine do not wait for each other. Without xdist
there is one process and no lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

MARKER = "serial"
# Modules built around a long wait: started first, so that they do not end the run alone.
LONG_FIRST = (
    "tests/agent/test_outage.py",  # the control plane down for 60 s
    "tests/live/test_outage.py",  # Postgres down for 30 s
    "tests/multizone/test_convergence.py",  # a sync worker killed 6 times mid-sync
)
REAL_PROCESSES = ("integration", "interop")  # the markers of tests that start programs
# Tests of folders whose files mark nothing of this kind, that measure timing on a real
# server under their own load (rate limits, idle timeouts of a fraction of a second).
SERIAL_ELSEWHERE = {
    "tests/dns/test_rate_limit.py": {
        "test_a_flood_is_limited_slips_tc_and_the_client_gets_its_answer_over_tcp",
        "test_dig_limited_over_udp_retries_over_tcp_and_gets_the_answer",
        "test_rate_zero_limits_nothing",
        "test_a_connection_that_keeps_asking_is_not_idle",
    },
}


class RunAlone:
    """The lock of one run: ``hold(alone=True)`` for a serial test, else shared."""

    def __init__(self, directory: Path) -> None:
        self.gate: IO[str] = (directory / "run-alone.gate").open("a")
        self.room: IO[str] = (directory / "run-alone.room").open("a")

    @contextmanager
    def hold(self, *, alone: bool) -> Iterator[None]:
        # Everyone passes the gate to enter the room; a serial test keeps the gate shut
        # behind it until the tests already in the room have left and it has run.
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        entered = False
        try:
            fcntl.flock(self.room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            entered = True
        finally:
            if not (alone and entered):
                fcntl.flock(self.gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.room, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(self.gate, fcntl.LOCK_UN)

    def close(self) -> None:
        self.gate.close()
        self.room.close()


RUN_ALONE = pytest.StashKey[RunAlone]()


def pytest_configure(config: pytest.Config) -> None:
    # An xdist worker (other workers run beside it): its base tmp dir is its own folder
    # in the run's base tmp dir.
    if hasattr(config, "workerinput") and config.option.basetemp:
        config.stash[RUN_ALONE] = RunAlone(Path(config.option.basetemp).parent)


def pytest_unconfigure(config: pytest.Config) -> None:
    if RUN_ALONE in config.stash:
        config.stash[RUN_ALONE].close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = SERIAL_ELSEWHERE.get(module_of(item), set())
        if getattr(item, "originalname", item.name) in names:
            item.add_marker(MARKER)
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(module_of(item), []).append(item)
    rank = {module: place(module, tests) for module, tests in modules.items()}
    items.sort(key=lambda item: rank[module_of(item)])  # stable: a module keeps its order


def module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def place(module: str, tests: list[pytest.Item]) -> int:
    """Where a module goes: long waits, real processes, in process, with serial tests."""
    if any(test.get_closest_marker(MARKER) for test in tests):
        return 3
    if module in LONG_FIRST:
        return 0
    if any(test.get_closest_marker(name) for test in tests for name in REAL_PROCESSES):
        return 1
    return 2


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Run ``item`` holding the run's lock: alone when it is marked serial."""
    if RUN_ALONE not in item.config.stash:
        return (yield)
    alone = item.get_closest_marker(MARKER) is not None
    with item.config.stash[RUN_ALONE].hold(alone=alone):
        return (yield)
