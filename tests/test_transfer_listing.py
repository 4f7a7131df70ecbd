"""GET /v1/transfers in pages: newest first, a cursor (`after`, the answer's
`next_after`) that pages through every payment once while new ones arrive, the state
filter and each client's own payments kept, and a bad cursor refused by name."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.api_support import (CLIENT, OTHER, OTHER_SECRET, SECRET, LiveGateway,
                               post_signed, signed_headers)

SECRETS = {CLIENT: SECRET, OTHER: OTHER_SECRET}


@pytest.fixture
def live(tmp_path):
    g = LiveGateway(tmp_path, api_keys=dict(SECRETS)).start()
    yield g
    g.stop()


def submit(live: LiveGateway, client: str, key: str) -> str:
    """A BEPS credit (normal urgency, small): it stays `accepted` until a package is
    sealed, which the tests' still clock never does."""
    body = json.dumps({"payer_account": live.payer, "payer_name": "示例客户",
                       "payer_bank": "999100000027", "payee_account": "6222000000000001",
                       "payee_name": "对手", "payee_bank": "888200000023", "amount": "10.00",
                       "urgency": "normal"}).encode()
    r = post_signed(live.url, "/v1/transfers", body, client, SECRETS[client],
                    **{"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def listing(live: LiveGateway, client: str, query: str) -> requests.Response:
    path = f"/v1/transfers?{query}"
    return requests.get(live.url + path, timeout=10,
                        headers=signed_headers(client, SECRETS[client], "GET", path, b""))


def all_pages(live: LiveGateway, client: str, query: str, after: str = "",
              pages_max: int = 20) -> list[list[str]]:
    """The ids on each page, following `next_after` from `after` to the last page."""
    pages = []
    after = f"&after={after}" if after else ""
    for _ in range(pages_max):
        answer = listing(live, client, query + after).json()
        pages.append([t["id"] for t in answer["transfers"]])
        assert answer["count"] == len(pages[-1])
        if answer["next_after"] is None:
            return pages
        after = f"&after={answer['next_after']}"
    raise AssertionError(f"more than {pages_max} pages: {pages}")


def test_pages_cover_every_payment_once_newest_first(live: LiveGateway) -> None:
    """Seven payments in pages of three: 3, 3 and 1, newest first (later creation first,
    then the higher id among those created at the same instant), the last page saying
    there is no next one; another client's payments are neither listed nor counted."""
    made = [submit(live, CLIENT, f"a{n}") for n in range(4)]
    live.loop.run(_advance(live, 1))
    made += [submit(live, CLIENT, f"a{n}") for n in range(4, 7)]
    others = [submit(live, OTHER, f"b{n}") for n in range(2)]

    pages = all_pages(live, CLIENT, "limit=3")

    assert [len(p) for p in pages] == [3, 3, 1]
    assert sum(pages, []) == made[4:][::-1] + made[:4][::-1]
    assert all_pages(live, OTHER, "limit=3") == [others[::-1]]


def test_payments_arriving_while_paging_do_not_disturb_the_pages(live: LiveGateway) -> None:
    """New payments come before the cursor, so the pages after it still hold exactly the
    older payments; a fresh listing shows the new ones first."""
    older = [submit(live, CLIENT, f"old{n}") for n in range(5)]
    first = listing(live, CLIENT, "limit=2").json()
    newer = [submit(live, CLIENT, f"new{n}") for n in range(3)]
    rest = all_pages(live, CLIENT, "limit=2", after=first["next_after"])
    fresh = listing(live, CLIENT, "limit=3").json()

    assert [t["id"] for t in first["transfers"]] + sum(rest, []) == older[::-1]
    assert [t["id"] for t in fresh["transfers"]] == newer[::-1]


def test_state_filter_pages_too(live: LiveGateway) -> None:
    """The state filter still applies, page by page; a state nobody is in is one empty
    page."""
    made = [submit(live, CLIENT, f"s{n}") for n in range(3)]

    assert all_pages(live, CLIENT, "state=accepted&limit=2") == [made[:0:-1], made[:1]]
    assert all_pages(live, CLIENT, "state=settled&limit=2") == [[]]


@pytest.mark.parametrize("query, codes", [
    ("after=P-2026", [("cursor_malformed", "?after")]),
    ("after=" + "P" * 65, [("cursor_malformed", "?after")]),
    ("after=P2026120799999999", [("cursor_unknown", "?after")]),
    ("limit=0&after=%20", [("limit_out_of_range", "?limit"), ("cursor_malformed", "?after")]),
    ("limit=1001", [("limit_out_of_range", "?limit")]),
    ("limit=" + "1" * 5_000, [("limit_out_of_range", "?limit")]),
    ("state=lost&after=x_y", [("state_unknown", "?state"), ("cursor_malformed", "?after")]),
])
def test_bad_cursor_or_limit_is_refused_by_name(live: LiveGateway, query: str,
                                                codes: list[tuple[str, str]]) -> None:
    """A malformed or unknown cursor is refused with the field named, with the other
    problems of the same request."""
    r = listing(live, CLIENT, query)

    assert r.status_code == 422
    assert [(e["code"], e["path"]) for e in r.json()["errors"]] == codes


def test_another_clients_payment_is_no_cursor(live: LiveGateway) -> None:
    """A client cannot page from a payment it may not see: as if it did not exist."""
    theirs = submit(live, OTHER, "theirs")
    submit(live, CLIENT, "mine")

    r = listing(live, CLIENT, f"after={theirs}")

    assert r.status_code == 422
    assert r.json()["errors"][0]["code"] == "cursor_unknown"


async def _advance(live: LiveGateway, seconds: float) -> Any:
    live.gw.clock.advance(seconds)
