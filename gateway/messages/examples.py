"""One valid example of every message type in the catalogue, as a domain object.

The examples use the parties of CONTRACT.md §1 (our bank 999100000019 with branch
999100000027, the peer 888200000015 with branch 888200000023, the NPC 0000) and the
work day 2024-05-20 of the shared samples. Tests build them, validate them against our
schemas and the published ones, and corrupt them; the benchmark and the docs use them
too. Each example passes its family's `check`.
"""

from __future__ import annotations

from typing import Any, Callable

from gateway.messages import (beps123, beps128, beps720, beps722, ccms303, ccms307,
                              ccms314, ccms316, ccms801, ccms805, ccms900, ccms911, ccms990,
                              ccms991, hvps111, hvps112, hvps710, hvps712, nets617, saps606)
from gateway.messages.common import (GroupHeader, Node, NpcProcessing, OriginalRef,
                                     OriginalTx, Partition)
from gateway.messages.package import (Package, PackageHeader, ReturnInfo, ReturnLimit,
                                      Transfer)

OUR_BANK, OUR_BRANCH = "999100000019", "999100000027"
PEER_BANK, PEER_BRANCH = "888200000015", "888200000023"
NPC = "0000"
DAY = "2024-05-20"


def group_header(system: str = "HVPS", *, from_npc: bool = False,
                 msg_id: str = "2024052000000001") -> GroupHeader:
    if from_npc:
        return GroupHeader(msg_id, f"{DAY}T10:00:00", NPC, NPC, OUR_BANK, OUR_BANK, system)
    return GroupHeader(msg_id, f"{DAY}T10:00:00", OUR_BANK, OUR_BRANCH, PEER_BANK,
                       PEER_BRANCH, system)


def to_npc(system: str, msg_id: str = "2024052000000002") -> GroupHeader:
    return GroupHeader(msg_id, f"{DAY}T10:00:00", OUR_BANK, OUR_BANK, NPC, NPC, system)


def npc_done(status: str = "PR04") -> NpcProcessing:
    return NpcProcessing(status, "NEZI0000", None, DAY, "01", DAY, f"{DAY}T10:00:01",
                         f"{DAY}T10:00:02")


def credit_transfer() -> hvps111.CreditTransfer:
    return hvps111.CreditTransfer(
        msg_id="2024052000000101", created_at=f"{DAY}T10:15:30",
        end_to_end_id="99910000002720240520000000000101", tx_id="2024052000000101",
        business_type="A100", business_kind="02102", amount_fen=15_000_000,
        priority="URGT", instg_direct=OUR_BANK, instg_branch=OUR_BRANCH,
        instd_direct=PEER_BANK, instd_branch=PEER_BRANCH, debtor_name="示例进出口贸易有限公司",
        debtor_account="11000000000000000101", debtor_agent=OUR_BRANCH,
        creditor_agent=PEER_BRANCH, creditor_name="测试乙",
        creditor_account="6200000000000000201", remittance=("/H01/货款", "/H02/合同号TEST-1"),
        debtor_agent_name="示例银行测试分行营业部", creditor_agent_name="对手银行测试支行")


def institution_transfer() -> hvps112.InstitutionTransfer:
    return hvps112.InstitutionTransfer(
        msg_id="2024052000000201", created_at=f"{DAY}T11:00:05",
        end_to_end_id="2024052000000201", tx_id="2024052000000201", business_type="A200",
        amount_fen=5_000_000_000, priority="HIGH", instg_direct=OUR_BANK,
        instg_branch=OUR_BANK, instd_direct=PEER_BANK, instd_branch=PEER_BANK,
        debtor=hvps112.Institution(OUR_BANK, "示例银行资金营运部"),
        creditor=hvps112.Institution(PEER_BANK, "对手银行资金部"),
        debtor_account="99910000001900000001", creditor_account="88820000001500000001",
        creditor_agent=hvps112.Institution(PEER_BANK),
        remittance=("/F25/02118", "/H01/同业资金拆借"))


def transfer(n: int = 1, *, business_type: str = "A100", business_kind: str = "02102",
             amount_fen: int = 120_000, **changes: Any) -> Transfer:
    values: dict[str, Any] = dict(
        tx_id=f"20240520{n:08d}", debtor_name="示例商贸有限公司",
        debtor_account=f"110000000000{n:08d}", debtor_account_bank=OUR_BRANCH,
        debtor_bank=OUR_BRANCH, creditor_bank=PEER_BRANCH, creditor_name="测试收款人",
        creditor_account=f"62000000000{n:08d}", creditor_account_bank=PEER_BRANCH,
        amount_fen=amount_fen, business_type=business_type, business_kind=business_kind,
        remark="货款")
    values.update(changes)
    return Transfer(**values)


def package(transfers: tuple[Transfer, ...], *, instg: str = OUR_BANK, instd: str = PEER_BANK,
            msg_id: str = "2024052000100000", **changes: Any) -> Package:
    header = PackageHeader(msg_id, f"{DAY}T09:30:00", instg, instd, len(transfers),
                           sum(t.amount_fen for t in transfers))
    return Package(header, transfers, **changes)


def credit_package() -> Package:
    returned = transfer(3, business_type="A105", business_kind="02108", extra=ReturnInfo(
        OriginalRef("2024051900100000", PEER_BANK, "beps.121.001.01"),
        OriginalTx(PEER_BRANCH, OUR_BRANCH, "2024051900100007", "A100"), "账号不符"))
    collected = transfer(4, business_type="A109", business_kind="02106", extra=Node(
        "ColltnInf", children=(Node("Tp", "01"), Node("Dt", DAY), Node("Nb", "WT-0001"))))
    return package((transfer(1), transfer(2, amount_fen=350_050), returned, collected))


def institution_package() -> Package:
    t = transfer(1, business_type="A200", business_kind="02105", debtor_account_bank=None,
                 creditor_account_bank=None, debtor_bank=OUR_BANK, creditor_bank=PEER_BANK,
                 debtor_name="示例银行清算资金往来户", creditor_name="对手银行清算资金往来户")
    return package((t,), msg_id="2024052000200000")


def periodic_package() -> Package:
    return package((transfer(1, business_type="E100", business_kind="01200",
                             agreement="XY-SALARY-01", remark="工资"),),
                   msg_id="2024052000250000")


def debit_package() -> Package:
    debits = tuple(transfer(n, business_type="B100", business_kind="00300",
                            agreement=f"XY-TEST-{n:04d}", debtor_bank=PEER_BRANCH,
                            debtor_account_bank=PEER_BRANCH, creditor_bank=OUR_BRANCH,
                            creditor_account_bank=OUR_BRANCH, amount_fen=12_000 + n,
                            remark="燃气费")
                   for n in (1, 2))
    return package(debits, msg_id="2024052000300000", return_limit=ReturnLimit("03"))


def debit_receipt() -> beps128.DebitReceipt:
    lines = (beps128.ReceiptLine("2024052000000001", PEER_BRANCH, OUR_BRANCH, 12_001, "PR02"),
             beps128.ReceiptLine("2024052000000002", PEER_BRANCH, OUR_BRANCH, 12_002, "PR09",
                                 "RJ01", "账户余额不足"))
    header = PackageHeader("2024052000350000", f"{DAY}T12:00:00", PEER_BANK, OUR_BANK, 2,
                           24_003)
    return beps128.DebitReceipt(header, OriginalRef("2024052000300000", OUR_BANK,
                                                    "beps.127.001.01"), 1, 12_001, lines)


def realtime_credit() -> beps123.RealTimeCredit:
    return beps123.RealTimeCredit(group_header("BEPS"), transfer(
        1, business_type="C100", business_kind="02102", amount_fen=8_000_000))


def realtime_receipt() -> beps123.RealTimeReceipt:
    return beps123.RealTimeReceipt(
        group_header("BEPS", msg_id="2024052000000003"),
        OriginalRef("2024052000000001", OUR_BANK, "beps.123.001.01"), "2024052000000001",
        8_000_000, "PR02")


def _original(mt: str = "hvps.111.001.01") -> OriginalRef:
    return OriginalRef("2024052000000101", OUR_BANK, mt)


EXAMPLES: dict[str, Callable[[], Any]] = {
    "hvps.111.001.01": credit_transfer,
    "hvps.112.001.01": institution_transfer,
    "hvps.710.001.01": lambda: hvps710.ReconRequest(to_npc("HVPS"), DAY),
    "hvps.711.001.01": lambda: hvps710.ReconSummary(
        group_header("HVPS", from_npc=True), OriginalRef("2024052000000002", OUR_BANK,
                                                         "hvps.710.001.01"), DAY,
        (hvps710.PaymentTotals("hvps.111.001.01", "A100", 2, 300_000, 1, 150_000, "PR04"),),
        (hvps710.MessageTotals("ccms.314.001.01", "0", 1, 0, "PR00"),)),
    "hvps.712.001.01": lambda: hvps712.DetailRequest(
        to_npc("HVPS"), DAY, (hvps712.DetailSelector("hvps.111.001.01", "A100", "SR00",
                                                     "PR04"),), 1),
    "hvps.713.001.01": lambda: hvps712.DetailResponse(
        group_header("HVPS", from_npc=True), Partition(1, 1, 1),
        OriginalRef("2024052000000002", OUR_BANK, "hvps.712.001.01"), DAY, npc_done(),
        (hvps712.DetailRows(hvps712.DetailSelector("hvps.111.001.01", "A100", "SR00", "PR04"),
                            1, (hvps712.CheckedMessage(_original(), 15_000_000, "DBIT"),)),),
        1),
    "beps.121.001.01": credit_package,
    "beps.122.001.01": institution_package,
    "beps.123.001.01": realtime_credit,
    "beps.124.001.01": realtime_receipt,
    "beps.125.001.01": periodic_package,
    "beps.127.001.01": debit_package,
    "beps.128.001.01": debit_receipt,
    "beps.720.001.01": lambda: beps720.TotalCheckRequest(to_npc("BEPS"), DAY),
    "beps.721.001.01": lambda: beps720.TotalCheck(
        group_header("BEPS", from_npc=True),
        OriginalRef("2024052000000002", OUR_BANK, "beps.720.001.01"), DAY,
        (beps720.RoundTotals(DAY, "01", "beps.121.001.01", 3, 478_850, 0, 0, "PR03"),),
        (beps720.MessageCounts("ccms.314.001.01", 1, 0, DAY),), 1, 1),
    "beps.722.001.01": lambda: beps722.DetailCheckRequest(
        to_npc("BEPS"), DAY, (beps722.PaymentRow("SR00", DAY, "01", "beps.121.001.01",
                                                 "PR03"),),
        (beps722.MessageRow("SR01", "ccms.314.001.01", DAY),)),
    "beps.723.001.01": lambda: beps722.DetailCheckResponse(
        group_header("BEPS", from_npc=True), Partition(1, 1, 1),
        OriginalRef("2024052000000002", OUR_BANK, "beps.722.001.01"), DAY, npc_done(),
        (beps722.PaymentDetails(
            beps722.PaymentRow("SR00", DAY, "01", "beps.121.001.01", "PR03"),
            (beps722.PackageTotal(OriginalRef("2024052000100000", OUR_BANK,
                                              "beps.121.001.01"), 3, 478_850),)),),
        (beps722.MessageDetails(beps722.MessageRow("SR01", "ccms.314.001.01", DAY), (
            beps722.MessageStatus(OriginalRef("2024052000400001", PEER_BANK,
                                              "ccms.314.001.01"), "PR00", "PT01"),)),)),
    "ccms.303.001.02": lambda: ccms303.FreeFormat(group_header("CCMS"), "请于今日16时前回复"),
    "ccms.307.001.02": lambda: ccms307.CancelRequest(to_npc("HVPS"), _original(),
                                                     reason="客户申请撤销"),
    "ccms.308.001.02": lambda: ccms307.CancelResponse(
        group_header("HVPS", from_npc=True),
        OriginalRef("2024052000000002", OUR_BANK, "ccms.307.001.02"), _original(), "PR08"),
    "ccms.314.001.01": lambda: ccms314.Query(group_header("HVPS"), _original(), 15_000_000,
                                             "客户称款项未入账，请查询", query_type="QT00"),
    "ccms.315.001.01": lambda: ccms314.Reply(
        group_header("HVPS"), OriginalRef("2024052000400001", OUR_BANK, "ccms.314.001.01"),
        _original(), 15_000_000, "款项已入账", query_type="QT00"),
    "ccms.316.001.01": lambda: ccms316.StatusQuery(to_npc("HVPS"), _original()),
    "ccms.317.001.01": lambda: ccms316.StatusResponse(
        group_header("HVPS", from_npc=True),
        OriginalRef("2024052000000002", OUR_BANK, "ccms.316.001.01"), _original(),
        npc_done()),
    "ccms.801.001.02": lambda: ccms801.SystemStatus(
        group_header("HVPS", from_npc=True), DAY, "40", "2024-05-21", "00", "HF01",
        "2024-05-22", "20240101"),
    "ccms.805.001.02": lambda: ccms805.LoginRequest(to_npc("CCMS"), ccms805.LOGIN),
    "ccms.806.001.02": lambda: ccms805.LoginResponse(
        group_header("CCMS", from_npc=True), "2024052000000002", ccms805.LOGIN, DAY, "10",
        "PR07"),
    "ccms.807.001.02": lambda: ccms805.ForcedLogout(group_header("CCMS", from_npc=True)),
    "ccms.900.001.02": lambda: ccms900.CommonConf(
        group_header("HVPS", from_npc=True), _original(), ccms900.SETTLED, "NEZI0000",
        processed_on=DAY),
    "ccms.911.001.02": lambda: ccms911.Discarded(OUR_BANK, "20240520", "hvps.111.001.01",
                                                 "00000000000000000101", "NEZD0001",
                                                 "20240520000000000101", "签名验证失败"),
    "ccms.990.001.02": lambda: ccms990.CommConf(OUR_BANK, "20240520", "hvps.111.001.01",
                                                "00000000000000000101",
                                                "20240520000000000101"),
    "ccms.991.001.01": lambda: ccms991.Probe(
        OUR_BANK, "FE01", "LM01", "R1", f"{DAY}T10:00:00.000", NPC, "NPC01", "LM-NPC",
        "L1", "0"),
    "ccms.992.001.01": lambda: ccms991.ProbeResponse(
        OUR_BANK, "FE01", "LM01", "R1", f"{DAY}T10:00:00.000", NPC, "NPC01", "LM-NPC",
        (ccms991.LineLoad("L1", "0.25"),), "L1"),
    "saps.606.001.01": lambda: saps606.Booking(
        group_header("SAPS", from_npc=True),
        OriginalRef("2024052000100000", OUR_BANK, "beps.121.001.01"), npc_done(), "A100",
        "02102", "DBIT", 478_850, netting_round="01", balance_fen=100_000_000),
    "nets.617.001.01": lambda: nets617.NettingQuery(to_npc("BEPS"), DAY, "01", "QT00",
                                                    OUR_BANK),
    "nets.618.001.01": lambda: nets617.NettingResponse(
        group_header("BEPS", from_npc=True), Partition(1, 1, 1),
        OriginalRef("2024052000000002", OUR_BANK, "nets.617.001.01"), npc_done(),
        nets617.NettingResults(DAY, 1, (nets617.NettingRow("01", "NT01", OUR_BANK, "DBIT",
                                                           478_850, "PR04", DAY),))),
}
