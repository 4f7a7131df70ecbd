"""A ready hvps.111 routed to BEPS keeps the payer's and payee's address lines: the
beps.121 package carrying it has them as Dbtr/PstlAdr/AdrLine and Cdtr/PstlAdr/AdrLine,
and a transfer without them goes out without them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lxml import etree

from gateway.beps import extension_of
from gateway.messages import envelope as env_mod
from tests.e2e_support import YUAN, started, until
from tests.test_ready_message_checks import example, open_payer, post

pytestmark = pytest.mark.e2e

PAYER_ADDRESS, PAYEE_ADDRESS = "甲市城东区示例路1号", "乙市建设大道88号"
NS = {"b": "urn:cnaps:std:beps:2010:tech:xsd:beps.121.001.01"}


def small(msg_id: str, addresses: bool) -> bytes:
    """The example message within the BEPS limit at normal priority, with address lines
    on both sides when `addresses`."""
    raw = example(msg_id).replace(b">150000.00<", b">100.00<").replace(
        b"<SttlmPrty>URGT", b"<SttlmPrty>NORM").replace(
        b"<TxId>2026120790000001</TxId>", f"<TxId>{msg_id}</TxId>".encode()).replace(
        b"20261207900000000001</EndToEndId>",
        f"2026120790000000{msg_id[-4:]}</EndToEndId>".encode())
    if addresses:
        raw = raw.replace(
            "<Nm>示例一号贸易有限公司</Nm>".encode(),
            f"<Nm>示例一号贸易有限公司</Nm><PstlAdr><AdrLine>{PAYER_ADDRESS}</AdrLine>"
            "</PstlAdr>".encode()).replace(
            "<Nm>对手乙建材有限公司</Nm>".encode(),
            f"<Nm>对手乙建材有限公司</Nm><PstlAdr><AdrLine>{PAYEE_ADDRESS}</AdrLine>"
            "</PstlAdr>".encode())
    return raw


async def package_of(h: Any, payment_id: str) -> etree._Element:
    """The body of the beps.121 that carried the payment, as the archive keeps it."""
    gw = h.gateway

    def sent(tx: Any) -> Any:
        return tx.query_one(
            "SELECT a.envelope FROM beps_items i JOIN beps_packages k ON k.id = i.package_id "
            "JOIN archive a ON a.mesg_id = k.mesg_id AND a.direction = 'out' "
            "WHERE i.payment_id = ?", (payment_id,))
    row: list[Any] = []

    async def packed() -> bool:
        found = await gw.store.run(sent)
        if found is not None:
            row.append(found)
        return found is not None
    await until(packed, f"the package of {payment_id}")
    return etree.fromstring(env_mod.decode(bytes(row[0][0])).body)


def test_address_lines_of_a_ready_message_go_out_in_its_beps_package(tmp_path):
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            extension_of(h.gateway).configure(package_age_max_s=3600.0)
            with_status, with_lines = await post(h, small("2026120790000011", True))
            bare_status, bare = await post(h, small("2026120790000012", False))
            assert (with_status, with_lines["channel"]) == (201, "beps"), with_lines
            assert (bare_status, bare["channel"]) == (201, "beps"), bare
            extension_of(h.gateway).configure(package_age_max_s=0.2)
            body = await package_of(h, with_lines["id"])

            txs = body.findall(".//b:CstmrCdtTrfInf", NS)
            assert len(txs) == 2
            lines = [(tx.findtext("b:Dbtr/b:PstlAdr/b:AdrLine", namespaces=NS),
                      tx.findtext("b:Cdtr/b:PstlAdr/b:AdrLine", namespaces=NS))
                     for tx in txs]
            assert sorted(lines, key=str) == sorted(
                [(PAYER_ADDRESS, PAYEE_ADDRESS), (None, None)], key=str)
            assert [tx.find("b:Dbtr/b:PstlAdr", NS) is None for tx in txs].count(True) == 1
    asyncio.run(scenario())
