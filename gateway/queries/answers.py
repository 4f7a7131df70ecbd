"""Finding the payment a query is about, and answering it from our own records.

A query names its payment by the original message (OrgnlGrpHdr: MsgId, the sending
bank, the message type) and, for a payment inside a BEPS package, the transaction
(OrgnlTx/OrgnlTxId). The sending bank may be named by its direct participant or by the
branch, so both are tried.

An HVPS payment is its own message: its MsgId is the payment's. A BEPS payment is one
transaction of a package (beps.121, beps.122, beps.125, beps.127): the original message
is the package, whose MsgId is not the transaction's own number, so the payment is found
among the package's transactions, by its TxId (without one, only in a package of one).
A query naming a BEPS transaction's TxId as the message's MsgId names no message that
was on the wire, and finds nothing.

The gateway answers by itself only what its records settle beyond doubt: the payment is
ours, its amount agrees, it has reached a state that will not change by itself, and the
question is of a kind the policy lets it answer. Everything else goes to an operator,
with the reason (`handling`) kept on the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway import payments
from gateway.money import format_yuan_grouped
from gateway.queries.policy import QUERY_TYPE_DEFAULT, QueryPolicy

CONTENT_LEN_MAX = 256  # Cntt is Max256Text in both ccms.314 and ccms.315

# Why an incoming payment waits in suspense (ledger.incoming's reasons), in the words a
# teller writes to the other bank: a code of ours never goes out in an answer.
SUSPENSE_WORDS = {"account_not_found": "收款人账号不存在",
                  "account_closed": "收款人账户已销户",
                  "name_mismatch": "收款人户名与账号不符",
                  "branch_mismatch": "收款人开户行与收款行不符"}
SUSPENSE_WORDS_OTHERWISE = "收款人账户信息不符"
# A state our answer has no sentence of its own for (an incoming debit netted, say), in
# words, not its name in the API.
STATE_WORDS = {"settled": "已清算", "netted": "已轧差", "rejected": "已拒绝",
               "cancelled": "已撤销", "returned": "已退回", "credited": "已入账",
               "suspense": "暂挂待处理"}
# A reason holding one of the gateway's codes (snake_case: `name_too_long_for_beps`) is
# not said to another bank; one in words (the NPC's RjctInf) is.
_OUR_CODE = re.compile(r"[A-Za-z0-9]+_[A-Za-z0-9_]+")

AUTO = "auto"
# States from which the records answer a query for good (CONTRACT.md §5).
SETTLED_STATES = frozenset({"settled", "netted", "rejected", "cancelled", "returned",
                            "credited", "suspense"})


@dataclass(frozen=True)
class Subject:
    """The payment a query is about, as the query names it."""

    msg_id: str
    sending_bank: str
    message_type: str
    tx_id: str | None = None
    business_type: str = "A100"  # OrgnlTxTpCd when the caller does not say


BEPS_PREFIX = "beps."
# A BEPS transaction in the package that carried it: the package's sender is named by
# its direct participant, or by the sending side's branch (a debit is sent by the
# creditor's bank, a credit by the payer's).
_BEPS_ITEMS = (
    "SELECT p.id FROM beps_packages k JOIN beps_items i ON i.package_id = k.id "
    "JOIN payments p ON p.id = i.payment_id WHERE k.msg_id = ? AND k.msg_type = ? "
    "AND (k.sender = ? OR (CASE WHEN i.kind IN ('debit_out', 'debit_in') "
    "THEN p.payee_bank ELSE p.payer_bank END) = ?)")


def find_payment(tx: Any, s: Subject) -> dict[str, Any] | None:
    """Our payment named by `s`; None when there is none, or more than one."""
    if s.message_type.startswith(BEPS_PREFIX):
        sql, column = _BEPS_ITEMS, "p.tx_id"
    else:
        sql, column = ("SELECT id FROM payments WHERE msg_id = ? AND msg_type = ? "
                       "AND (sender_direct = ? OR payer_bank = ?)"), "tx_id"
    params: list[Any] = [s.msg_id, s.message_type, s.sending_bank, s.sending_bank]
    if s.tx_id:
        sql += f" AND {column} = ?"
        params.append(s.tx_id)
    rows = tx.query(sql + " ORDER BY 1 LIMIT 2", tuple(params))
    if len(rows) != 1:
        return None
    return payments.get(tx, rows[0][0])


def decide(policy: QueryPolicy, query_type: str | None, content: str, amount_fen: int,
           payment: dict[str, Any] | None) -> str:
    """`auto` when the gateway may answer at once, else why an operator must."""
    if not policy.auto_answer:
        return "auto_answer_off"
    if payment is None:
        return "payment_not_found"
    if (query_type or QUERY_TYPE_DEFAULT) not in policy.auto_answer_types:
        return "query_type_not_auto_answered"
    if any(word in content for word in policy.operator_keywords):
        return "question_needs_judgement"
    if not any(word in content for word in policy.auto_answer_keywords):
        return "question_not_recognised"
    if amount_fen != payment["amount_fen"]:
        return "amount_differs"
    if payment["state"] not in SETTLED_STATES:
        return "payment_not_final"
    return AUTO


def answer_text(tx: Any, payment: dict[str, Any]) -> str:
    """The reply our records give about `payment`, in the words a teller would use."""
    amount = format_yuan_grouped(payment["amount_fen"])
    at = _state_time(tx, payment)
    state = payment["state"]
    reason = (payment.get("reason") or "")[:60]
    refused = f"被拒绝：{reason}" if reason and not _OUR_CODE.search(reason) else "被拒绝"
    if payment["direction"] == "in":
        why = SUSPENSE_WORDS.get(reason, SUSPENSE_WORDS_OTHERWISE)
        texts = {
            "credited": f"该笔款项人民币{amount}元已于{at}入收款人账户。",
            "suspense": (f"该笔款项人民币{amount}元因{why}于{at}暂挂"
                         f"我行待处理，待销账序号{payment.get('pending_no') or ''}，"
                         "请核实收款人账号户名后回复。"),
            "returned": f"该笔款项人民币{amount}元已于{at}退回贵行。",
        }
    else:
        texts = {
            "settled": f"我行该笔付款人民币{amount}元已于{at}清算成功。",
            "netted": f"我行该笔付款人民币{amount}元已于{at}轧差，具有最终性。",
            "rejected": f"我行该笔付款人民币{amount}元未成功（{refused}），款项未划出。",
            "cancelled": f"我行该笔付款人民币{amount}元已于{at}撤销，款项未划出。",
            "returned": f"我行该笔付款人民币{amount}元已于{at}被退回。",
        }
    text = texts.get(state, f"该笔款项人民币{amount}元当前状态："
                            f"{STATE_WORDS.get(state, '处理中')}。")
    return text[:CONTENT_LEN_MAX]


def _state_time(tx: Any, payment: dict[str, Any]) -> str:
    """When the payment reached its current state, as YYYY-MM-DD HH:MM."""
    at = payments.reached_at(tx, payment["id"], payment["state"]) or payment["updated_at"]
    return at[:16].replace("T", " ")
