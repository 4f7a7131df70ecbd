"""The addresses in the settings are checked before start: an NPC link, a webhook or a
database the gateway could not use is refused by name, not found out at the first
message (a traceback, or a link down forever)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import config
from gateway.errors import PaygateError

HOOK_SECRET = "a-webhook-secret-of-32-characters"


@pytest.mark.parametrize("values", [
    {},
    {"npc_url": "https://npc.example:8443/link/inbound", "webhook_url": "http://core/hook",
     "webhook_secret": HOOK_SECRET,
     "database_url": "postgresql://paygate@db/paygate"},
    {"database_url": "sqlite:////srv/paygate/gateway.db"},
])
def test_addresses_the_gateway_can_use_are_taken(values: dict[str, Any]) -> None:
    settings = config.load(None, values)

    assert {name: getattr(settings, name) for name in values} == values


@pytest.mark.parametrize("name, value", [
    ("npc_url", "http://127.0.0.1:18299x/link/inbound"), ("npc_url", ""),
    ("npc_url", "127.0.0.1:8090"), ("webhook_url", "http://:80/hook"),
    ("database_url", "/srv/paygate/gateway.db"), ("database_url", "mysql://db/paygate"),
])
def test_an_address_the_gateway_cannot_use_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(PaygateError) as exc:
        config.load(None, {name: value, "webhook_secret": HOOK_SECRET})

    assert [(p.code, p.path, p.value) for p in exc.value.problems] == [
        ("setting_malformed", name, value)]
