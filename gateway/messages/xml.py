"""Safe XML in and deterministic XML out.

Inbound: no entities are resolved, no DTD is loaded, nothing is fetched from the
network, documents over a size bound are refused before parsing, and lxml's own nesting
bound (no huge_tree) stops deep documents. A declared encoding other than UTF-8 is
refused: CNAPS2 bodies are UTF-8.

Outbound: documents are built with lxml and serialised the same way every time, with the
declaration CNAPS2 uses, so the same input gives the same bytes.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lxml import etree

from gateway.errors import PaygateError, Problem

BODY_LEN_MAX = 8 * 1024 * 1024
DEPTH_MAX = 32  # the deepest CNAPS2 element tree is about 10 levels

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_blank_text=True, remove_comments=True,
                          remove_pis=True)
_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def parse(body: bytes) -> etree._Element:
    """Parse an XML body, refusing anything a careful receiver should refuse."""
    if len(body) > BODY_LEN_MAX:
        raise _bad("xml_too_large", len(body), f"at most {BODY_LEN_MAX} bytes")
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    declared = _DECL.match(body)
    if declared and declared.group(1).upper().replace(b"_", b"-") not in (b"UTF-8", b"UTF8"):
        raise _bad("xml_encoding_must_be_utf8", declared.group(1).decode(), "UTF-8")
    if b"<!DOCTYPE" in body[:4096] or b"<!ENTITY" in body:
        raise _bad("xml_doctype_not_allowed", "<!DOCTYPE", "a document without a DTD")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("xml_must_be_utf8", f"byte {exc.start}", "valid UTF-8")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise _bad("xml_not_well_formed", str(exc)[:200], "a well-formed XML document")
    _check_depth(root)
    return root


def _check_depth(root: etree._Element) -> None:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > DEPTH_MAX:
            raise _bad("xml_too_deep", depth, f"at most {DEPTH_MAX} levels")


def _bad(code: str, value: object, expected: str) -> PaygateError:
    return PaygateError(Problem(code, "/", value, expected), status=400)


def namespace_of(root: etree._Element) -> str:
    return etree.QName(root).namespace or ""


@lru_cache(maxsize=4096)
def qpath(ns: str, path: str) -> str:
    """'A/B/C' in namespace ns as an ElementPath for find/findtext."""
    return "/".join(f"{{{ns}}}{step}" for step in path.split("/"))


def text(el: etree._Element, ns: str, path: str) -> str | None:
    found = el.findtext(qpath(ns, path))
    return found.strip() if found is not None else None


def texts(el: etree._Element, ns: str, path: str) -> list[str]:
    return [(e.text or "").strip() for e in el.iterfind(qpath(ns, path))]


class Builder:
    """Builds one document in one default namespace, element by element."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})

    def el(self, parent: etree._Element | None, tag: str, value: str | None = None,
           **attrs: str) -> etree._Element:
        node = etree.SubElement(self.root if parent is None else parent,
                                f"{{{self.ns}}}{tag}", attrs)
        if value is not None:
            node.text = value
        return node

    def path(self, parent: etree._Element, path: str, value: str | None) -> None:
        """Create the chain A/B/C under parent and set the last one's text; skip None."""
        if value is None:
            return
        steps = path.split("/")
        node = parent
        for step in steps:
            node = self.el(node, step)
        node.text = value

    def tobytes(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8",
                              pretty_print=True)
