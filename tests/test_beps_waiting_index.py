"""The items waiting to be packed are read in packing order from their index, without a
sort; a database made with the index that lacked the payment id gets the new one."""

from __future__ import annotations

import ledger
from gateway import dialect
from gateway.beps import packer, schema
from gateway.store import SCHEMA


def _indexes(tx) -> set[str]:
    return {row[0] for row in tx.query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'beps_items'", ())}


def test_a_package_is_read_in_packing_order_without_a_sort(tmp_path):
    db = ledger.connect(f"sqlite:///{tmp_path / 'gw.db'}")
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        schema.install(tx)
        plan = [row[3] for row in tx.query("EXPLAIN QUERY PLAN " + packer._WAITING,
                                           ("888200000015", "beps.121.001.01", 1000))]
    assert any("USING INDEX beps_items_waiting" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    db.close()


def test_the_index_without_the_payment_id_is_replaced(tmp_path):
    db = ledger.connect(f"sqlite:///{tmp_path / 'gw.db'}")
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        schema.install(tx)
        tx.execute("DROP INDEX beps_items_waiting", ())
        tx.execute("CREATE INDEX beps_items_unpacked ON beps_items "
                   "(counterparty, msg_type, created_at) WHERE package_id IS NULL", ())
    with db.transaction() as tx:
        schema.install(tx)
        names = _indexes(tx)
    assert "beps_items_waiting" in names and "beps_items_unpacked" not in names
    db.close()
