"""A transfer that needs HVPS while it is closed, refused (when_closed=refuse): the answer
expects a time inside the gateway's own HVPS business window, with its hours and days,
and tells the next opening in its message and as `next_opening`."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from gateway.clock import SHANGHAI
from tests.api_support import LiveGateway, post_signed

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(tmp_path):
    # A timetable of its own, so that the answer is seen to come from it.
    g = LiveGateway(tmp_path, settings={"hvps_open_at": "09:00",
                                        "hvps_cutoff_at": "16:30"}).start()
    yield g
    g.stop()


def transfer(live: LiveGateway, **fields: str) -> bytes:
    return json.dumps({
        "payer_account": live.payer, "payer_name": "A", "payer_bank": "999100000027",
        "payee_account": "6222000000000001", "payee_name": "B", "payee_bank": "888200000023",
        "amount": "80000000.00", "currency": "CNY", "urgency": "urgent", **fields}).encode()


@pytest.mark.parametrize("fields, code, expected_start", [
    ({"when_closed": "refuse"}, "hvps_closed",
     "a time inside the HVPS business window, 09:00–16:30 Beijing time on working days"),
    ({"when_closed": "beps"}, "amount_over_beps_limit_and_hvps_closed",
     "an amount within the BEPS cap of 50000.00 yuan, or a time inside the HVPS business "
     "window, 09:00–16:30 Beijing time on working days"),
])
def test_a_refusal_while_closed_expects_the_window_and_names_the_next_opening(
        live: LiveGateway, fields: dict[str, str], code: str, expected_start: str) -> None:
    """Friday evening after the cut-off: HVPS opens next on Monday at 09:00."""
    live.gw.clock.set(datetime(2026, 12, 11, 18, 30, tzinfo=SHANGHAI))
    live.gw.hvps_status = "00"
    answer = post_signed(live.url, "/v1/transfers", transfer(live, **fields),
                         **{"Idempotency-Key": f"closed-{code}"})
    error = answer.json()["errors"][0]

    assert (answer.status_code, error["code"]) == (409, code), answer.text
    assert error["expected"].startswith(expected_start)
    assert error["next_opening"] == "2026-12-14T09:00:00+08:00"
    assert error["message"].endswith("HVPS is closed and opens next at "
                                     "2026-12-14T09:00:00+08:00")


@pytest.mark.parametrize("fields, code", [
    ({"when_closed": "refuse"}, "hvps_closed"),
    ({"when_closed": "beps"}, "amount_over_beps_limit_and_hvps_closed"),
])
def test_closed_by_the_npcs_status_inside_the_window_names_that_status(
        live: LiveGateway, fields: dict[str, str], code: str) -> None:
    """Monday 09:01, inside the window, but the NPC's status is 30: the answer names the
    status in force and the one HVPS takes payments in, not the window the time is in,
    and tells no next opening (the NPC decides it)."""
    live.gw.clock.set(datetime(2026, 12, 14, 9, 1, tzinfo=SHANGHAI))
    live.gw.hvps_status = "30"
    answer = post_signed(live.url, "/v1/transfers", transfer(live, **fields),
                         **{"Idempotency-Key": f"closed-by-status-{code}"})
    error = answer.json()["errors"][0]

    assert (answer.status_code, error["code"]) == (409, code), answer.text
    assert "HVPS status 10 (daytime processing), the only status in which HVPS takes " \
        "customer payments; the NPC's status now is 30 (clearing window)" in error["expected"]
    assert "business window, 09:00" not in error["expected"]
    assert error["next_opening"] is None
    assert "the NPC's HVPS status is 30 (clearing window)" in error["message"]
