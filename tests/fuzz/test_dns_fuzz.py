"""Fuzzing the DNS message handler with hypothesis: random bytes, and well-formed queries
mutated (bit flips, truncation, lying counts, compression loops, long labels, bogus OPT
records, odd opcodes, classes and types), over UDP and TCP, from every kind of client.

Every reply must be what :func:`tests.fuzz.dnsfuzz.judge` says: nothing escapes the
handler, a message is dropped only when it has no header or is a response, and every
reply parses with dnspython, has QR, the query's id and opcode, and fits its transport.
The handler answers normally afterwards, and each test checks what the handler made of
its packets (the tally of outcomes and rcodes), so that a strategy that stopped reaching
past the header checks fails instead of passing on nothing.

The examples are sized for CI, and derandomized: every run judges the same packets, so the
tally's assertions hold run after run. The search for new packets is scripts/fuzz-dns's,
which runs the same oracle over 100,000 seeded random packets and more.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.dnsfuzz import (
    CLIENTS,
    NAMES,
    PEERS,
    RECORDS,
    SEEDS,
    WORDS,
    Tally,
    append_record,
    ask,
    delete,
    flip,
    fuzz_handler,
    insert,
    judge,
    opt_record,
    option,
    overwrite,
    set_count,
    set_flags,
    set_name,
    set_question_word,
    still_healthy,
    truncate,
)

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

words = st.sampled_from(WORDS) | st.integers(0, 0xFFFF)
positions = st.integers(0, 700)
labels = st.lists(st.binary(max_size=70), max_size=6)
names = st.builds(
    lambda parts, tail: b"".join(bytes([len(part) & 0xFF]) + part for part in parts) + tail,
    labels,
    st.sampled_from([b"\x00", b"\xc0\x0c", b"\xc0\x0e", b""]),
)
options = st.lists(
    st.builds(
        option, st.sampled_from([3, 8, 10, 11, 12, 15, 65001]) | words, st.binary(max_size=48)
    ),
    max_size=3,
).map(b"".join)
opt_records = st.builds(
    opt_record,
    payload=words,
    ext_rcode=st.integers(0, 255),
    version=st.sampled_from([0, 0, 0, 1, 255]),
    flags=words,
    rdata=options,
)
sections = st.sampled_from([0, 1, 2, 3, 3, 3, None])
mutations = st.one_of(
    st.tuples(st.just(flip), positions, st.integers(0, 7)),
    st.tuples(st.just(truncate), positions),
    st.tuples(st.just(overwrite), positions, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just(insert), positions, st.binary(min_size=1, max_size=32)),
    st.tuples(st.just(delete), positions, st.integers(1, 16)),
    st.tuples(st.just(set_count), st.integers(0, 3), words),
    st.tuples(st.just(set_flags), words),
    st.tuples(st.just(set_name), st.sampled_from(NAMES) | names),
    st.tuples(st.just(set_question_word), st.integers(0, 1), words),
    st.tuples(st.just(append_record), st.sampled_from(RECORDS) | opt_records, sections),
    st.tuples(st.just(insert), positions, st.sampled_from(RECORDS)),
)


def mutated(seed: bytes, steps: list[tuple]) -> bytes:
    for function, *arguments in steps:
        seed = function(seed, *arguments)
    return seed


queries = st.builds(mutated, st.sampled_from(SEEDS), st.lists(mutations, max_size=4))
# Messages built from parts: any header, a name, any type and class, hostile records.
built = st.builds(
    lambda header, name, qtype, qclass, records: (
        header + name + struct.pack("!HH", qtype, qclass) + b"".join(records)
    ),
    st.binary(min_size=12, max_size=12),
    st.sampled_from(NAMES) | names,
    words,
    words,
    st.lists(st.sampled_from(RECORDS) | opt_records, max_size=3),
)
clients = st.sampled_from(CLIENTS + PEERS)


def fuzz_handler_with(packets: st.SearchStrategy[bytes], examples: int) -> Tally:
    """Run ``packets`` through one handler, each asked twice (the second time from the
    answer cache when it kept the first), and check it answers normally afterwards."""
    handler = fuzz_handler()
    tally = Tally()

    @settings(FUZZ, max_examples=examples)
    @given(data=packets, client=clients, tcp=st.booleans())
    def fuzz(data: bytes, client: object, tcp: bool) -> None:
        for _ in range(2):
            judge(handler, data, ask(handler, data, client, tcp=tcp), tcp=tcp, tally=tally)

    fuzz()
    still_healthy(handler)
    return tally


def test_random_bytes():
    tally = fuzz_handler_with(st.binary(max_size=700), 400)
    # Most random bytes are no query; those with a header are answered, not dropped.
    assert {"dropped", "answered"} <= set(tally.outcomes)
    assert tally.outcomes["dropped"] > tally.outcomes["answered"] > 0
    assert "NOTIMP" in tally.rcodes  # random opcodes


def test_mutated_queries():
    tally = fuzz_handler_with(queries, 1000)
    # The mutations reach every outcome, and past the header checks.
    assert {"dropped", "answered", "forwarded", "transfer"} <= set(tally.outcomes)
    assert {"NOERROR", "NXDOMAIN", "FORMERR", "REFUSED", "NOTIMP"} <= set(tally.rcodes)


def test_messages_built_from_hostile_parts():
    tally = fuzz_handler_with(built, 400)
    # Any header (responses among them, dropped), then hostile names and records: the
    # queries are answered, and the malformed ones refused as such.
    assert {"dropped", "answered"} <= set(tally.outcomes)
    assert tally.outcomes["answered"] > 0.2 * sum(tally.outcomes.values())
    assert {"FORMERR", "NOTIMP"} <= set(tally.rcodes)
