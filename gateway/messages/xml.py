"""Safe XML in and deterministic XML out.

Inbound: no entities are resolved, no DTD is loaded, nothing is fetched from the
network, documents over a size bound are refused before parsing, and libxml2's own
nesting bound (256 levels without huge_tree) stops deep documents; the schema then
bounds every document we map to about ten levels. A declared encoding other than UTF-8
is refused, and so are bytes that are not UTF-8 (libxml2 checks them while parsing, so
the check costs nothing extra): CNAPS2 bodies are UTF-8. Whitespace between elements is
dropped while parsing, which also makes schema validation and mapping faster.

Outbound: documents are built with lxml and serialised the same way every time, with the
declaration CNAPS2 uses, so the same input gives the same bytes.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lxml import etree

from gateway.errors import PaygateError, Problem

BODY_LEN_MAX = 8 * 1024 * 1024
DEPTH_MAX = 256  # libxml2's bound without huge_tree; CNAPS2 trees are about 10 deep

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_blank_text=True, remove_comments=True,
                          remove_pis=True)
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def parse(body: bytes) -> etree._Element:
    """Parse an XML body, refusing anything a careful receiver should refuse."""
    if len(body) > BODY_LEN_MAX:
        raise _bad("xml_too_large", len(body), f"at most {BODY_LEN_MAX} bytes")
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    # libxml2 would detect UTF-16 or UCS-4 from the first bytes and decode it; CNAPS2
    # bodies are UTF-8, so a body must begin with "<" as one byte.
    start = body.lstrip(b" \t\r\n")[:2]
    if start[:1] in (b"\xff", b"\xfe", b"\x00") or start[1:2] == b"\x00":
        raise _bad("xml_must_be_utf8", repr(body[:8]), "a UTF-8 document starting with <")
    if start[:1] != b"<":
        raise _bad("xml_not_well_formed", repr(body[:20]), "a document starting with <")
    declared = _DECL.match(body)
    if declared and declared.group(1).upper().replace(b"_", b"-") not in (b"UTF-8", b"UTF8"):
        raise _bad("xml_encoding_must_be_utf8", declared.group(1).decode(), "UTF-8")
    # One scan for "!" first, then the precise ones. "!" is rare in CNAPS2 bodies and
    # never a byte of a multi-byte UTF-8 character, so that scan runs at memory speed;
    # one for "<!" stops at every "<" of the document: close to a millisecond for a
    # package of 1,000 transactions, and a twentieth of an hvps.111's whole reading.
    if b"!" in body and (b"<!DOCTYPE" in body or b"<!ENTITY" in body):
        raise _bad("xml_doctype_not_allowed", "<!DOCTYPE", "a document without a DTD")
    try:
        return etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None


def _syntax_error(exc: etree.XMLSyntaxError) -> PaygateError:
    """Name the libxml2 refusals a receiver meets in practice; the rest are syntax."""
    text = str(exc)[:200]
    kind = exc.error_log.last_error.type_name if exc.error_log.last_error else ""
    if kind in ("ERR_INVALID_ENCODING", "ERR_INVALID_CHAR") and "encoding" in text:
        return _bad("xml_must_be_utf8", text, "valid UTF-8")
    if "Excessive depth" in text:
        return _bad("xml_too_deep", text, f"at most {DEPTH_MAX} levels")
    if "amplification" in text or "Maximum entity" in text:
        return _bad("xml_entity_expansion_refused", text, "a document without entities")
    return _bad("xml_not_well_formed", text, "a well-formed XML document")


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
        # lxml would write the declaration with single quotes; CNAPS2 writes this one.
        return DECLARATION + etree.tostring(self.root, encoding="UTF-8", pretty_print=True)


def children(el: etree._Element | None) -> dict[str, etree._Element]:
    """The children of `el` by local name (the first of each name); {} for None.

    One pass over the children instead of one path search per field: mapping a
    message this way costs a fraction of `text`'s path lookups.
    """
    if el is None:
        return {}
    out: dict[str, etree._Element] = {}
    for child in el:
        tag = child.tag
        if isinstance(tag, str):
            out.setdefault(tag[tag.find("}") + 1:], child)
    return out


def child_text(parts: dict[str, etree._Element], name: str) -> str | None:
    """The stripped text of `parts[name]` (parts from `children`), or None when absent."""
    node = parts.get(name)
    return None if node is None else (node.text or "").strip()


def leaf(el: etree._Element | None, *steps: str) -> str | None:
    """The stripped text at el/steps[0]/steps[1]/..., or None when a step is missing."""
    for step in steps:
        if el is None:
            return None
        el = children(el).get(step)
    if el is None:
        return None
    return (el.text or "").strip()


def element_path(el: etree._Element) -> str:
    """/Document/A/B[2]/C: local names, with a 1-based index where a name repeats."""
    steps = []
    node: etree._Element | None = el
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [s for s in parent if s.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))
