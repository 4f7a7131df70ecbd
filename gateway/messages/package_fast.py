"""Reading a uniform BEPS package in a few C-level passes instead of element by element.

Mapping a package transaction by transaction costs about ten microseconds each in
Python, mostly in creating lxml element proxies, which is as much as parsing and
validating the document. Most packages are uniform: every transaction has the same
optional elements (all have a remark, none has an address...). For those, the texts of
all transactions come out of one XPath call in document order, and each transaction's
fields are a fixed slice of that list.

The fast path is exact or not taken. It needs a schema-valid document (every leaf then
holds at least one text node), counts each optional element (none or all), refuses any
additional-information block, and checks that the number of text nodes is exactly the
header's plus the transactions' expected ones: a leaf split into several text nodes
(by a comment or a CDATA section) makes the count larger, and the caller then reads the
package element by element.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter
from typing import Any, Callable

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import amount_from_xml, record_maker, usual_amount

_ALL_TEXT = etree.XPath("//text()", smart_strings=False)
_ALL_CCY = etree.XPath("//@Ccy", smart_strings=False)

# Optional parts of a transaction, as paths under the transaction element. An empty
# PstlAdr holds no text, so only the address line decides the layout of the texts.
_OPTIONAL = {
    "agreement": "n:AgrmtNb",
    "debtor_address": "n:Dbtr/n:PstlAdr/n:AdrLine",
    "debtor_issuer": "n:DbtrAcct/n:Id/n:Othr/n:Issr",
    "creditor_address": "n:Cdtr/n:PstlAdr/n:AdrLine",
    "creditor_issuer": "n:CdtrAcct/n:Id/n:Othr/n:Issr",
    "remark": "n:AddtlInf",
}
# The texts of one transaction in document order; None marks the optional ones that
# depend on the flag named next to them.
_ORDER = (("tx_id", None), ("agreement", "agreement"), ("debtor_name", None),
          ("debtor_address", "debtor_address"), ("debtor_account", None),
          ("debtor_account_bank", "debtor_issuer"), ("debtor_bank", None),
          ("creditor_bank", None), ("creditor_name", None),
          ("creditor_address", "creditor_address"), ("creditor_account", None),
          ("creditor_account_bank", "creditor_issuer"), ("amount", None),
          ("business_type", None), ("business_kind", None), ("remark", "remark"))


# package.Transfer's fields in declaration order; `extra` is always None here.
_FIELDS = ("tx_id", "debtor_name", "debtor_account", "debtor_account_bank", "debtor_bank",
           "creditor_bank", "creditor_name", "creditor_account", "creditor_account_bank",
           "amount_fen", "business_type", "business_kind", "remark", "extra",
           "debtor_address", "creditor_address", "agreement", "currency")


@lru_cache(maxsize=16)
def _queries(ns: str, root: str, detail: str, extra: str | None,
             optional: tuple[str, ...]) -> dict[str, etree.XPath]:
    base = f"/n:Document/n:{root}/n:{detail}"
    names = {"n": ns}
    out = {key: etree.XPath(f"count({base}/{_OPTIONAL[key]})", namespaces=names)
           for key in optional}
    out["details"] = etree.XPath(f"count({base})", namespaces=names)
    out["extra"] = etree.XPath(f"count({base}/n:{extra})" if extra else "0",
                               namespaces=names)
    out["head"] = etree.XPath(
        f"count(/n:Document/n:{root}/*[not(self::n:{detail})]/descendant::text())",
        namespaces=names)
    return out


def _flags(layout: Any, root: etree._Element, n: int) -> dict[str, bool] | None:
    """Which optional texts every transaction has; None when some have and some not."""
    fixed = {"agreement": False} if not layout.agreement else {}
    if layout.issuer_required:
        fixed.update(debtor_issuer=True, creditor_issuer=True)
    optional = tuple(key for key in _OPTIONAL if key not in fixed)
    q = _queries(layout.namespace, layout.root, layout.detail, layout.extra, optional)
    if n == 0 or n != int(q["details"](root)) or q["extra"](root):
        return None
    flags = dict(fixed)
    for key in optional:
        count = int(q[key](root))
        if count not in (0, n):
            return None
        flags[key] = count == n
    return flags


def read_uniform(layout: Any, root: etree._Element, problems: list[Problem],
                 make: Callable[..., Any], n: int) -> list[Any] | None:
    """The `n` transactions of a uniform package built with `make` (package.Transfer),
    or None when the package is not uniform. `layout` is a package.Layout."""
    flags = _flags(layout, root, n)
    if flags is None:
        return None
    names = [name for name, flag in _ORDER if flag is None or flags[flag]]
    width = len(names)
    texts = _ALL_TEXT(root)
    head = int(_queries(layout.namespace, layout.root, layout.detail, layout.extra,
                        ())["head"](root))
    currencies = _ALL_CCY(root)
    if len(texts) != head + n * width or len(currencies) != n + 1:
        return None
    # Each transaction's texts, followed by three computed values, are picked into the
    # order of Transfer's fields by one itemgetter call.
    slots = {name: i for i, name in enumerate(names)}
    slots.update(_none=width, currency=width + 1, amount_fen=width + 2)
    pick = itemgetter(*(slots.get(field, width) for field in _FIELDS))
    amount_at = slots["amount"]
    build = record_maker(make, _FIELDS)
    transfers = []
    for i in range(n):
        start = head + i * width
        row = list(map(str.strip, texts[start:start + width]))
        amount_fen = usual_amount(row[amount_at])
        if amount_fen is None:
            amount_fen = amount_from_xml(row[amount_at], layout.tx_path(i + 1, "Amt"),
                                         problems)
        row += (None, currencies[i + 1], amount_fen)
        transfers.append(build(pick(row)))
    return transfers
