"""Exceptions to the straight path of a payment (CONTRACT.md §4, issue 12).

- Returns (退汇): an incoming payment is sent back as an hvps.111 of business type A105;
  a peer's A105 returning one of ours moves ours to `returned` and credits the payer
  (returns.py). Suspense items are returned automatically after a number of working days
  unless an operator keeps them (suspense.py), or applied by an operator to the account
  they belong to, a supervisor approving (write_off.py). Our BEPS debit's money in
  suspense is applied to our customer the same way, or returned to the payer bank as a
  beps.121 A105 (debit_suspense.py).
- Cancellation of a payment queued at the NPC: ccms.307 → ccms.308 (cancels.py).
- Unknown outcomes: no result in time → `unknown` and a status query, ccms.316 →
  ccms.317, acted on as the NPC states it (status.py, outcomes.py).

`install(gw)` is the gateway's extension hook (gateway.app.EXTENSIONS); docs/exceptions.md
describes the flows, the API, the operators' actions and the ledger postings.
"""

from __future__ import annotations

from typing import Any

from gateway.exceptions.extension import Exceptions


def install(gw: Any) -> Exceptions:
    return Exceptions(gw)
