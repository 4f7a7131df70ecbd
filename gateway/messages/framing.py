"""Several envelopes in one POST on the link, and the answer that says what became of each.

A POST to a link inbound URL (CONTRACT.md §4) carries either one envelope, its body the
envelope's bytes and no framing header, exactly as a single-envelope peer sends it; or
several: their bytes one after the other, with the request header `Envelope-Lengths`
listing each one's length in bytes in body order (`Envelope-Lengths: 1826,1790,2204`).
Splitting such a body is one slice per envelope, with nothing scanned. A multipart body
was measured against it and not chosen: a POST of 32 envelopes of 1.9 KB over loopback
cost about 0.35 ms of CPU (client and server together) framed this way and about 1.8 ms
as multipart/mixed with aiohttp's writer and reader, which search every byte for the
boundary and parse each part's headers; envelopes need no part headers.

The answer to a POST of several envelopes:

- 200 `{"taken": n}`: every envelope was taken;
- 207 `{"results": [{"index": 0, "status": 200}, {"index": 1, "status": 401, "errors":
  [...]}, ...]}`: one result per envelope, in body order, each status meaning for its
  envelope what it would mean as the answer to a POST of that envelope alone (2xx taken,
  4xx refused, 5xx not taken now: send it again);
- any other status: the same for every envelope (a 503 from a peer that takes nothing
  now; a 400 when the framing cannot be read, in which case nothing was taken).

A sender that cannot read a 207 (not JSON, not one result per envelope) cannot know
which envelopes were taken, so it sends all of them again; the receiver recognises
every envelope it took as a repeat by its message id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.digits import whole_number
from gateway.errors import PaygateError, Problem
from gateway.messages.envelope import ENVELOPE_LEN_MAX

LENGTHS_HEADER = "Envelope-Lengths"
# Envelopes one POST may carry, as the receiver takes them; a sender's `link_batch_max`
# stays at or below it. A thousand 990s are about 2 MB and one transaction's work.
ENVELOPES_MAX = 1024
# Bytes of envelopes in one framed POST, as the receiver takes them: one envelope's
# bound (a 1,000-transaction BEPS package is about 2 MiB), so that a batch never needs a
# larger request bound than a single envelope does.
BATCH_LEN_MAX = ENVELOPE_LEN_MAX
MULTI_STATUS = 207


def frame(envelopes: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """The body and the framing header of one POST carrying these envelopes; one
    envelope goes unframed, as a single-envelope peer sends it."""
    assert envelopes, "a POST carries at least one envelope"
    if len(envelopes) == 1:
        return envelopes[0], {}
    lengths = ",".join(str(len(e)) for e in envelopes)
    return b"".join(envelopes), {LENGTHS_HEADER: lengths}


def split(body: bytes, lengths: str) -> list[bytes]:
    """The envelopes of a framed body, in order. Refused (400) with every problem found
    when the header is not a list of lengths or the lengths do not cover the body
    exactly: the boundaries cannot be trusted then, so no envelope is taken."""
    items = lengths.split(",")
    if len(items) > ENVELOPES_MAX:
        raise PaygateError(Problem(
            "envelope_lengths_too_many", LENGTHS_HEADER, len(items),
            f"at most {ENVELOPES_MAX} envelopes in one POST"), 400)
    sizes, problems = _sizes(items)
    if problems:
        raise PaygateError(problems, 400)
    envelopes, start = [], 0
    for index, size in enumerate(sizes):
        end = start + size
        if end > len(body):
            raise PaygateError(Problem(
                "envelope_lengths_exceed_body", f"{LENGTHS_HEADER}/{index}", size,
                f"at most {len(body) - start} bytes, what the body holds after the "
                f"{index} envelope(s) before it",
                f"envelope {index} (counted from 0) is said to be {size} bytes long but the "
                f"body ends {len(body) - start} bytes after its start"), 400)
        envelopes.append(body[start:end])
        start = end
    if start != len(body):
        raise PaygateError(Problem(
            "envelope_lengths_short_of_body", LENGTHS_HEADER, len(body),
            f"a body of {start} bytes, the sum of the {len(sizes)} lengths",
            f"{len(body) - start} bytes of the body follow the last envelope "
            f"{len(sizes) - 1} (counted from 0)"), 400)
    return envelopes


def _sizes(items: list[str]) -> tuple[list[int], list[Problem]]:
    sizes, problems = [], []
    for index, item in enumerate(items):
        size = whole_number(item.strip(), BATCH_LEN_MAX, low=1)
        if size is not None:
            sizes.append(size)
            continue
        problems.append(Problem(
            "envelope_length_invalid", f"{LENGTHS_HEADER}/{index}", item[:40],
            f"the byte length of envelope {index} (counted from 0): a whole number from 1 "
            f"to {BATCH_LEN_MAX}, lengths separated by commas"))
    return sizes, problems


def answer(results: Sequence[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
    """The status and JSON body answering a framed POST, from each envelope's (status,
    details) in body order: 200 when every one was taken, else 207 with each one's."""
    if all(200 <= status < 300 for status, _ in results):
        return 200, {"taken": len(results)}
    return MULTI_STATUS, {"results": [dict(details, index=index, status=status)
                                      for index, (status, details) in enumerate(results)]}


class AnswerUnreadable(Exception):
    """A 207 that does not say, envelope by envelope, what became of each."""


def statuses(status: int, body: bytes, count: int) -> list[int]:
    """Each envelope's status from the answer to a framed POST of `count` envelopes;
    AnswerUnreadable for a 207 without one readable result per envelope."""
    if status != MULTI_STATUS or count == 1:  # one envelope goes unframed, answered alone
        return [status] * count
    try:
        results = json.loads(body)["results"]
        out = [r["status"] for r in results]
    except (ValueError, TypeError, KeyError) as exc:
        raise AnswerUnreadable(f"207 answer unreadable: {exc!r}") from None
    if len(out) != count or not all(type(s) is int and 100 <= s <= 599 for s in out):
        raise AnswerUnreadable(f"207 answer with {len(out)} results for {count} envelopes "
                               "or a status that is not one")
    return out
