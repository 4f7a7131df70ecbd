"""The BEPS load generator's transfers (`paygate bench e2e`): written from a text cut
once, they are the very text json.dumps wrote of each transfer, so the gateway receives
what it received before."""

from __future__ import annotations

import json

import pytest

from gateway.beps import bench


@pytest.mark.parametrize("account", ["11000000000000000801", "账户\"引号\\"])
def test_a_transfer_written_from_the_cut_text_is_what_json_dumps_writes(account):
    text_of = bench.credit_text(account)
    for n in (0, 1, 49_998, 49_999, 50_000, 10**14 + 7):
        assert text_of(n) == json.dumps(bench._credit(account, n), ensure_ascii=False)
        assert json.loads(text_of(n)) == bench._credit(account, n)
