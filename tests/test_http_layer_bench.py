"""benchmarks/http_layer.py serves the API's application each way it measures and gets
a 2xx for every request it times: a way that refused its requests would time the
refusal, not the layer."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import http_layer


@pytest.mark.parametrize("kind", ["transfer", "link:4"])
def test_each_way_answers_the_requests_it_times(kind, capsys) -> None:
    asyncio.run(http_layer.main(kind, ["around", "chain", "bare", "lowlevel"], 1, 20))

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == ["around", "chain", "bare",
                                                                "lowlevel"]


def test_a_refused_request_stops_the_measure(monkeypatch) -> None:
    async def refusing(self, *args, **kwargs):
        raise http_layer.api.PaygateError(http_layer.api.Problem(
            "amount_too_large", "/amount", "9", "at most 1"), 422)
    monkeypatch.setattr(http_layer.StubGateway, "submit_transfer", refusing)

    with pytest.raises(AssertionError):
        asyncio.run(http_layer.main("transfer", ["around"], 1, 20))
