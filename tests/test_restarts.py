"""Restarts: a Redis still loading its append-only file, demo money on a later date."""

from __future__ import annotations

import asyncio

from redis.exceptions import BusyLoadingError

from gateway.app import Gateway
from gateway.config import Settings


class _Loading:
    def __init__(self, answers_loading: int) -> None:
        self.left = answers_loading
        self.pings = 0

    async def ping(self) -> bool:
        self.pings += 1
        if self.left:
            self.left -= 1
            raise BusyLoadingError("Redis is loading the dataset in memory")
        return True


def test_start_waits_until_redis_has_loaded(tmp_path):
    gw = Gateway(Settings(data_dir=str(tmp_path)))
    gw.redis = _Loading(answers_loading=3)
    asyncio.run(gw._redis_loaded())
    assert gw.redis.pings == 4


def test_demo_accounts_survive_a_restart_on_a_later_work_date(tmp_path):
    """`serve --simulate` opens its demo money once per data directory, whatever day the
    gateway restarts on."""
    from datetime import timedelta

    from gateway.serve import DEMO_BALANCE_FEN, open_demo_accounts

    async def scenario() -> list[str]:
        gw = Gateway(Settings(data_dir=str(tmp_path)))
        await gw.store.open()
        try:
            first = await open_demo_accounts(gw)
            gw.work_date = gw.work_date + timedelta(days=1)
            again = await open_demo_accounts(gw)
            assert again == first
            return [a["balance"] for a in again.values()]
        finally:
            await gw.store.close()
    balances = asyncio.run(scenario())
    assert balances == [f"{DEMO_BALANCE_FEN // 100}.00"] * 3
