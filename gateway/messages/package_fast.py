"""Reading a uniform BEPS package in a few C-level passes instead of element by element.

Reading a package transaction by transaction costs about eight microseconds each in
Python, mostly in creating lxml element proxies: as much as parsing and validating the
document. Most packages are uniform: every transaction has the same optional elements
(all have a remark, none has an address...). For those, the texts of all transactions
come out of one XPath call in document order, and each field is a column of that list:
every `width`-th text from its place in the first transaction. Columns are stripped,
amounts turned into fen and records built by C-level loops (`map`, `zip`, slices), so
that no Python code runs once per text and little once per transaction.

The fast path is exact or not taken. It reads a schema-valid document, whose elements
come in the schema's order (package.parse_transfer's reading by position relies on
the same). Whether a package is uniform is told by counting each optional element, in
a walk of the tree in C (n of them in n transactions, or none); it refuses any
additional-information block. Every leaf of a valid transaction holds at least one
text node (the schema wants a character in each; tests/test_package_fast.py checks
it), so the number of text nodes must be exactly the header's plus the transactions'
expected ones: a leaf split into several text nodes (by a comment a parser kept, say)
or white space kept inside an element that holds elements makes the count larger, and
the caller then reads the package element by element. The same test file holds both
readings to the same result.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Any, Callable, Iterable, Sequence

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import amounts_from_xml

_ALL_TEXT = etree.XPath("//text()", smart_strings=False)
_TEXT_COUNT = etree.XPath("count(descendant::text())")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_CURRENCY = methodcaller("get", "Ccy", "")

# Places of a transaction's children in the schema's order (TxId Dbtr DbtrAcct DbtrAgt
# CdtrAgt Cdtr CdtrAcct Amt PmtTpInf Purp), one further on after an AgrmtNb, which
# comes right after TxId.
_DEBTOR, _DEBTOR_ACCOUNT, _AMOUNT = 1, 2, 7

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

_MIXED = object()


def _same(values: Iterable[Any]) -> Any:
    """The one value all of `values` share, or _MIXED."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else _MIXED


def _count(el: etree._Element, tag: str) -> int:
    """How many elements named `tag` are under `el`: one walk of the tree in C, with a
    Python object made only for each match."""
    return sum(1 for _ in el.iter(tag))


@lru_cache(maxsize=64)
def _names(flags: tuple[tuple[str, bool], ...]) -> tuple[str, ...]:
    """The fields whose texts a transaction holds, in document order."""
    present = dict(flags)
    return tuple(name for name, flag in _ORDER if flag is None or present[flag])


def _flags(layout: Any, doc: etree._Element, txs: list[etree._Element]) -> dict[str, bool] | None:
    """Which optional texts every transaction has; None when some have and some not,
    or when a transaction carries an additional-information block.

    Once there is no such block, AgrmtNb and AddtlInf occur only as children of a
    transaction, at most once each: n of them (one in each of the n transactions) or
    none is uniform. AdrLine and Issr occur once at most on each side (payer, payee):
    2n or none is uniform, and n is when every payer or no payer has one, which the
    payers' elements tell.
    """
    ns, n = layout.namespace, len(txs)
    if layout.extra is not None and _count(doc, f"{{{ns}}}{layout.extra}"):
        return None
    flags = {}
    for key, name, possible in (("agreement", "AgrmtNb", layout.agreement),
                                ("remark", "AddtlInf", True)):
        count = _count(doc, f"{{{ns}}}{name}") if possible else 0
        if count not in (0, n):
            return None
        flags[key] = count == n
    at = int(flags["agreement"])
    pairs: list[tuple[str, str, Callable[[], bool | None]]] = [
        ("address", "AdrLine", lambda: _addresses(list(map(itemgetter(_DEBTOR + at), txs))))]
    if layout.issuer_required:
        flags.update(debtor_issuer=True, creditor_issuer=True)
    else:
        pairs.append(("issuer", "Issr",
                      lambda: _issuers(list(map(itemgetter(_DEBTOR_ACCOUNT + at), txs)))))
    for key, name, every_payer in pairs:
        count = _count(doc, f"{{{ns}}}{name}")
        if count in (0, 2 * n):
            payer = payee = count > 0
        elif count == n and (every := every_payer()) is not None:
            payer, payee = every, not every
        else:
            return None
        flags[f"debtor_{key}"], flags[f"creditor_{key}"] = payer, payee
    return flags


def _addresses(parties: list[etree._Element]) -> bool | None:
    """Whether every party (Dbtr or Cdtr: Nm, then PstlAdr holding at most an AdrLine)
    has an address line; None when some have and some not."""
    size = _same(map(len, parties))
    if size == 1:
        return False
    if size != 2:
        return None
    lines = _same(map(len, map(_SECOND, parties)))
    return None if lines is _MIXED else lines == 1


def _issuers(accounts: list[etree._Element]) -> bool | None:
    """Whether every account (Acct/Id/Othr: Id, then Issr when the bank is named)
    names its bank; None when some do and some not."""
    size = _same(map(len, map(_FIRST, map(_FIRST, accounts))))
    return None if size not in (1, 2) else size == 2


def read_uniform(layout: Any, root: etree._Element, head: Sequence[etree._Element],
                 txs: list[etree._Element], problems: list[Problem],
                 build: Callable[[Iterable[tuple[Any, ...]]], list[Any]]) -> list[Any] | None:
    """The transactions `txs` of a uniform package, made by `build` from rows of
    package.Transfer's fields, or None when the package is not uniform. `layout` is a
    package.Layout; `head` the elements before the first transaction (PKGGrpHdr...)."""
    flags = _flags(layout, txs[0].getparent(), txs) if txs else None
    if flags is None:
        return None
    names = _names(tuple(sorted(flags.items())))
    width, n = len(names), len(txs)
    texts = _ALL_TEXT(root)
    start = sum(int(_TEXT_COUNT(el)) for el in head)
    if len(texts) != start + n * width:
        return None
    # The whole tail of the list is stripped at once; then every field is a slice.
    values = list(map(str.strip, texts[start:]))
    columns = {name: values[at::width] for at, name in enumerate(names)}
    columns["amount_fen"] = amounts_from_xml(columns.pop("amount"),
                                             lambda i: layout.tx_path(i + 1, "Amt"), problems)
    amounts = map(itemgetter(_AMOUNT + flags["agreement"]), txs)
    columns["currency"] = list(map(_CURRENCY, amounts))
    return build(zip(*[columns[field] if field in columns else repeat(None)
                       for field in _FIELDS]))
