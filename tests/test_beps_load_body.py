"""The load generators' transfers (`paygate bench e2e`): written from a text cut
once, they are the very text json.dumps wrote of each transfer, so the gateway receives
what it received before."""

from __future__ import annotations

import json

import pytest

from gateway import bench_e2e, bench_load


@pytest.mark.parametrize("account", ["11000000000000000801", "账户\"引号\\"])
def test_a_transfer_written_from_the_cut_text_is_what_json_dumps_writes(account):
    text_of = bench_load.credit_text(account)
    for n in (0, 1, 49_998, 49_999, 50_000, 10**14 + 7):
        assert text_of(n) == json.dumps(bench_load.credit(account, n), ensure_ascii=False)
        assert json.loads(text_of(n)) == bench_load.credit(account, n)


def test_an_hvps_transfer_written_from_the_cut_text_is_what_aiohttp_sent():
    """The HVPS load's transfers: the bytes `json=transfer_body(i)` sent (json.dumps)."""
    text_of = bench_e2e.transfer_texts()
    for i in (0, 1, 19, 20, 21, 12_345, 10**14 - 1):
        assert text_of(i) == json.dumps(bench_e2e.transfer_body(i)).encode()
