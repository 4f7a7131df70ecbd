"""Amounts in Chinese capital numerals (大写金额), as vouchers and receipts print them.

Rules (the PBOC's rules for writing amounts on payment documents):

- the prefix 人民币 with no gap before the amount;
- digits 零壹贰叁肆伍陆柒捌玖, units 拾佰仟 within a group of four, 万 and 亿 for the groups;
- a ten at the head of a group is written 壹拾 (壹拾陆元, never 拾陆元);
- one 零 stands for any run of zeros inside the amount (壹仟零壹元), including a run that
  crosses a group boundary (壹亿零伍元); zeros at the end of a group are not written;
- when the 角 digit is zero and the 分 digit is not, 零 follows 元 (叁佰元零肆分);
- 整 follows an amount that ends at 元 or 角, never one that ends at 分.
"""

from __future__ import annotations

DIGITS = "零壹贰叁肆伍陆柒捌玖"
_UNITS = ("", "拾", "佰", "仟")
_WAN = 10_000
_YI = 100_000_000


def amount_in_capitals(fen: int) -> str:
    """`fen` (a non-negative integer) in capitals: 1023450 -> 人民币壹万零贰佰叁拾肆元伍角整."""
    assert type(fen) is int and fen >= 0, "an amount in capitals is a non-negative int of fen"
    yuan, jiao, fen_digit = fen // 100, fen // 10 % 10, fen % 10
    text = _integer(yuan) + "元" if yuan else ""
    if jiao:
        text += DIGITS[jiao] + "角"
    elif fen_digit and yuan:
        text += "零"
    if fen_digit:
        text += DIGITS[fen_digit] + "分"
    if not fen_digit:
        text = (text or "零元") + "整"
    return "人民币" + text


def _integer(value: int) -> str:
    """A positive integer in capitals, with 亿 and 万 groups and the zero rules."""
    if value >= _YI:
        return _joined(_integer(value // _YI) + "亿", value % _YI, _YI)
    if value >= _WAN:
        return _joined(_group(value // _WAN) + "万", value % _WAN, _WAN)
    return _group(value)


def _joined(head: str, rest: int, scale: int) -> str:
    """`head` followed by the lower part `rest` (< scale), with 零 when it starts short."""
    if rest == 0:
        return head
    starts_with_zero = rest < scale // 10
    return head + ("零" if starts_with_zero else "") + _integer(rest)


def _group(value: int) -> str:
    """1 to 9999 in capitals: 1010 -> 壹仟零壹拾, 10 -> 壹拾."""
    assert 0 < value < _WAN
    digits = f"{value:04d}".lstrip("0")
    text, zero_pending = "", False
    for index, ch in enumerate(digits):
        digit, unit = int(ch), _UNITS[len(digits) - 1 - index]
        if digit == 0:
            zero_pending = True
            continue
        if zero_pending:
            text += "零"
            zero_pending = False
        text += DIGITS[digit] + unit
    return text
