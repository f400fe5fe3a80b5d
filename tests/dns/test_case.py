"""Names match case-insensitively; the question and answer owners keep the client's case."""

from __future__ import annotations

import pytest

from tests.dns.dnstesting import OUTSIDER, ask, owners, query, rcode, rdatas


@pytest.mark.parametrize(
    ("name", "rdtype", "answer"),
    [
        ("WEB.MESH.", "A", ["240.0.0.2"]),
        ("wEb.MeSh.", "AAAA", ["fd00::2"]),
        ("Backend.Kuma-Demo.SVC.8080.Mesh.", "A", ["240.0.0.3"]),
        ("BACKEND.Endpoints.mesh.", "A", ["10.0.0.1", "10.0.0.3"]),
        ("MESH.", "NS", ["ns.mesh."]),
    ],
)
def test_answer_owner_is_the_name_as_asked(handler, name, rdtype, answer):
    reply = ask(handler, name, rdtype)
    assert sorted(rdatas(reply.answer)) == answer  # endpoint sets come rotated
    assert set(owners(reply.answer)) == {name}
    assert reply.question[0].name.to_text() == name


@pytest.mark.parametrize("name", ["NoPe.MeSh.", "WeB.MeSh.", "EXAMPLE.COM."])
def test_question_is_echoed_byte_for_byte(handler, name):
    data = query(name, "TXT")
    reply = handler.handle(data, OUTSIDER)
    assert reply is not None
    question_end = data.index(b"\x00", 12) + 5  # name, then type and class
    assert reply[12:question_end] == data[12:question_end]


def test_negative_answers_match_any_case(handler):
    assert rcode(ask(handler, "NOPE.MESH.")) == "NXDOMAIN"
    assert rcode(ask(handler, "ENDPOINTS.MESH.")) == "NOERROR"
