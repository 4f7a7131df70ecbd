"""ccms.801.001.02: system status change notice (系统状态变更通知报文).

Sent by the NPC on every phase change of a system (SPEC.md d.9): 00 business
preparation, 10 daytime, 15 day cutover, 20 business cut-off, 30 clearing window,
40 end-of-day processing. The notice carries the previous and the current system date
and status; at end of day the date moves to the next working day.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, build_group_header, check_group_parties,
                                     parse_group_header)
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "ccms.801.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.801.001.02"
STATUSES = ("00", "10", "15", "20", "30", "40", "01", "02", "03")


@dataclass(frozen=True)
class SystemStatus:
    header: GroupHeader
    orig_date: str
    orig_status: str
    cur_date: str
    cur_status: str
    holiday_flag: str = "HF01"
    next_date: str | None = None
    # Change counters of the reference data (Exact8NumericText): a new value tells the
    # bank to download the bank directory, base data, CIS agencies or parameters.
    bank_change: str | None = None
    base_data_change: str | None = None
    cis_change: str | None = None
    param_change: str | None = None


_COUNTERS = (("BkChngNb", "bank_change"), ("BaseDataChngNb", "base_data_change"),
             ("CISChngNb", "cis_change"), ("ParamChngNb", "param_change"))


def build(s: SystemStatus) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "SysStsNtfctn")
    build_group_header(b, doc, s.header)
    inf = b.el(doc, "SysStsInf")
    b.el(inf, "OrgnlSysDt", s.orig_date)
    b.el(inf, "OrgnlSysSts", s.orig_status)
    b.el(inf, "CurSysDt", s.cur_date)
    b.el(inf, "CurSysSts", s.cur_status)
    b.el(inf, "HldayFlg", s.holiday_flag)
    if s.next_date is not None:
        b.el(inf, "NxtSysDt", s.next_date)
    for tag, name in _COUNTERS:
        value = getattr(s, name)
        if value is not None:
            b.el(inf, tag, value)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[SystemStatus, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}SysStsNtfctn")

    def t(name: str) -> str | None:
        return text(doc, ns, f"SysStsInf/{name}")

    return SystemStatus(parse_group_header(doc, ns), t("OrgnlSysDt") or "",
                        t("OrgnlSysSts") or "", t("CurSysDt") or "", t("CurSysSts") or "",
                        t("HldayFlg") or "", t("NxtSysDt"),
                        **{name: t(tag) for tag, name in _COUNTERS}), []


def check(s: SystemStatus) -> list[Problem]:
    p = check_group_parties(s.header, "/Document/SysStsNtfctn/GrpHdr")
    for name, value in (("OrgnlSysSts", s.orig_status), ("CurSysSts", s.cur_status)):
        if value not in STATUSES:
            p.append(Problem("system_status_unknown", f"/Document/SysStsNtfctn/SysStsInf/{name}",
                             value, "one of " + ", ".join(STATUSES)))
    return p
