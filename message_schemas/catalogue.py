"""Every message type the product sends or receives, in one table.

A row maps the type code (as in the `{H:` header) to its XML namespace, root element,
our XSD file under `xsd/`, whether a published schema exists for it (our XSDs for those
are at least as strict; a test checks it against the published ones), and the module
that parses and builds it. Adding a type is one row here and one XSD file.

The type schemas include `xsd/cnaps-common.xsd` (group headers, NPC block, references,
amounts, text types) and, for BEPS transactions, `xsd/beps-common.xsd`; both have no
target namespace and take on the including schema's. Includes are resolved from the
file's own directory, so the XSDs are read from where the package is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lxml import etree

from gateway.errors import PaygateError, Problem

CNAPS_NS = "urn:cnaps:std:{sys}:{year}:tech:xsd:{code}"
ISO_NS = "urn:iso:std:iso:20022:tech:xsd:{code}"


@dataclass(frozen=True)
class MessageType:
    code: str          # hvps.111.001.01
    namespace: str
    root: str          # the element under Document
    published: bool    # a published schema exists for this type
    module: str        # gateway.messages.<module> parses and builds it
    system: str        # header SID: HVPS, BEPS, CCMS, SAPS, NETS
    description: str

    @property
    def xsd(self) -> str:
        return f"{self.code}.xsd"


def _cnaps(code: str, root: str, module: str, system: str, description: str,
           published: bool = True, year: str = "2010") -> MessageType:
    ns = CNAPS_NS.format(sys=code.split(".")[0], year=year, code=code)
    return MessageType(code, ns, root, published, module, system, description)


_ROWS = [
    # HVPS. hvps.111 and hvps.112 are ISO 20022 documents under the CNAPS header type
    # (SPEC.md a.3); their published schemas are the stock pacs.008/pacs.009 ones.
    MessageType("hvps.111.001.01", ISO_NS.format(code="pacs.008.001.02"), "FIToFICstmrCdtTrf",
                True, "hvps111", "HVPS", "customer credit transfer"),
    MessageType("hvps.112.001.01", ISO_NS.format(code="pacs.009.001.02"), "FinInstnCdtTrf",
                True, "hvps112", "HVPS", "financial institution credit transfer"),
    _cnaps("hvps.710.001.01", "AcctChckngReq", "hvps710", "HVPS", "reconciliation request"),
    _cnaps("hvps.711.001.01", "SummryFile", "hvps710", "HVPS", "reconciliation summary"),
    _cnaps("hvps.712.001.01", "DtlReq", "hvps712", "HVPS", "detail check request"),
    _cnaps("hvps.713.001.01", "DtlRspn", "hvps712", "HVPS", "detail check response"),
    # BEPS
    _cnaps("beps.121.001.01", "CstmrCdtTrf", "beps121", "BEPS", "customer ordinary credit"),
    _cnaps("beps.122.001.01", "FinCdtTrf", "beps122", "BEPS", "FI ordinary credit"),
    _cnaps("beps.125.001.01", "PrdcCdtTrf", "beps125", "BEPS", "periodic credit",
           published=False),
    _cnaps("beps.123.001.01", "RealTmCdtTrf", "beps123", "BEPS", "real-time credit",
           published=False),
    _cnaps("beps.124.001.01", "RealTmCdtTrfRct", "beps123", "BEPS", "real-time credit receipt",
           published=False),
    _cnaps("beps.127.001.01", "CstmrDrctDbt", "beps127", "BEPS", "ordinary direct debit"),
    _cnaps("beps.128.001.01", "CstmrDrctDbtRct", "beps128", "BEPS", "ordinary debit receipt",
           published=False),
    _cnaps("beps.720.001.01", "TtlChckInfReq", "beps720", "BEPS", "total-check request"),
    _cnaps("beps.721.001.01", "TtlChck", "beps720", "BEPS", "total-check result"),
    _cnaps("beps.722.001.01", "DtlChckReq", "beps722", "BEPS", "package detail check request"),
    _cnaps("beps.723.001.01", "DtlChckRspn", "beps722", "BEPS", "package detail check result"),
    # CCMS
    _cnaps("ccms.303.001.02", "FreeFrmt", "ccms303", "CCMS", "free-format text"),
    _cnaps("ccms.307.001.02", "BizCxlReq", "ccms307", "CCMS", "cancel request",
           published=False),
    _cnaps("ccms.308.001.02", "BizCxlRspn", "ccms307", "CCMS", "cancel response",
           published=False),
    _cnaps("ccms.314.001.01", "BizQry", "ccms314", "CCMS", "business query"),
    _cnaps("ccms.315.001.01", "BizRspn", "ccms314", "CCMS", "query reply"),
    _cnaps("ccms.316.001.01", "BizStsQry", "ccms316", "CCMS", "status query",
           published=False),
    _cnaps("ccms.317.001.01", "BizStsRspn", "ccms316", "CCMS", "status query response",
           published=False),
    _cnaps("ccms.801.001.02", "SysStsNtfctn", "ccms801", "CCMS", "system status change"),
    _cnaps("ccms.805.001.02", "LoginReq", "ccms805", "CCMS", "login or logout request"),
    _cnaps("ccms.806.001.02", "LoginRspn", "ccms805", "CCMS", "login or logout response"),
    _cnaps("ccms.807.001.02", "LogoutNtfctn", "ccms805", "CCMS", "forced logout"),
    _cnaps("ccms.900.001.02", "CmonConf", "ccms900", "CCMS", "processing confirmation"),
    _cnaps("ccms.911.001.02", "DscrdMsgNtfctn", "ccms911", "CCMS", "discarded message"),
    _cnaps("ccms.990.001.02", "ComConf", "ccms990", "CCMS", "communication-level ack"),
    _cnaps("ccms.991.001.01", "ChckReq", "ccms991", "CCMS", "link probe"),
    _cnaps("ccms.992.001.01", "ChckRspn", "ccms991", "CCMS", "link probe response"),
    # Netting and settlement notices
    _cnaps("saps.606.001.01", "AcctBookgNtfctn", "saps606", "SAPS", "account booking notice"),
    _cnaps("nets.617.001.01", "BEPSNetgQry", "nets617", "NETS", "BEPS netting query"),
    _cnaps("nets.618.001.01", "BEPSNetgRspn", "nets617", "NETS", "BEPS netting response"),
]

CATALOGUE: dict[str, MessageType] = {row.code: row for row in _ROWS}
_BY_NS: dict[str, MessageType] = {row.namespace: row for row in _ROWS}
assert len(_BY_NS) == len(_ROWS), "two catalogue rows share a namespace"


def get(code: str) -> MessageType:
    row = CATALOGUE.get(code)
    if row is None:
        raise PaygateError(Problem("message_type_unknown", "{H:/mesg_type", code,
                                   "a message type in the catalogue"), status=400)
    return row


def by_namespace(namespace: str) -> MessageType:
    row = _BY_NS.get(namespace)
    if row is None:
        raise PaygateError(Problem("message_namespace_unknown", "/Document/@xmlns", namespace,
                                   "a CNAPS2 namespace in the catalogue"), status=400)
    return row


@lru_cache(maxsize=None)
def schema(code: str) -> etree.XMLSchema:
    """Our XSD for a type, compiled once."""
    row = get(code)
    source = resources.files("message_schemas") / "xsd" / row.xsd
    with resources.as_file(source) as path:
        doc = etree.parse(str(path), etree.XMLParser(no_network=True, resolve_entities=False))
    return etree.XMLSchema(doc)


def xsd_path(code: str) -> str:
    row = get(code)
    with resources.as_file(resources.files("message_schemas") / "xsd" / row.xsd) as path:
        return str(path)
