"""The addresses in the settings are checked before start: an NPC link, a webhook or a
database the gateway could not use is refused by name, not found out at the first
message (a traceback, or a link down forever)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import config
from gateway.errors import PaygateError


@pytest.mark.parametrize("values, problems", [
    ({}, []),
    ({"npc_url": "https://npc.example:8443/link/inbound", "webhook_url": "http://core/hook",
      "database_url": "postgresql://paygate@db/paygate"}, []),
    ({"database_url": "sqlite:////srv/paygate/gateway.db"}, []),
    ({"npc_url": "http://127.0.0.1:18299x/link/inbound"}, [("setting_malformed", "npc_url")]),
    ({"npc_url": ""}, [("setting_malformed", "npc_url")]),
    ({"npc_url": "127.0.0.1:8090"}, [("setting_malformed", "npc_url")]),
    ({"webhook_url": "http://:80/hook"}, [("setting_malformed", "webhook_url")]),
    ({"database_url": "/srv/paygate/gateway.db"}, [("setting_malformed", "database_url")]),
    ({"database_url": "mysql://db/paygate"}, [("setting_malformed", "database_url")]),
])
def test_addresses_are_checked_at_start(values: dict[str, Any],
                                        problems: list[tuple[str, str]]) -> None:
    try:
        config.load(None, values)
        found = []
    except PaygateError as exc:
        found = [(p.code, p.path) for p in exc.problems]

    assert found == problems
