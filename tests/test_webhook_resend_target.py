"""webhook_resend names a webhook row by its id: an id no row can have is refused as
malformed (target_malformed), a target that is not text for its type, not met with an
internal error."""

from __future__ import annotations

import pytest

from gateway.errors import PaygateError
from gateway.ops.testing import LoopThread, OpsRig

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("target", ["9" * 25, "12345678901234567890"])
def test_a_webhook_row_id_past_any_row_s_is_refused_as_malformed(tmp_path, target):
    loop = LoopThread()
    rig = loop.run(OpsRig(tmp_path).start())
    try:
        with pytest.raises(PaygateError) as refused:
            loop.run(rig.ops.console.request(rig.ops.directory.get("op1"),
                                             "webhook_resend", target, {}))
    finally:
        loop.run(rig.stop())
        loop.close()

    assert [p.code for p in refused.value.problems] == ["target_malformed"]


def _request(tmp_path, target, setup=None):
    """The console's answer to a webhook_resend of `target` (the request, or the
    refusal), after `setup(tx)` ran on the gateway's database."""
    loop = LoopThread()
    rig = loop.run(OpsRig(tmp_path).start())
    try:
        if setup is not None:
            target = str(loop.run(rig.gw.store.run(setup))) if target is None else target
        try:
            return loop.run(rig.ops.console.request(rig.ops.directory.get("op1"),
                                                    "webhook_resend", target, {}))
        except PaygateError as refused:
            return refused
    finally:
        loop.run(rig.stop())
        loop.close()


def _outbox_row(kind, state):
    def insert(tx):
        return tx.query_one(
            "INSERT INTO outbox (payment_id, kind, stream, state, envelope, attempts, "
            "created_at, updated_at) VALUES (NULL, ?, 'paygate:webhook', ?, ?, 24, "
            "'2026-12-07T09:00:00+08:00', '2026-12-07T09:00:00+08:00') RETURNING id",
            (kind, state, b'{"events": []}'))[0]
    return insert


@pytest.mark.parametrize("target, code", [
    (7, "field_must_be_text"), (7.0, "field_must_be_text"), (True, "field_must_be_text"),
    (["7"], "field_must_be_text"), (None, "field_required"), ("", "field_required"),
])
def test_a_target_that_is_not_text_is_refused_once(tmp_path, target, code):
    """A target given as a JSON number (or any other JSON type) is refused for its type,
    as the core system's API refuses a text field so, and one missing as missing: one
    problem that says what a webhook_resend's target is, not two that contradict each
    other."""
    refused = _request(tmp_path, target)

    assert isinstance(refused, PaygateError)
    assert [p.code for p in refused.problems] == [code]
    assert "webhook row" in refused.problems[0].expected


def test_a_row_id_with_leading_zeros_is_read_as_the_number(tmp_path):
    """"06" names row 6, as the console reads its other ids (a request's, a message's):
    the request records the row's id as the number it is."""
    def setup(tx):
        row = _outbox_row("webhook", "failed")(tx)
        return "0" + str(row), row
    loop = LoopThread()
    rig = loop.run(OpsRig(tmp_path).start())
    try:
        target, row = loop.run(rig.gw.store.run(setup))
        req = loop.run(rig.ops.console.request(rig.ops.directory.get("op1"),
                                               "webhook_resend", target, {}))
    finally:
        loop.run(rig.stop())
        loop.close()

    assert req["target"] == str(row)
    assert req["state"] == "executed" and req["outcome"]["webhook_rows"] == [row]


@pytest.mark.parametrize("kind, state, code", [
    ("hvps_credit", "failed", "webhook_row_not_found"),
    ("hvps_credit", "pending", "webhook_row_not_found"),
    ("webhook", "done", "webhook_row_not_failed"),
])
def test_a_row_that_is_not_a_webhook_row_is_refused_as_such(tmp_path, kind, state, code):
    """A row of another kind (a payment's message) is not a webhook row: the refusal
    says so, rather than that the row is not failed; a webhook row delivered is not
    failed."""
    refused = _request(tmp_path, None, _outbox_row(kind, state))

    assert isinstance(refused, PaygateError)
    assert [p.code for p in refused.problems] == [code]


def test_an_unknown_row_is_not_found(tmp_path):
    """An id no row has is not found (404), not "not failed"."""
    refused = _request(tmp_path, "987654")

    assert isinstance(refused, PaygateError) and refused.status == 404
    assert [p.code for p in refused.problems] == ["webhook_row_not_found"]
