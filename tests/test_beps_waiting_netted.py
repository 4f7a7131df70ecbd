"""A BEPS package that waited for netting (PR11) and netted in a later round (PR03)
no longer says why it waited, and its `beps_package_waiting_for_netting` alert is closed
by the gateway."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.beps.api import package_view
from gateway.critical import install, unclosed
from tests.beps_support import NOW, answer, held_package


def test_a_package_netted_after_waiting_drops_its_reason_and_closes_its_alert(
        tmp_path: Path) -> None:
    db, gw, package_id = held_package(tmp_path, [100, 200])
    answer(db, gw, package_id, "PR11")
    with db.transaction() as tx:
        install(tx)
        # The alert the gateway raises with the wait (the stub only counts it).
        tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?)",
                   (NOW.isoformat(), "beps_package_waiting_for_netting",
                    json.dumps({"package": package_id, "npc_code": "NEZI0000"})))
        tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?)",
                   (NOW.isoformat(), "beps_package_waiting_for_netting",
                    json.dumps({"package": "another", "npc_code": "NEZI0000"})))
        waiting = package_view(tx, package_id)
    answer(db, gw, package_id, "PR03")
    with db.transaction() as tx:
        netted = package_view(tx, package_id)
        reasons = {r for (r,) in tx.query("SELECT reason FROM payments", ())}
        left = [detail["package"] for _, detail in
                unclosed(tx, ("beps_package_waiting_for_netting",))]

    assert waiting["state"] == "waiting" and waiting["reason"] == "why"
    assert netted["state"] in ("netted", "settled")
    assert netted["reason"] is None
    assert reasons == {None}
    assert left == ["another"]
