"""A ccms.990 read in one pass over its elements (gateway.messages.ccms990.parse) gives
what reading it level by level gives: padded text stripped, an empty element read as
empty, a missing MsgRefId as None, a comment where one may be; and the CommConf it makes
is the one its constructor makes."""

from __future__ import annotations

from lxml import etree

from gateway.messages import ccms990, codec, xml
from gateway.messages.xml import child_text, children

NS = ccms990.NAMESPACE


def _level_by_level(root: etree._Element) -> ccms990.CommConf:
    inf = children(children(children(root).get("ComConf")).get("ConfInf"))
    return ccms990.CommConf(child_text(inf, "OrigSndr") or "",
                            child_text(inf, "OrigSndDt") or "", child_text(inf, "MT") or "",
                            child_text(inf, "MsgId") or "", child_text(inf, "MsgRefId"),
                            child_text(inf, "MsgPrcCd") or "")


def _document(ref: str, code: str = "<MsgPrcCd>PM1I0000</MsgPrcCd>") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS}">
  <ComConf>
    <!-- a comment -->
    <ConfInf>
      <OrigSndr> 999100000019 </OrigSndr>
      <OrigSndDt>20261207</OrigSndDt>
      <MT>hvps.111.001.01</MT>
      <MsgId>20261207000000000007</MsgId>{ref}
      {code}
    </ConfInf>
  </ComConf>
</Document>""".encode()


def test_the_one_pass_reading_equals_the_level_by_level_one() -> None:
    cases = [("", "<MsgPrcCd>PM1I0000</MsgPrcCd>"),
             ("\n      <MsgRefId>20261207000000000007</MsgRefId>",
              "<MsgPrcCd>PM1E0001</MsgPrcCd>"),
             ("\n      <MsgRefId/>", "<MsgPrcCd> PM1I0000 </MsgPrcCd>"),
             ("\n      <MsgRefId> X1 </MsgRefId>", "<MsgPrcCd></MsgPrcCd>")]
    for ref, code in cases:
        for root in (xml.parse(_document(ref, code)), etree.fromstring(_document(ref, code))):
            parsed, problems = ccms990.parse(root)
            assert problems == []
            assert parsed == _level_by_level(root), (ref, code)
            assert repr(parsed) == repr(_level_by_level(root))
    first = ccms990.parse(xml.parse(_document(*cases[0])))[0]
    assert (first.orig_sender, first.msg_ref_id, first.accepted) == ("999100000019", None,
                                                                     True)
    empty = ccms990.parse(xml.parse(_document(*cases[2])))[0]
    assert (empty.msg_ref_id, empty.code) == ("", "PM1I0000")


def test_a_built_acknowledgement_decodes_to_what_it_was_built_from() -> None:
    """Through the whole reading (schema included): every field back as it was."""
    for ref in (None, "20261207000000000008"):
        conf = ccms990.CommConf("999100000019", "20261207", "hvps.111.001.01",
                                "20261207000000000008", ref, "PM1E0002")
        decoded = codec.decode(ccms990.build(conf), bare_ok=True)
        assert decoded.ok, decoded.problems
        assert decoded.obj == conf
