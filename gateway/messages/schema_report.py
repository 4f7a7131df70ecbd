"""Every schema error of a refused message, for the party that has to correct it.

libxml2 (through lxml) validates every message: it is fast, and it decides whether a
message is valid. Once an element's children are out of order (a required element
missing, an unexpected one), libxml2 stops checking that element's remaining children,
so its refusal names only some of what is wrong, and a bank's integrator corrects one
fault per attempt. When a message is refused for its schema, and its sender is one we
answer in full (the core system's POST /v1/messages, `paygate validate`), the xmlschema
package walks the same tree against the same XSD and lists every error it finds, each
with its element's path, the value seen and what the schema expects there.

The second walk runs only on the refusal path: an accepted message never pays for it.
It is bounded three ways, each a named limit below: a message of more than
`ELEMENTS_MAX` elements keeps libxml2's own list (one hvps.111 has about sixty); at most
`ERRORS_LISTED_MAX` errors are listed; the others are counted, up to
`ERRORS_COUNTED_MAX`, and told as one `more_problems_not_shown` (xmlschema's cost grows
faster than the number of errors, so it is never asked for all of a hostile document's).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import xmlschema
from lxml import etree
from xmlschema.validators import XsdAttributeGroup, facets

from gateway.errors import Problem
from gateway.messages import xml
from gateway.money import AMOUNT_EXPECTED
from message_schemas import catalogue

ELEMENTS_MAX = 5_000  # about 40 ms of xmlschema on a 2-core machine
ERRORS_LISTED_MAX = 50
ERRORS_COUNTED_MAX = 1_000  # about 20 ms of xmlschema; a message with more is not close
_CLARK = re.compile(r"\{[^{}:]*:[^{}]*\}")  # a namespace in {uri}name, not a pattern's {4}
_CHILDREN = xmlschema.XMLSchemaChildrenValidationError  # content out of the schema's order


@lru_cache(maxsize=None)
def _schema(code: str) -> xmlschema.XMLSchema:
    """xmlschema's reading of our XSD for a type, built on the first refusal of that type
    (about 0.15 s) and then kept. Only local files are read (the XSD's includes)."""
    return xmlschema.XMLSchema(catalogue.xsd_path(code), allow="local")


def every_problem(code: str, root: etree._Element, first: list[Problem]) -> list[Problem]:
    """Every schema problem of a document libxml2 refused (`first`, its own list): the
    problems xmlschema finds, in document order, with any of libxml2's at a path none of
    them names; `first` alone when the document is over ELEMENTS_MAX elements or
    xmlschema finds nothing (the two disagree on a regular expression's dialect)."""
    if _element_count(root) > ELEMENTS_MAX:
        return first
    found, counted = [], 0
    for error in _schema(code).iter_errors(root):
        counted += 1
        if counted <= ERRORS_LISTED_MAX:
            found.append(_problem(error))
        if counted >= ERRORS_COUNTED_MAX:
            break
    if not found:
        return first
    found.sort(key=lambda item: item[0])
    listed = [problem for _, problem in found]
    named = {p.path.split("/@")[0] for p in listed}
    listed += [p for p in first if p.path not in named][:ERRORS_LISTED_MAX - len(listed)]
    if counted > len(found):
        listed.append(_not_listed(counted - len(found), counted >= ERRORS_COUNTED_MAX))
    return listed


def _element_count(root: etree._Element) -> int:
    count = 0
    for _ in root.iter():
        count += 1
        if count > ELEMENTS_MAX:
            break
    return count


def _problem(error: Any) -> tuple[int, Problem]:
    """One xmlschema error as our problem, with the source line that orders it."""
    elem = error.elem
    child = error.invalid_child
    if child is not None:  # an element where the schema wants another (or none)
        elem = child
    line = getattr(elem, "sourceline", None) or 0
    path = xml.element_path(elem) if isinstance(elem, etree._Element) else "/"
    reason = _CLARK.sub("", error.reason or error.message)
    if isinstance(error.validator, XsdAttributeGroup) and hasattr(error.obj, "keys"):
        return line, _attribute_problem(error.validator, error.obj, path, reason, line)
    if _is_amount_floor(error.validator):
        # The schema's floor is 0, but an amount of 0 is refused as well
        # (amount_must_be_positive): said as the product's rule, not as "at least 0".
        return line, Problem("schema_violation", path, _value(error, elem), AMOUNT_EXPECTED,
                             f"line {line}: an amount must be more than 0 (0 is refused "
                             "too)")
    return line, Problem("schema_violation", path, _value(error, elem), _expected(error, reason),
                         f"line {line}: {reason}")


def _is_amount_floor(rule: Any) -> bool:
    """Whether the rule that failed is the amount types' lower bound (AmountValue's
    minInclusive 0)."""
    return isinstance(rule, facets.XsdMinInclusiveFacet) \
        and getattr(rule.parent, "local_name", None) == "AmountValue"


def _attribute_problem(group: XsdAttributeGroup, given: Any, path: str,
                       reason: str, line: int) -> Problem:
    """An element's attributes against those its type declares: one it does not declare
    (named in the path) or a required one missing, whichever the error names."""
    allowed = [etree.QName(name).localname for name in group if name]
    unknown = [etree.QName(name).localname for name in given if name not in group]
    missing = [etree.QName(name).localname for name, attribute in group.items()
               if name and attribute.use == "required" and name not in given]
    message = f"line {line}: {reason}"
    for name in unknown:
        if f"'{name}'" in reason:
            return Problem("schema_violation", f"{path}/@{name}", name,
                           ("only the attributes " + ", ".join(allowed)) if allowed
                           else "no attributes", message)
    for name in missing:
        if f"'{name}'" in reason:
            return Problem("schema_violation", f"{path}/@{name}", None,
                           f"the attribute {name}", message)
    return Problem("schema_violation", path, None, reason[:300], message)


def _value(error: Any, elem: Any) -> Any:
    """What the message has there: the unexpected element's name, nothing for content
    that is missing, else the text as written (not xmlschema's decoded number)."""
    if error.invalid_child is not None:
        return etree.QName(error.invalid_child).localname
    if isinstance(error, _CHILDREN) or not isinstance(elem, etree._Element):
        return None
    if isinstance(error.obj, str) and error.obj != (elem.text or ""):
        return error.obj[:200]  # an attribute's value
    return None if len(elem) else (elem.text or "")[:200]


def _expected(error: Any, reason: str) -> str:
    """What the schema wants, in words, from the rule that failed."""
    if isinstance(error, _CHILDREN):
        names = [etree.QName(e.name).localname for e in error.expected or () if e.name]
        if not names:
            return "no further element here"
        return ("the element " if len(names) == 1 else "one of the elements ") + ", ".join(
            names) + " here"
    rule = error.validator
    if isinstance(rule, facets.XsdEnumerationFacets):
        return "one of " + ", ".join(str(v) for v in rule.enumeration)
    if isinstance(rule, facets.XsdPatternFacets):
        return "text matching " + " or ".join(rule.regexps)
    bounds = {facets.XsdLengthFacet: "exactly {} characters",
              facets.XsdMinLengthFacet: "at least {} characters",
              facets.XsdMaxLengthFacet: "at most {} characters",
              facets.XsdTotalDigitsFacet: "at most {} digits",
              facets.XsdFractionDigitsFacet: "at most {} decimals",
              facets.XsdMinInclusiveFacet: "at least {}",
              facets.XsdMaxInclusiveFacet: "at most {}",
              facets.XsdMinExclusiveFacet: "more than {}",
              facets.XsdMaxExclusiveFacet: "less than {}"}
    for kind, text in bounds.items():
        if isinstance(rule, kind):
            return text.format(rule.value)
    name = getattr(rule, "name", None)
    if isinstance(name, str) and name.startswith("{http://www.w3.org/2001/XMLSchema}"):
        return "a valid xs:" + etree.QName(name).localname
    return reason[:300]


def _not_listed(count: int, capped: bool) -> Problem:
    more = f"{count} or more" if capped else str(count)
    return Problem("more_problems_not_shown", "/", count,
                   f"at most {ERRORS_LISTED_MAX} schema errors listed in one answer",
                   f"{more} more schema errors are not listed (counting stops at "
                   f"{ERRORS_COUNTED_MAX}); correct these and send the message again")
