"""Safe XML in and deterministic XML out.

Inbound: no entities are resolved, no DTD is loaded, nothing is fetched from the
network, documents over a size bound are refused before parsing, and libxml2's own
nesting bound (256 levels without huge_tree) stops deep documents; the schema then
bounds every document we map to about ten levels. A declared encoding other than UTF-8
is refused, and so are bytes that are not UTF-8 (libxml2 checks them while parsing, so
the check costs nothing extra): CNAPS2 bodies are UTF-8. Whitespace between elements is
dropped while parsing, which also makes schema validation and mapping faster.

Outbound: documents are written as text, element by element in document order, laid out
exactly as lxml's pretty printer lays out the same tree (two spaces a level, a leaf's text
on its line, `<Tag/>` for an element with neither text nor children), with the
declaration CNAPS2 uses, so the same input gives the same bytes. Writing text costs a
fraction of making an lxml element per field and serialising the tree, which matters
for a package of 1,000 transactions sealed in the database thread.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, NoReturn

from lxml import etree

from gateway.errors import PaygateError, Problem

BODY_LEN_MAX = 8 * 1024 * 1024
DEPTH_MAX = 256  # libxml2's bound without huge_tree; CNAPS2 trees are about 10 deep

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_blank_text=True, remove_comments=True,
                          remove_pis=True)
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_DECLARATION = DECLARATION.decode()
# A body that begins with this starts with "<" as one byte and declares UTF-8.
_UTF8_DECLARED = DECLARATION.rstrip()
_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def parse(body: bytes) -> etree._Element:
    """Parse an XML body, refusing anything a careful receiver should refuse."""
    if len(body) > BODY_LEN_MAX:
        raise _bad("xml_too_large", len(body), f"at most {BODY_LEN_MAX} bytes")
    if not body.startswith(_UTF8_DECLARED):
        body = _utf8_start(body)
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


def _utf8_start(body: bytes) -> bytes:
    """`body` without a UTF-8 byte order mark, once its first bytes show a UTF-8 document:
    for a body that does not begin with the declaration CNAPS2 writes (`parse` skips
    these checks for one that does, which settles all of them)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    # libxml2 would detect UTF-16 or UCS-4 from the first bytes and decode it; CNAPS2
    # bodies are UTF-8, so a body must begin with "<" as one byte.
    start = body.lstrip(b" \t\r\n")[:2]
    if start[:1] in (b"\xff", b"\xfe", b"\x00") or start[1:2] == b"\x00":
        raise _bad("xml_must_be_utf8", body[:8].hex(" "), "a UTF-8 document starting with <")
    if start[:1] != b"<":
        # The first bytes as text (not Python's b'...' form); "" for an empty body.
        raise _bad("xml_not_well_formed", body[:20].decode("utf-8", "replace"),
                   "a document starting with <")
    declared = _DECL.match(body)
    if declared and declared.group(1).upper().replace(b"_", b"-") not in (b"UTF-8", b"UTF8"):
        raise _bad("xml_encoding_must_be_utf8", declared.group(1).decode(), "UTF-8")
    return body


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


# Writing. libxml2 refuses to hold text with characters XML 1.0 does not allow; the
# writer refuses the same ones, with lxml's message, so that no value that building a
# tree would refuse reaches the wire.
NOT_XML_MESSAGE = ("All strings must be XML compatible: Unicode or ASCII, no NULL bytes or "
                   "control characters")
_NOT_XML_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_NOT_XML = re.compile(f"[{_NOT_XML_CHARS}]")
# What element text cannot carry as it is. A bare CR would be read back as LF, so it is
# written as a character reference, as libxml2 does.
_TEXT_SPECIAL = re.compile(f"[&<>\r{_NOT_XML_CHARS}]")
# In an attribute also the quote, and TAB and LF, which a parser would turn into spaces.
_ATTR_SPECIAL = re.compile(f'[&<>"\t\n\r{_NOT_XML_CHARS}]')
_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")  # CNAPS2 tags are ASCII names
# libxml2 indents at most this many levels (60 spaces); deeper elements line up with the
# thirtieth level. CNAPS2 documents are about ten levels deep.
INDENT_LEVELS_MAX = 30


def plain_text(value: str) -> bool:
    """Whether `value` is element text as it is (nothing in it to escape)."""
    return _TEXT_SPECIAL.search(value) is None


def escape_text(value: str) -> str:
    """`value` as element text: &, <, > as entities and CR as &#13;, as libxml2 writes it."""
    if _TEXT_SPECIAL.search(value) is None:
        return value
    return _escaped(value, _TEXT_REFERENCES)


def escape_attribute(value: str) -> str:
    """`value` as an attribute's value in double quotes, as libxml2 writes it."""
    if _ATTR_SPECIAL.search(value) is None:
        return value
    return _escaped(value, _ATTR_REFERENCES)


_TEXT_REFERENCES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))
_ATTR_REFERENCES = (*_TEXT_REFERENCES, ('"', "&quot;"), ("\t", "&#9;"), ("\n", "&#10;"))


def _escaped(value: str, references: tuple[tuple[str, str], ...]) -> str:
    if _NOT_XML.search(value) is not None:
        _refuse(value)
    for char, reference in references:  # "&" first: the references hold one
        value = value.replace(char, reference)
    return value


def _refuse(value: str) -> NoReturn:
    """Refuse a value XML cannot carry as lxml does: a lone surrogate fails its UTF-8
    encoding (UnicodeEncodeError, a ValueError), any other such character the check."""
    value.encode("utf-8")
    raise ValueError(NOT_XML_MESSAGE)


def indent(level: int) -> str:
    """The white space before an element at `level` (the root element is level 0)."""
    return "  " * min(level, INDENT_LEVELS_MAX)


class Element:
    """An element being written: its start tag waits until its first child or its end,
    since only then is it known whether it is written `<Tag/>`, `<Tag>text</Tag>` or
    with its children on the lines below."""

    __slots__ = ("tag", "head", "text", "level", "pad", "outer", "inner", "started")

    def __init__(self, tag: str, head: str, text: str | None, level: int,
                 outer: bool) -> None:
        self.tag = tag
        self.head = head          # "<Tag" and its attributes, written
        self.text = text          # escaped, or None when the element has no text
        self.level = level
        self.pad = indent(level)
        self.outer = outer        # laid out on a line of its own (its parent is)
        # Its children on lines of their own. Like lxml, an element with text (even
        # empty) and children is written on one line, and so is everything inside it.
        self.inner = outer and text is None
        self.started = False      # its start tag is written (it has a child)


class Builder:
    """Writes one document in one default namespace, element by element, as text.

    Elements are added in document order: a child of an element that is not the last
    one added, or one of its ancestors, would have to be written before text already
    written, which is refused (an assertion: a bug in the family's build).
    """

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.root = Element("Document", f'<Document xmlns="{escape_attribute(ns)}"', None,
                            0, True)
        self._open = [self.root]  # the root and the last element added, with their kin
        self._out: list[str] = []
        self._bytes: bytes | None = None
        self._part = False

    @classmethod
    def part(cls, level: int) -> Builder:
        """A builder of elements at `level` (and their children) for `insert` into a
        document: its root stands for their parent and is not written; `text()` gives
        them."""
        part = cls("")
        part.root = Element("", "", None, level - 1, True)
        part.root.started = True
        part._open = [part.root]
        part._part = True
        return part

    def text(self) -> str:
        """What a `part` holds, as text."""
        assert self._part, "text() is for a part; a document is tobytes()"
        while len(self._open) > 1:
            self._close(self._open.pop())
        return "".join(self._out)

    def el(self, parent: Element | None, tag: str, value: str | None = None,
           **attrs: str) -> Element:
        if _TAG.fullmatch(tag) is None:
            raise ValueError(f"Invalid tag name {tag!r}")
        parent = self._enter(self.root if parent is None else parent)
        head = f"<{tag}" + "".join(f' {name}="{escape_attribute(value_)}"'
                                   for name, value_ in attrs.items())
        node = Element(tag, head, None if value is None else escape_text(value),
                       parent.level + 1, parent.inner)
        self._open.append(node)
        return node

    def path(self, parent: Element, path: str, value: str | None) -> None:
        """Create the chain A/B/C under parent and set the last one's text; skip None."""
        if value is None:
            return
        *steps, last = path.split("/")
        node = parent
        for step in steps:
            node = self.el(node, step)
        self.el(node, last, value)

    def insert(self, parent: Element, written: Iterable[str], level: int) -> None:
        """Add children of `parent` already written as text, at `level`: whole lines,
        laid out as this builder lays them out (package transactions, from a template)."""
        parent = self._enter(parent)
        assert parent.inner and parent.level + 1 == level, \
            f"text at level {level} inserted under {parent.tag}, which cannot take it"
        self._out.extend(written)

    def tobytes(self) -> bytes:
        assert not self._part, "a part is text(), for insert into a document"
        if self._bytes is None:
            while self._open:
                self._close(self._open.pop())
            self._bytes = "".join([_DECLARATION, *self._out]).encode("utf-8")
        return self._bytes

    def _enter(self, parent: Element) -> Element:
        """End the elements added after `parent` and start `parent` (it has a child)."""
        opened = self._open
        assert parent in opened, f"{parent.tag} is complete: build in document order"
        while opened[-1] is not parent:
            self._close(opened.pop())
        if not parent.started:
            parent.started = True
            self._out.append((parent.pad if parent.outer else "") + parent.head
                             + ">" + (parent.text or "") + ("\n" if parent.inner else ""))
        return parent

    def _close(self, node: Element) -> None:
        before = node.pad if node.outer else ""
        after = "\n" if node.outer else ""
        if node.started:
            end = f"</{node.tag}>"
            self._out.append((node.pad + end if node.inner else end) + after)
        elif node.text is None:
            self._out.append(f"{before}{node.head}/>{after}")
        else:
            self._out.append(f"{before}{node.head}>{node.text}</{node.tag}>{after}")


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
