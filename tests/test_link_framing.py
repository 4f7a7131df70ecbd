"""Several envelopes in one link POST: the framing, its refusals and the answer that
says what became of each envelope (gateway.messages.framing)."""

from __future__ import annotations

import json

import pytest

from gateway.errors import PaygateError
from gateway.messages import framing

ONE, TWO, THREE = b"{H:first", b"{H:second envelope", b"{H:3"


def test_one_envelope_goes_unframed() -> None:
    """A POST of one envelope is its bytes and no header, as a single-envelope peer
    sends it."""
    assert framing.frame([ONE]) == (ONE, {})


def test_several_envelopes_split_back_in_order() -> None:
    """The lengths header lists each envelope's bytes; splitting gives them back."""
    body, headers = framing.frame([ONE, TWO, THREE])

    assert headers == {framing.LENGTHS_HEADER: f"{len(ONE)},{len(TWO)},{len(THREE)}"}
    assert body == ONE + TWO + THREE
    assert framing.split(body, headers[framing.LENGTHS_HEADER]) == [ONE, TWO, THREE]


def test_lengths_with_spaces_are_read() -> None:
    """Spaces around a length (as a hand-written header has them) do not matter."""
    assert framing.split(ONE + TWO, f" {len(ONE)} , {len(TWO)}") == [ONE, TWO]


BODY = ONE + TWO  # 8 + 18 bytes
MALFORMED = [
    # (header, body, [(code, path, value)])
    ("", BODY, [("envelope_length_invalid", "Envelope-Lengths/0", "")]),
    ("8,x", BODY, [("envelope_length_invalid", "Envelope-Lengths/1", "x")]),
    ("0,26", BODY, [("envelope_length_invalid", "Envelope-Lengths/0", "0")]),
    ("-8,26", BODY, [("envelope_length_invalid", "Envelope-Lengths/0", "-8")]),
    ("8,,18", BODY, [("envelope_length_invalid", "Envelope-Lengths/1", "")]),
    ("８,18", BODY, [("envelope_length_invalid", "Envelope-Lengths/0", "８")]),
    ("a,b", BODY, [("envelope_length_invalid", "Envelope-Lengths/0", "a"),
                   ("envelope_length_invalid", "Envelope-Lengths/1", "b")]),
    (f"8,{framing.BATCH_LEN_MAX + 1}", BODY,
     [("envelope_length_invalid", "Envelope-Lengths/1", str(framing.BATCH_LEN_MAX + 1))]),
    # More digits than Python reads as an int (4,300): out of range, never read.
    ("8," + "1" * 5_000, BODY, [("envelope_length_invalid", "Envelope-Lengths/1", "1" * 40)]),
    ("8,19", BODY, [("envelope_lengths_exceed_body", "Envelope-Lengths/1", 19)]),
    ("30,1", BODY, [("envelope_lengths_exceed_body", "Envelope-Lengths/0", 30)]),
    ("8,10", BODY, [("envelope_lengths_short_of_body", "Envelope-Lengths", 26)]),
    (",".join(["1"] * (framing.ENVELOPES_MAX + 1)), b"x" * (framing.ENVELOPES_MAX + 1),
     [("envelope_lengths_too_many", "Envelope-Lengths", framing.ENVELOPES_MAX + 1)]),
]


@pytest.mark.parametrize("header, body, expected", MALFORMED)
def test_malformed_framing_is_refused_naming_the_envelope(header, body, expected) -> None:
    """A lengths header that cannot be read, or lengths that do not cover the body
    exactly, refuse the whole POST (400) with every problem: which envelope, what it
    said and what was expected."""
    with pytest.raises(PaygateError) as caught:
        framing.split(body, header)

    assert caught.value.status == 400
    assert [(p.code, p.path, p.value) for p in caught.value.problems] == expected
    assert all(p.expected for p in caught.value.problems)


def test_a_length_past_the_body_says_how_much_was_left() -> None:
    """The refusal of a length running past the body says what the body still held."""
    with pytest.raises(PaygateError) as caught:
        framing.split(BODY, "8,19")

    problem = caught.value.problems[0]
    assert "at most 18 bytes" in problem.expected
    assert "envelope 1" in problem.message


def test_all_taken_is_a_plain_200() -> None:
    """Every envelope taken: 200 and how many."""
    assert framing.answer([(200, {}), (200, {"duplicate": True})]) == (200, {"taken": 2})


def test_a_partial_take_lists_every_envelope() -> None:
    """Not all taken: 207 with each envelope's index, status and details in order."""
    errors = {"errors": [{"code": "signature_invalid"}]}

    status, body = framing.answer([(200, {}), (401, errors), (500, {})])

    assert status == framing.MULTI_STATUS
    assert body == {"results": [{"index": 0, "status": 200},
                                {"index": 1, "status": 401, **errors},
                                {"index": 2, "status": 500}]}


def test_the_sender_reads_each_envelopes_status() -> None:
    """A 207 gives each envelope its own status; any other status is every envelope's."""
    _, body = framing.answer([(200, {}), (401, {}), (503, {})])

    assert framing.statuses(207, json.dumps(body).encode(), 3) == [200, 401, 503]
    assert framing.statuses(200, b'{"taken": 3}', 3) == [200, 200, 200]
    assert framing.statuses(503, b"not taken", 2) == [503, 503]
    assert framing.statuses(207, b"", 1) == [207]  # one envelope is answered alone


UNREADABLE = [
    b"not json",
    b"[]",
    b'{"taken": 2}',
    b'{"results": [{"status": 200}]}',
    b'{"results": [{"status": 200}, {"status": "200"}]}',
    b'{"results": [{"status": 200}, {"status": 99}]}',
    b'{"results": [{"status": 200}, {}]}',
    b'{"results": [200, 200]}',
    b'{"results": [{"status": true}, {"status": 200}]}',
]


@pytest.mark.parametrize("body", UNREADABLE)
def test_an_unreadable_multi_status_is_said_so(body: bytes) -> None:
    """A 207 without one readable status per envelope cannot say which were taken:
    AnswerUnreadable, and the sender sends them all again."""
    with pytest.raises(framing.AnswerUnreadable):
        framing.statuses(207, body, 2)
