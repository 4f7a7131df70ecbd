"""Operators are named by their user name (`op1`) in payments' histories and in the
exception flows' tables, whichever road recorded them; rows the exception flows and the
receivables wrote before as `operator:op1` are kept as written and read as `op1` by
every reader: the console's payment detail and `paygate ops payment`, the core system's
GET /v1/transfers/{id} and /exceptions (gateway.operator_names)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import operator_names
from gateway.exceptions import schema as exc_schema
from gateway.ops import cli_render
from gateway.ops.testing import ConsoleRig, serving

SUSPENSE_FEN = 1_230_00


class Rig(ConsoleRig):
    def suspense(self) -> str:
        """A new incoming payment to an account we do not hold: in suspense."""
        return self.loop.run(self.rig.receive(next(self.keys), SUSPENSE_FEN))

    def as_written_before(self, payment_id: str) -> None:
        """The payment's rows as the exception flows wrote them before: every operator
        in its history and its tables named `operator:<user>`, no return's approver."""
        def old(name: Any) -> Any:
            return f"operator:{name}" if name in ("op1", "sup1") else name

        def work(tx: Any) -> None:
            for event_id, detail in tx.query("SELECT id, detail FROM payment_events "
                                             "WHERE payment_id = ?", (payment_id,)):
                d = json.loads(detail)
                d.update({k: old(v) for k, v in d.items() if k in operator_names.WHO_FIELDS})
                tx.execute("UPDATE payment_events SET detail = ? WHERE id = ?",
                           (json.dumps(d, ensure_ascii=False), event_id))
            tx.execute("UPDATE exc_returns SET requested_by = 'operator:op1', "
                       "approved_by = NULL WHERE original_id = ?", (payment_id,))
            tx.execute("UPDATE exc_suspense_keep SET kept_by = 'operator:op1' "
                       "WHERE payment_id = ?", (payment_id,))
            tx.execute("INSERT INTO exc_requests (kind, payment_id, msg_id, mesg_id, state, "
                       "requested_by, created_at) VALUES ('status', ?, ?, ?, 'answered', "
                       "'operator:op1', '2026-12-07T09:30:00+08:00')",
                       (payment_id, f"OLD{payment_id}", f"OLD{payment_id}"))
        self.run(work)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("operator-names")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def _returned_and_kept(rig: Rig) -> tuple[str, str]:
    """A payment op1 asked to return and sup1 approved, and one op1 kept from the
    automatic return."""
    returned, kept = rig.suspense(), rig.suspense()
    _, req = rig.request("return", returned, "查无此人")
    assert rig.approve(req["id"])[0] == 200
    assert rig.request("suspense_keep", kept, "tracing")[1]["state"] == "executed"
    return returned, kept


def _who_in(history: list[dict[str, Any]]) -> set[str]:
    return {str(e["detail"][k]) for e in history for k in operator_names.WHO_FIELDS
            if k in e["detail"]}


def _exceptions(rig: Rig, payment_id: str) -> dict[str, Any]:
    """What GET /v1/transfers/{id}/exceptions answers about who acted."""
    return rig.run(lambda tx: {"returns": exc_schema.returns_of(tx, payment_id),
                               "requests": exc_schema.requests_of(tx, payment_id),
                               "kept": exc_schema.kept(tx, payment_id)})


def test_new_records_name_operators_plainly_as_stored(rig: Rig) -> None:
    """The exception flows write `op1`, as the console's own actions do: in the history
    and in their tables, read without any reader's help."""
    returned, kept = _returned_and_kept(rig)

    def stored(tx: Any) -> tuple[Any, ...]:
        details = [json.loads(d) for (d,) in tx.query(
            "SELECT detail FROM payment_events WHERE payment_id IN (?, ?)", (returned, kept))]
        return (details, tx.query_one("SELECT requested_by, approved_by FROM exc_returns "
                                      "WHERE original_id = ?", (returned,)),
                tx.query_one("SELECT kept_by FROM exc_suspense_keep WHERE payment_id = ?",
                             (kept,)))
    details, ret, keep = rig.run(stored)
    who = {str(d[k]) for d in details for k in operator_names.WHO_FIELDS if k in d}

    assert who == {"op1", "sup1"}
    assert tuple(ret) == ("op1", "sup1") and tuple(keep) == ("op1",)


def test_old_records_are_read_as_the_plain_name_everywhere(rig: Rig) -> None:
    """Rows written `operator:op1` read as `op1`: the console's detail and its CLI text,
    the core system's view and the exceptions view (a return's approver from its
    history), so one operator reads as one person."""
    returned, kept = _returned_and_kept(rig)
    for pid in (returned, kept):
        rig.as_written_before(pid)
    _, detail = rig.call("GET", f"/ops/api/payments/{returned}")
    core = rig.loop.run(rig.gw.get_transfer(returned))
    exceptions = {pid: _exceptions(rig, pid) for pid in (returned, kept)}

    assert _who_in(detail["history"]) == _who_in(core["history"]) == {"op1", "sup1"}
    assert "operator:" not in cli_render.payment(detail)
    assert [(r["requested_by"], r["approved_by"]) for r in exceptions[returned]["returns"]
            ] == [("op1", "sup1")]
    assert [r["requested_by"] for r in exceptions[returned]["requests"]] == ["op1"]
    assert exceptions[kept]["kept"]["kept_by"] == "op1"


@pytest.mark.parametrize("written, read", [
    ("operator:op1", "op1"), ("op1", "op1"), ("core:bank-a", "core:bank-a"),
    ("auto_return", "auto_return"), ("gateway", "gateway"), (None, None)])
def test_an_operator_reads_as_one_name_other_actors_as_written(written: Any,
                                                               read: Any) -> None:
    assert operator_names.operator_name(written) == read


def test_a_reply_to_a_banks_query_keeps_the_query_desks_words() -> None:
    """The core system's staff who answer a query are named as the query desk names
    them (`operator:张三`), not taken for console operators; any other event's operator
    reads plainly."""
    detail = {"query": "Q1", "by": "operator:张三"}

    assert operator_names.plain_event("query_answered", detail) == detail
    assert operator_names.plain_event("return_requested", detail)["by"] == "张三"
