"""The console as a gateway extension: its routes beside the API, and the review hook."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

import gateway.app
from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import Settings
from gateway.ops.review import hold_reason
from gateway.ops.testing import START
from gateway.redisproc import free_port


def test_installed_as_an_extension_the_console_is_served_with_the_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With "gateway.ops" among the extensions, /ops/ and /health share one server."""
    if "gateway.ops" not in gateway.app.EXTENSIONS:
        monkeypatch.setattr(gateway.app, "EXTENSIONS", (*gateway.app.EXTENSIONS, "gateway.ops"))

    async def scenario() -> tuple[int, int, int, int, object]:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0,
                              npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                     clock=ManualClock(START))
        await gw.start()
        try:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as s:
                async with s.get(gw.url + "/health") as health, \
                        s.get(gw.url + "/ops/") as page:
                    statuses = [health.status, page.status]
                async with s.post(gw.url + "/ops/login",
                                  json={"user": "op1", "password": "op1-demo"}) as login:
                    statuses.append(login.status)
                async with s.get(gw.url + "/ops/api/status") as status:
                    statuses.append(status.status)
            return (*statuses, gw.review)
        finally:
            await gw.stop()
    health, page, login, status, review = asyncio.run(scenario())

    assert (health, page, login, status) == (200, 200, 200, 200)
    assert review is hold_reason
