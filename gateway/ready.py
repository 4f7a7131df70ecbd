"""A ready hvps.111 from the core system (POST /v1/messages): its idempotency key, the
message first taken under its MsgId, and its EndToEndId.

- The MsgId is numbered by the message's sender, the instructing direct participant
  (InstgAgt, which must be ours): the key is that participant and the MsgId. The same
  MsgId is one message whatever branch, payer's bank or account it names, and whatever
  core-system client (`api_keys`) sends it: a MsgId one client took is refused to
  another (409), without naming the first client's payment, which the other cannot see.
  The database holds that: `ready_message_ids` has one row per participant and MsgId,
  naming its client, written with the payment (two clients at two gateway processes at
  the same moment: the second waits for the first's row and its work runs again).
- The message first taken under a MsgId is kept field by field (`ready_messages`): the
  same MsgId sent again with any field changed (TxId, CreDtTm, the instructing branch,
  the EndToEndId, the amount, ...) is refused with 409, each changed field named.
- An EndToEndId is carried by one payment in flight or paid at a time, whatever its
  channel. The database holds that: `end_to_end_claims` has one row per EndToEndId of a
  ready message, naming its payment, written with the payment in one transaction (an
  INSERT on a primary key: a second gateway process taking the same id at the same
  moment waits for the first and loses). A claim of a payment rejected, cancelled or
  returned is taken over by the next attempt (a conditional UPDATE, which one of two
  racing attempts wins). A JSON transfer's EndToEndId (numbered by the gateway) is
  claimed too, in its payment's transaction, so that a ready message carrying the same
  id at the same moment cannot take it as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from gateway import jsontext, payments
from gateway.errors import Conflict, Problem
from gateway.intake import same_transfer
from gateway.messages import hvps111
from gateway.money import format_yuan
from gateway.store import Contended

_DOC = "/Document/FIToFICstmrCdtTrf"
_TX = f"{_DOC}/CdtTrfTxInf"
MSG_ID_PATH = f"{_DOC}/GrpHdr/MsgId"
END_TO_END_PATH = f"{_TX}/PmtId/EndToEndId"
# Where each field of hvps111.CreditTransfer is in the message, in the message's order.
PATHS = {
    "created_at": f"{_DOC}/GrpHdr/CreDtTm",
    "end_to_end_id": END_TO_END_PATH,
    "tx_id": f"{_TX}/PmtId/TxId",
    "business_type": f"{_TX}/PmtTpInf/CtgyPurp/Prtry",
    "amount_fen": f"{_TX}/IntrBkSttlmAmt",
    "currency": f"{_TX}/IntrBkSttlmAmt/@Ccy",
    "priority": f"{_TX}/SttlmPrty",
    "charge_bearer": f"{_TX}/ChrgBr",
    "instg_direct": f"{_TX}/InstgAgt/FinInstnId/ClrSysMmbId/MmbId",
    "instg_branch": f"{_TX}/InstgAgt/BrnchId/Id",
    "instd_direct": f"{_TX}/InstdAgt/FinInstnId/ClrSysMmbId/MmbId",
    "instd_branch": f"{_TX}/InstdAgt/BrnchId/Id",
    "debtor_name": f"{_TX}/Dbtr/Nm",
    "debtor_address": f"{_TX}/Dbtr/PstlAdr/AdrLine",
    "debtor_account": f"{_TX}/DbtrAcct/Id/Othr/Id",
    "debtor_agent": f"{_TX}/DbtrAgt/FinInstnId/ClrSysMmbId/MmbId",
    "debtor_agent_name": f"{_TX}/DbtrAgt/FinInstnId/Nm",
    "creditor_agent": f"{_TX}/CdtrAgt/FinInstnId/ClrSysMmbId/MmbId",
    "creditor_agent_name": f"{_TX}/CdtrAgt/FinInstnId/Nm",
    "creditor_name": f"{_TX}/Cdtr/Nm",
    "creditor_address": f"{_TX}/Cdtr/PstlAdr/AdrLine",
    "creditor_account": f"{_TX}/CdtrAcct/Id/Othr/Id",
    "business_kind": f"{_TX}/Purp/Prtry",
    "remittance": f"{_TX}/RmtInf/Ustrd",
}
# Where each field of the JSON transfer a message is read into is in the message: a
# refusal of the transfer names the message's own element.
_FROM_TRANSFER = {
    "/payer_account": PATHS["debtor_account"], "/payer_name": PATHS["debtor_name"],
    "/payer_bank": PATHS["debtor_agent"], "/payee_account": PATHS["creditor_account"],
    "/payee_name": PATHS["creditor_name"], "/payee_bank": PATHS["creditor_agent"],
    "/amount": PATHS["amount_fen"], "/currency": PATHS["currency"],
    "/business_type": PATHS["business_type"], "/business_kind": PATHS["business_kind"],
    "/urgency": PATHS["priority"], "/remittance_info": PATHS["remittance"],
}


def in_message_terms(problems: list[Problem]) -> list[Problem]:
    """Problems of the transfer read from a message, at the message's paths (a
    remittance line N at its Ustrd[N+1]); one problem found both in the message and in
    its transfer is given once."""
    out: dict[tuple[str, str], Problem] = {}
    for p in problems:
        head, _, line = p.path.partition("/remittance_info/")
        if not head and line.isdigit():
            path = f"{PATHS['remittance']}[{int(line) + 1}]"
        else:
            path = _FROM_TRANSFER.get(p.path, p.path)
        out.setdefault((p.code, path), p.at(path))
    return list(out.values())


# States that free a payment's EndToEndId for the payment's next attempt.
FREEING_STATES = ("rejected", "cancelled", "returned")


def key(ct: hvps111.CreditTransfer) -> str:
    """The message's idempotency key: its sender (the instructing direct participant)
    and its MsgId."""
    return f"msg:{ct.instg_direct}:{ct.msg_id}"


def former_key(ct: hvps111.CreditTransfer) -> str:
    """The key messages were stored under before (the payer's bank and the MsgId): a
    message taken then and sent again is still answered as the first time."""
    return f"msg:{ct.debtor_agent}:{ct.msg_id}"


def fields(ct: hvps111.CreditTransfer) -> dict[str, Any]:
    """What is compared when the MsgId comes again: every field but the MsgId."""
    kept = dataclasses.asdict(ct)
    del kept["msg_id"]
    kept["remittance"] = list(ct.remittance)
    return kept


def stored_answer(tx: Any, client: str, ct: hvps111.CreditTransfer, body_hash: str,
                  body: Any = None) -> tuple[int, dict[str, Any]] | None:
    """The first answer to this MsgId, when the message is the one first taken under it;
    None when the MsgId is new. Refused (409) when the MsgId was taken by another
    message, each differing field named. `body` is the transfer read from the message,
    `body_hash` its intake.transfer_sha256."""
    keys = (key(ct), former_key(ct))
    rows = tx.query("SELECT key, body_sha256, status, response FROM idempotency "
                    "WHERE client = ? AND key IN (?, ?)", (client, *keys))
    if not rows:
        if tx.query_one("SELECT 1 FROM ready_messages WHERE key = ? AND client <> ? "
                        "LIMIT 1", (key(ct), client)) is not None:
            raise Conflict(Problem(
                "idempotency_key_reused_with_other_body", MSG_ID_PATH, ct.msg_id,
                "a MsgId no message of this participant carries yet",
                f"MsgId {ct.msg_id} of participant {ct.instg_direct} already taken by a "
                "message another core-system client sent; a new payment needs a new "
                "MsgId"))
        return None
    taken_key, first_hash, status, response = min(rows, key=lambda r: keys.index(r[0]))
    answer = payments.answer_of(tx, response)
    taken = tx.query_one("SELECT fields FROM ready_messages WHERE client = ? AND key = ?",
                         (client, taken_key))
    payment = answer.get("id")
    if taken is not None:
        first = orjson.loads(taken[0])
        now = fields(ct)
        problems = [_taken(ct, payment, path, now.get(name), first.get(name))
                    for name, path in PATHS.items() if now.get(name) != first.get(name)]
    else:  # taken before its fields were kept: its EndToEndId is in the answer
        first_e2e = (answer.get("message") or {}).get("end_to_end_id")
        problems = [] if first_e2e in (None, ct.end_to_end_id) else [
            _taken(ct, payment, END_TO_END_PATH, ct.end_to_end_id, first_e2e)]
    if not problems and not same_transfer(first_hash, body_hash, body):
        problems = [Problem("idempotency_key_reused_with_other_body", MSG_ID_PATH,
                            ct.msg_id, "a new MsgId for a new payment",
                            f"MsgId {ct.msg_id} already taken for payment {payment} by "
                            "a message with other content; a new payment needs a new "
                            "MsgId")]
    if problems:
        raise Conflict(problems)
    return status, answer


def _taken(ct: hvps111.CreditTransfer, payment: Any, path: str, value: Any, first: Any
           ) -> Problem:
    field_name = path.rsplit("/", 1)[1]
    if path == PATHS["amount_fen"]:  # as the messages write it, in yuan
        value, first = (format_yuan(v) if isinstance(v, int) else v for v in (value, first))
    return Problem("idempotency_key_reused_with_other_body", path, value,
                   f"{first}, as in the first message with this MsgId",
                   f"MsgId {ct.msg_id} already taken for payment {payment} with "
                   f"{field_name} {first}; a new payment needs a new MsgId")


def record(tx: Any, client: str, ct: hvps111.CreditTransfer, payment_id: str) -> None:
    """Keep the message first taken under its MsgId (with its payment, in its
    transaction), the MsgId taken for its client, and what its payment `payment_id`
    carries of it (`ready_payments`: the core's MsgId and TxId, `carried`). Another
    client's message under the same MsgId at another gateway process at the same moment
    waits for this transaction's row; when this one commits, that work runs again
    (`Contended`) and is refused as a MsgId taken (`stored_answer`), or answered as this
    one if it is the same client's."""
    if tx.execute("INSERT INTO ready_message_ids (key, client) VALUES (?, ?) "
                  "ON CONFLICT (key) DO NOTHING", (key(ct), client)) != 1:
        raise Contended(f"MsgId {ct.msg_id} of {ct.instg_direct} taken meanwhile")
    tx.execute("INSERT INTO ready_messages (client, key, fields) VALUES (?, ?, ?)",
               (client, key(ct), jsontext.dumps(fields(ct))))
    tx.execute("INSERT INTO ready_payments (payment_id, msg_id, tx_id, carried) "
               "VALUES (?, ?, ?, ?)",
               (payment_id, ct.msg_id, ct.tx_id, jsontext.dumps(carried(ct))))


# What a ready hvps.111 says that its payment's row does not keep, carried on into the
# hvps.111 the gateway sends for it (gateway.outbound.credit_transfer_of), each only
# when the message gave it: the payer's and payee's banks' names (DbtrAgt/FinInstnId/Nm,
# CdtrAgt/FinInstnId/Nm), the payer's and payee's address lines (PstlAdr/AdrLine) and
# the charge bearer (ChrgBr; DEBT when the gateway writes the message itself).
CARRIED = ("debtor_agent_name", "creditor_agent_name", "debtor_address",
           "creditor_address", "charge_bearer")


def carried(ct: hvps111.CreditTransfer) -> dict[str, str]:
    """The CARRIED fields the message gave."""
    return {name: getattr(ct, name) for name in CARRIED if getattr(ct, name) is not None}


def carried_of(tx: Any, payment_id: str) -> dict[str, str] | None:
    """What the ready message of payment `payment_id` carries into its hvps.111; None
    for a payment that came as JSON."""
    row = tx.query_one("SELECT carried FROM ready_payments WHERE payment_id = ?",
                       (payment_id,))
    return orjson.loads(row[0]) if row is not None else None


def core_ids(ct: hvps111.CreditTransfer) -> dict[str, str]:
    """The core system's own ids of a ready message, as a payment's view shows them
    beside the MsgId (= TxId) the gateway numbered and sent: its `message` member gets
    `core_msg_id` and `core_tx_id`."""
    return {"core_msg_id": ct.msg_id, "core_tx_id": ct.tx_id}


def with_core_ids(view: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """`view` with `ids` (`core_ids`) in its `message` member."""
    return {**view, "message": {**view["message"], **ids}}


def show_core_ids(tx: Any, view: dict[str, Any], client: str | None = None) -> None:
    """A view hook (GET /v1/transfers/{id}): an outgoing payment that came as a ready
    message shows the core system's MsgId and TxId beside those sent."""
    if view.get("direction") != "out":
        return
    row = tx.query_one("SELECT msg_id, tx_id FROM ready_payments WHERE payment_id = ?",
                       (view["id"],))
    if row is not None:
        view["message"] = {**view["message"], "core_msg_id": row[0], "core_tx_id": row[1]}


def claim_end_to_end(tx: Any, end_to_end_id: str, payment_id: str, client: str) -> None:
    """Claim a ready message's EndToEndId for its new payment `payment_id`, whatever its
    channel (a normal-priority hvps.111 within the BEPS limit goes by BEPS, one between
    branches of ours is a book transfer): refused (409 `end_to_end_id_in_use`) while a
    payment in flight or paid carries it, named only to the `client` that submitted it.
    A second gateway process claiming the same id at the same moment waits for this
    transaction, then loses (a unique key taken: its work runs again and is refused)."""
    held = _claim_of(tx, end_to_end_id)
    if held is None:
        _refuse_carried(tx, end_to_end_id, client)
        tx.execute("INSERT INTO end_to_end_claims (end_to_end_id, payment_id) VALUES (?, ?)",
                   (end_to_end_id, payment_id))
        return
    holder, state, owner = held
    if state not in FREEING_STATES:
        raise _in_use(end_to_end_id, holder, state, owner in (None, client))
    # The payment that held it failed: this attempt takes it over, unless another one
    # took it first (it then waits for that one's row and changes nothing).
    if tx.execute("UPDATE end_to_end_claims SET payment_id = ? "
                  "WHERE end_to_end_id = ? AND payment_id = ?",
                  (payment_id, end_to_end_id, holder)) != 1:
        taker, state, owner = _claim_of(tx, end_to_end_id) or held
        raise _in_use(end_to_end_id, taker, state, owner in (None, client))


# Letters added to an EndToEndId the gateway numbers itself when a ready message took it
# first (I and O left out, as they read like digits).
_OWN_ID_SUFFIXES = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def own_end_to_end_ids(tx: Any, rows: list[dict[str, Any]]) -> None:
    """EndToEndIds the gateway numbers itself (a JSON transfer's: the payer's bank, the
    date and a sequence) kept clear of those a core system gave ready messages: a core
    system numbering the same way may have claimed the one the sequence reaches now. Such
    a row's id gets a letter added, the first variant no claim holds (the id stays within
    35 characters). One read for all the rows; `claim_own_end_to_end_ids` claims them
    once their payments are taken."""
    if not rows:
        return
    claimed: set[str] = set()
    ids = [row["end_to_end_id"] for row in rows]
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        claimed.update(r[0] for r in tx.query(
            "SELECT end_to_end_id FROM end_to_end_claims WHERE end_to_end_id IN "
            f"({', '.join('?' * len(part))})", tuple(part)))
    for row in rows:
        generated = row["end_to_end_id"]
        if generated not in claimed:
            continue
        for letter in _OWN_ID_SUFFIXES:
            if _claim_of(tx, generated + letter) is None:
                row["end_to_end_id"] = generated + letter
                break
        else:
            raise RuntimeError(f"every variant of EndToEndId {generated} is claimed")


def claim_own_end_to_end_ids(tx: Any, rows: list[dict[str, Any]]) -> None:
    """Claim the ids `own_end_to_end_ids` gave, for the payments taken (each row's
    `id`), in one statement of their transaction: a ready message taking the same id at
    another gateway process at the same moment waits for these rows and loses (or, if it
    came first, this statement waits and loses, and run again the row gets a letter)."""
    tx.insert_rows("INSERT INTO end_to_end_claims (end_to_end_id, payment_id) VALUES",
                   [(row["end_to_end_id"], row["id"]) for row in rows])


_CLAIM_IF_FREE = ("INSERT INTO end_to_end_claims (end_to_end_id, payment_id) VALUES (?, ?) "
                  "ON CONFLICT (end_to_end_id) DO NOTHING RETURNING end_to_end_id")


def claim_own_end_to_end_id(tx: Any, payment_id: str, generated: str) -> str:
    """`own_end_to_end_ids` and `claim_own_end_to_end_ids` for one payment: the id it
    goes out with, claimed. The id the sequence reached is claimed by one statement that
    leaves a claim already held as it is (nearly always there is none); only then is a
    letter added, as for a batch. Another gateway process claiming the same id at the
    same moment makes the statement wait for its commit, after which the id is either
    held (a letter is added) or free (it is claimed here)."""
    if tx.query_one(_CLAIM_IF_FREE, (generated, payment_id)) is not None:
        return generated
    row = {"id": payment_id, "end_to_end_id": generated}
    own_end_to_end_ids(tx, [row])
    claim_own_end_to_end_ids(tx, [row])
    return row["end_to_end_id"]


def _claim_of(tx: Any, end_to_end_id: str
              ) -> tuple[str, str | None, str | None] | None:
    """(payment, its state, the client that submitted it) holding the claim on an
    EndToEndId; None when unclaimed."""
    row = tx.query_one("SELECT c.payment_id, p.state, p.client FROM end_to_end_claims c "
                       "LEFT JOIN payments p ON p.id = c.payment_id "
                       "WHERE c.end_to_end_id = ?", (end_to_end_id,))
    return None if row is None else (row[0], row[1], row[2])


def _refuse_carried(tx: Any, end_to_end_id: str, client: str) -> None:
    """An EndToEndId never claimed may still be carried by an outgoing HVPS payment in
    flight or paid: one taken as a JSON transfer (its id given by the gateway), or as a
    ready message before claims were kept."""
    taken = tx.query_one(
        "SELECT id, state, client FROM payments WHERE direction = 'out' AND "
        "channel = 'hvps' AND end_to_end_id = ? AND "
        "state NOT IN ('rejected', 'cancelled', 'returned') LIMIT 1", (end_to_end_id,))
    if taken is not None:
        raise _in_use(end_to_end_id, taken[0], taken[1], taken[2] in (None, client))


def _in_use(end_to_end_id: str, payment: str, state: str | None, shown: bool
            ) -> Conflict:
    """The refusal of an EndToEndId carried by `payment`; a payment another client
    submitted (`shown` false) is told of without its id or state."""
    held_by = f"payment {payment} ({state or 'being taken'})" if shown else \
        "a payment another core-system client submitted"
    return Conflict(Problem(
        "end_to_end_id_in_use", END_TO_END_PATH, end_to_end_id,
        "an EndToEndId that no payment of ours in flight or paid carries",
        f"{held_by} already carries EndToEndId {end_to_end_id}; this message would pay "
        "it a second time"))
