"""A batch (POST /v1/transfers/batch) looks the screening list up once, whatever the
channels of its transfers: its HVPS payments and book transfers, which are accepted one
by one, are screened with the batch's look-up as its BEPS items are, and each is held
or goes on exactly as it would sent alone. A real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.ops import review
from gateway.ops.testing import PAYEE_BANK, LoopThread, OpsRig
from tests.test_internal_screening import Rig as InternalRig

_keys = itertools.count(1)

CLIENT = "batch-screening-tests"


class Rig(InternalRig):
    """The book transfers' rig, with HVPS transfers to another bank beside them."""

    def hvps_body(self, listed: bool) -> dict[str, Any]:
        body = self.body(listed=False, amount="20.00")
        body.update(payee_bank=PAYEE_BANK, urgency="urgent",
                    payee_name="示例受限贸易有限公司" if listed else "收款单位乙",
                    payee_account="6222000011112222")
        return body

    def bodies(self) -> list[dict[str, Any]]:
        """Clear and listed, an HVPS transfer and a book transfer of each."""
        return [self.hvps_body(listed=False), self.hvps_body(listed=True),
                self.body(listed=False), self.body(listed=True)]

    def outcome(self, answer: Any) -> tuple[str, str, str | None]:
        """The channel, the state and the stored reason of an accepted transfer."""
        assert not isinstance(answer, Exception), answer
        status, view = answer
        assert status == 201, view
        state, reason = self.state_of(view["id"])
        return view["channel"], state, reason


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("batch-screening")).start())
    made = Rig(loop, ops_rig)
    made.open_payees()
    yield made
    loop.run(ops_rig.stop())
    loop.close()


@pytest.fixture
def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the screening lists looked up (BlockedList.for_path) meanwhile."""
    paths: list[str] = []
    real = review.BlockedList.for_path
    monkeypatch.setattr(review.BlockedList, "for_path",
                        classmethod(lambda cls, path: paths.append(path) or real(path)))
    return paths


def test_a_batch_of_hvps_and_book_transfers_looks_the_list_up_once(
        rig: Rig, looked_up: list[str]) -> None:
    """HVPS closed (07:00): the clear HVPS payment waits for the window, the listed one for
    the review; the clear book transfer settles, the listed one is held."""
    answers = rig.run(rig.gw.submit_transfers(
        CLIENT, [(f"batch-{next(_keys)}", body) for body in rig.bodies()]))

    assert looked_up == [str(review.DEMO_LIST)]
    assert [rig.outcome(a) for a in answers] == [
        ("hvps", "held", "waiting_for_hvps_window"),
        ("hvps", "held", "screening_match_payee_name"),
        ("internal", "settled", None),
        ("internal", "held", "screening_match_payee_name")]


def test_each_transfer_of_a_batch_ends_as_it_would_sent_alone(rig: Rig) -> None:
    batch = rig.run(rig.gw.submit_transfers(
        CLIENT, [(f"batch-{next(_keys)}", body) for body in rig.bodies()]))
    alone = [rig.run(rig.gw.submit_transfer(CLIENT, f"alone-{next(_keys)}", body))
             for body in rig.bodies()]

    assert [rig.outcome(a) for a in batch] == [rig.outcome(a) for a in alone]


def test_a_transfer_alone_looks_the_list_up_once(rig: Rig, looked_up: list[str]) -> None:
    """Sent alone, each payment looks the list up once: the review hook is asked once,
    its answer handed to the channel's intake."""
    for body in rig.bodies():
        rig.run(rig.gw.submit_transfer(CLIENT, f"alone-{next(_keys)}", body))

    assert looked_up == [str(review.DEMO_LIST)] * 4
