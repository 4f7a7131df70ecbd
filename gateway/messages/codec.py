"""Decode and encode whole messages: envelope, signature, schema, domain object, rules.

`decode` runs the checks in a fixed order and collects every problem of a stage before
it stops: envelope → signature → XML → type agreement → schema → business rules. A
message that fails the envelope, signature or XML stage has no body worth checking
further; schema and rule problems are reported together.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from lxml import etree

from gateway.errors import PaygateError, Problem
from gateway.messages import envelope as env_mod
from gateway.messages import schema_report, xml
from gateway.messages.envelope import Envelope, Header
from gateway.messages.signing import KeyRing
from message_schemas import catalogue
from message_schemas.catalogue import MessageType

# Types whose module holds two message types: the response's verbs have other names.
_RESPONSE_VERBS = {
    "hvps.711.001.01": ("build_summary", "parse_summary"),
    "hvps.713.001.01": ("build_response", "parse_response"),
    "beps.124.001.01": ("build_receipt", "parse_receipt"),
    "beps.721.001.01": ("build_result", "parse_result"),
    "beps.723.001.01": ("build_response", "parse_response"),
    "ccms.308.001.02": ("build_response", "parse_response"),
    "ccms.315.001.01": ("build_reply", "parse_reply"),
    "ccms.317.001.01": ("build_response", "parse_response"),
    "ccms.806.001.02": ("build_response", "parse_response"),
    "ccms.807.001.02": ("build_logout", "parse_logout"),
    "ccms.992.001.01": ("build_response", "parse_response"),
    "nets.618.001.01": ("build_response", "parse_response"),
}


@dataclass
class Decoded:
    envelope: Envelope | None
    mtype: MessageType
    root: etree._Element
    obj: Any = None
    problems: list[Problem] = field(default_factory=list)
    signature: str = "absent"  # verified | unverified | unsigned_allowed | absent

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def header(self) -> Header:
        assert self.envelope is not None, "a bare XML document has no header"
        return self.envelope.header


_MODULES: dict[str, ModuleType] = {}


def module_for(code: str) -> ModuleType:
    """The family module of a message type, imported on first use and then kept (every
    message decoded asks for it twice)."""
    mod = _MODULES.get(code)
    if mod is None:
        row = catalogue.get(code)
        mod = _MODULES[code] = importlib.import_module(f"gateway.messages.{row.module}")
    return mod


def _verbs(code: str) -> tuple[Callable[..., bytes], Callable[..., Any]]:
    mod = module_for(code)
    build_name, parse_name = _RESPONSE_VERBS.get(code, ("build", "parse"))
    return getattr(mod, build_name), getattr(mod, parse_name)


# Per type: its parse and its rules' check (None: the family has none), found once. Every
# message decoded asked its module for both again.
_READERS: dict[str, tuple[Callable[..., Any], Callable[..., list[Problem]] | None]] = {}


def _reader(code: str) -> tuple[Callable[..., Any], Callable[..., list[Problem]] | None]:
    reader = _READERS.get(code)
    if reader is None:
        reader = _READERS[code] = (_verbs(code)[1],
                                   getattr(module_for(code), "check", None))
    return reader


# The root tag of each catalogued type's document ({namespace}Document), for the body's
# type found by one look-up; any other root is judged by `_root_type`.
_DOCUMENTS: dict[str, MessageType] = {
    f"{{{row.namespace}}}Document": row for row in catalogue.CATALOGUE.values()}


def schema_problems(code: str, root: etree._Element, every: bool = False) -> list[Problem]:
    """The document's schema problems (none: valid), as libxml2 reports them, or, with
    `every`, each error the schema finds (gateway.messages.schema_report: only once
    libxml2 has refused the document, so a valid one costs nothing more)."""
    schema = catalogue.schema(code)
    if schema.validate(root):
        return []
    first = [Problem("schema_violation", _readable(root, err.path), _offending(root, err.path),
                     err.message[:300], f"line {err.line}: {err.message}"[:400])
             for err in schema.error_log]
    return schema_report.every_problem(code, root, first) if every else first


def _nodes(root: etree._Element, path: str | None) -> list[Any]:
    """The elements libxml2's error path (/*/*[2]/...) points at."""
    if not path:
        return []
    try:
        found = root.getroottree().xpath(path)
    except etree.XPathError:
        # The path names a foreign element by its prefix (/*/xi:include); the error then
        # keeps libxml2's own path, which is still exact, only less readable.
        return []
    return found if isinstance(found, list) else []


def _readable(root: etree._Element, path: str | None) -> str:
    """libxml2 names elements by position; the error names them by local name."""
    nodes = [n for n in _nodes(root, path) if isinstance(n, etree._Element)]
    return xml.element_path(nodes[0]) if nodes else (path or "/")


def _offending(root: etree._Element, path: str | None) -> str | None:
    nodes = [n for n in _nodes(root, path) if isinstance(n, etree._Element)]
    if not nodes or len(nodes[0]):
        return None
    return (nodes[0].text or "")[:200]


def decode(raw: bytes, keyring: KeyRing | None = None, own_codes: frozenset[str] | None = None,
           bare_ok: bool = False, every_schema_error: bool = False) -> Decoded:
    """Decode a message; raises PaygateError for anything before the body can be checked.
    `every_schema_error` lists each schema error of a body the schema refuses (for a
    sender who corrects the message: the core system, `paygate validate`), not only
    those libxml2 reports before it stops checking an element's children."""
    stripped = raw.lstrip(b"\xef\xbb\xbf \r\n\t")
    envelope: Envelope | None = None
    signature = "absent"
    if bare_ok and not stripped.startswith(b"{"):
        # Anything that does not look like an envelope is judged as XML, which names
        # its fault more precisely than "not an envelope" would.
        body = stripped if stripped.startswith(b"<") else raw
    else:
        envelope = env_mod.decode(raw)
        if keyring is not None:
            signature = keyring.verify(envelope, own_codes)
        body = envelope.body
    return _decode_body(envelope, body, signature, every_schema_error)


def decode_envelope(envelope: Envelope, signature: str = "absent") -> Decoded:
    """`decode` of a message whose envelope was decoded (and its signature checked, as
    `signature` says) already: the body's stages only."""
    return _decode_body(envelope, envelope.body, signature)


def _decode_body(envelope: Envelope | None, body: bytes, signature: str,
                 every_schema_error: bool = False) -> Decoded:
    root = xml.parse(body)
    mtype = _DOCUMENTS.get(root.tag) or _root_type(root)
    problems: list[Problem] = []
    if envelope is not None and envelope.header.mesg_type != mtype.code:
        problems.append(Problem("header_type_disagrees_with_body", "{H:/mesg_type",
                                envelope.header.mesg_type, f"{mtype.code}, as the body's "
                                "namespace says"))
    problems.extend(schema_problems(mtype.code, root, every_schema_error))
    decoded = Decoded(envelope, mtype, root, problems=problems, signature=signature)
    if problems:
        return decoded
    parse, check = _reader(mtype.code)
    obj, parse_problems = parse(root)
    decoded.obj = obj
    if parse_problems:
        problems.extend(parse_problems)
    elif check is not None:
        problems.extend(check(obj))
    return decoded


def _root_type(root: etree._Element) -> MessageType:
    """The type of a body whose root is not a catalogued type's Document: refused, for a
    root not named Document or a namespace not in the catalogue."""
    if etree.QName(root).localname != "Document":
        raise PaygateError(Problem("root_must_be_document", "/", etree.QName(root).localname,
                                   "Document"), status=400)
    return catalogue.by_namespace(xml.namespace_of(root))


def reread(raw: bytes) -> Decoded:
    """A message that `decode` found clean before and that was kept as it came (the
    NPC's stored packages, read back to forward them once netted): its body parsed again
    without the schema and the checks those same bytes passed then. Validating a package
    of a thousand transactions a second time was most of the cost of forwarding it."""
    envelope = env_mod.decode(raw)
    root = xml.parse(envelope.body)
    mtype = catalogue.by_namespace(xml.namespace_of(root))
    _, parse = _verbs(mtype.code)
    obj, problems = parse(root)
    if problems:
        raise PaygateError(problems[0], status=400)
    return Decoded(envelope, mtype, root, obj=obj)


def build_body(code: str, obj: Any) -> bytes:
    build, _ = _verbs(code)
    return build(obj)


def encode(header: Header, body: bytes, keyring: KeyRing | None, sign: bool = True) -> bytes:
    """Wrap a body in its envelope, signed by the header's sender when `sign`."""
    signature = keyring.sign(header, body) if (sign and keyring is not None) else None
    return Envelope(header, signature, body).encode()
