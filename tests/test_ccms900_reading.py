"""A ccms.900 read in one pass over its elements (gateway.messages.ccms900.parse) gives
what reading it field by field, level by level gives: padded text stripped, a comment
or an empty optional element where it may be, both parties named InstgPty told apart."""

from __future__ import annotations

from lxml import etree

from gateway.messages import ccms900, xml
from gateway.messages.common import parse_group_header, parse_original
from gateway.messages.xml import child_text, children

NS = ccms900.NAMESPACE


def _field_by_field(root: etree._Element) -> ccms900.CommonConf:
    doc = root.find(f"{{{NS}}}CmonConf")
    inf = children(children(doc).get("CmonConfInf"))
    return ccms900.CommonConf(
        parse_group_header(doc, NS), parse_original(doc, NS),
        child_text(inf, "PrcSts") or "", child_text(inf, "PrcCd"), child_text(inf, "PtyId"),
        child_text(inf, "PtyPrcCd"), child_text(inf, "RjctInf"), child_text(inf, "PrcDt"),
        child_text(inf, "NetgRnd"))


def _document(remark: str, optional: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS}">
  <CmonConf>
    <!-- a comment -->
    <GrpHdr>
      <MsgId> 2024052090000001 </MsgId>
      <CreDtTm>2024-05-20T09:30:05</CreDtTm>
      <InstgPty>
        <InstgDrctPty>0000</InstgDrctPty>
        <InstgPty>888200000015</InstgPty>
      </InstgPty>
      <InstdPty>
        <InstdDrctPty>999100000019</InstdDrctPty>
        <InstdPty>999100000027</InstdPty>
      </InstdPty>
      <SysCd>HVPS</SysCd>{remark}
    </GrpHdr>
    <OrgnlGrpHdr>
      <OrgnlMsgId>2024052000100000</OrgnlMsgId>
      <OrgnlInstgPty>999100000019</OrgnlInstgPty>
      <OrgnlMT>hvps.111.001.01</OrgnlMT>
    </OrgnlGrpHdr>
    <CmonConfInf>
      <PrcSts>PR09</PrcSts>{optional}
    </CmonConfInf>
  </CmonConf>
</Document>""".encode()


def test_the_one_pass_reading_equals_the_field_by_field_one() -> None:
    cases = [("", ""), ("\n      <Rmk> 说明 </Rmk>", "\n      <PrcCd>NEZB9999</PrcCd>"
                                                   "\n      <RjctInf/>"
                                                   "\n      <PrcDt>2024-05-20</PrcDt>"),
             ("\n      <Rmk/>", "\n      <PtyId>888200000015</PtyId>"
                             "\n      <PtyPrcCd>X</PtyPrcCd><NetgRnd>01</NetgRnd>")]
    for remark, optional in cases:
        root = xml.parse(_document(remark, optional))
        parsed, problems = ccms900.parse(root)
        assert problems == []
        assert parsed == _field_by_field(root), (remark, optional)
    first = ccms900.parse(xml.parse(_document(*cases[1])))[0]
    assert (first.header.instg_direct, first.header.instg_party) == ("0000", "888200000015")
    assert (first.header.instd_direct, first.header.instd_party) == ("999100000019",
                                                                     "999100000027")
    assert (first.header.msg_id, first.header.remark) == ("2024052090000001", "说明")
    assert (first.code, first.reject_info, first.party) == ("NEZB9999", "", None)
