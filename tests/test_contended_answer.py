"""A request whose rows other gateway processes held through every rerun of its work is
answered 503 database_contended with Retry-After (nothing was done), not 500."""

import asyncio

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.api import errors_middleware


class _LockTimeout(Exception):
    sqlstate = "55P03"  # PostgreSQL: lock not available (lock_timeout)


class _Request:
    path = "/v1/transfers/batch"
    method = "POST"
    headers = CIMultiDictProxy(CIMultiDict({"Idempotency-Key": "k1"}))


def _answer(exc):
    async def handler(request):
        raise exc
    return asyncio.run(errors_middleware(_Request(), handler))


def test_a_lost_race_is_a_503_to_send_again():
    response = _answer(_LockTimeout("canceling statement due to lock timeout"))
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert b'"database_contended"' in response.body


def test_any_other_failure_stays_an_internal_error():
    response = _answer(ValueError("a bug"))
    assert response.status == 500
    assert b'"internal_error"' in response.body
