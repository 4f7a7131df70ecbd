"""Query strings of the listings: a parameter the listing does not know, or one given
twice, is refused with its own code, never ignored or taken first."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.api import query_params
from gateway.errors import PaygateError
from gateway.exceptions.routes import _list_params


def _request(query: str) -> web.Request:
    return make_mocked_request("GET", f"/v1/transfers?{query}")


def _codes(query: str) -> list[tuple[str, str]]:
    with pytest.raises(PaygateError) as exc:
        _list_params(_request(query))
    return [(p.code, p.path) for p in exc.value.problems]


def test_an_unknown_listing_parameter_is_refused():
    assert _codes("stat=sent") == [("query_parameter_unknown", "?stat")]


def test_a_repeated_listing_parameter_is_refused():
    assert _codes("limit=1&limit=2") == [("query_parameter_repeated", "?limit")]


def test_every_problem_of_the_query_string_together():
    assert _codes("stat=sent&limit=0&limit=2&state=nope") == [
        ("query_parameter_unknown", "?stat"), ("query_parameter_repeated", "?limit"),
        ("state_unknown", "?state")]


def test_a_good_query_string_is_read():
    assert _list_params(_request("state=sent&limit=5&after=P1")) == ("sent", 5, "P1")


def test_an_unknown_parameter_given_twice_is_also_refused_as_repeated():
    """Every value is shown, whether or not the route takes the parameter."""
    _, problems = query_params(_request("stat=sent&stat=held"), ("limit",))
    assert [(p.code, p.value) for p in problems] == [
        ("query_parameter_unknown", "sent"), ("query_parameter_repeated", ["sent", "held"])]


def test_the_repeated_values_are_shown():
    _, problems = query_params(_request("limit=1&limit=2"), ("limit",))
    assert problems[0].value == ["1", "2"]


def test_the_ops_search_refuses_a_repeated_field(tmp_path):
    """The payment search reads its query string as every route does, then its fields:
    a field given twice is refused with the search's other problems."""
    from gateway.ops import views
    request = make_mocked_request("GET", "/ops/api/payments?state=sent&state=held&limit=0")
    with pytest.raises(PaygateError) as exc:
        views.parse_search(*query_params(request, views.SEARCH_PARAMS))
    assert [p.code for p in exc.value.problems] == ["query_parameter_repeated",
                                                    "limit_out_of_range"]


def test_the_api_refuses_them_over_http(tmp_path):
    """GET /v1/transfers?stat=sent on a gateway: 422 with the code, nothing listed."""
    from gateway.ops.testing import OpsRig
    from gateway.api import make_app
    import aiohttp

    async def scenario() -> tuple[int, dict]:
        rig = await OpsRig(tmp_path).start()
        runner = web.AppRunner(make_app(rig.gw))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/v1/transfers?stat=sent") as r:
                    return r.status, await r.json()
        finally:
            await runner.cleanup()
            await rig.stop()
    status, body = asyncio.run(scenario())

    assert status == 422
    assert body["errors"][0]["code"] == "query_parameter_unknown"


def test_the_repeated_values_are_shown_as_json_not_python_text():
    _, problems = query_params(_request("limit=1&limit=2"), ("limit",))
    shown = problems[0].to_dict()

    assert shown["value"] == ["1", "2"]
    assert "got ['1', '2']," in shown["message"]


def test_an_empty_state_is_refused_as_empty_limit_and_after_are():
    assert _codes("state=") == [("state_unknown", "?state")]


@pytest.mark.parametrize("query, path", [
    ("limit=" + "1" * 5_000, "?limit"),
    ("after=" + "9" * 5_000, "?after"),
])
def test_a_reply_feed_number_of_thousands_of_digits_is_malformed(query, path):
    """A whole number of the queries' listings past its bound, however many digits (more
    than the 4,300 Python reads as an int), is refused by name, never a 500."""
    from gateway.queries.api import _params
    request = make_mocked_request("GET", f"/v1/queries/replies?{query}")
    with pytest.raises(PaygateError) as exc:
        _params(request, {}, {"after": (0, 0, 10**15), "limit": (100, 1, 500)})

    assert [(p.code, p.path) for p in exc.value.problems] == [
        ("query_parameter_malformed", path)]


def test_the_ops_search_refuses_a_limit_of_thousands_of_digits():
    """The console's search says the limit is out of range, as for 201."""
    from gateway.ops import views
    request = make_mocked_request("GET", "/ops/api/payments?limit=" + "1" * 5_000)
    with pytest.raises(PaygateError) as exc:
        views.parse_search(*query_params(request, views.SEARCH_PARAMS))

    assert [p.code for p in exc.value.problems] == ["limit_out_of_range"]
