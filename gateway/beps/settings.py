"""BEPS settings: package limits, the debit receipt deadline, batch bounds.

Each value is read from the gateway's settings object as `beps_<name>` (the TOML file
or a `PAYGATE_BEPS_<NAME>` variable sets it); a settings object without one gets the
default here. docs/beps.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class BepsSettings:
    # A package is sealed at this many transactions; 1000 keeps a beps.121 near 1 MB,
    # well inside the envelope bound, and is the figure the issue names.
    package_size_max: int = 1000
    # ... or when its oldest transaction has waited this long (business seconds).
    package_age_max_s: float = 5.0
    # How often the packer looks for packages that are due (real seconds).
    seal_check_s: float = 0.5
    # PKGRtrLtd of our beps.127: days the payer bank has for its beps.128 receipt.
    debit_return_days: int = 3
    # How often overdue debit receipts are looked for (real seconds).
    deadline_check_s: float = 30.0
    # A debit another bank sends us that the screening holds waits for operators until
    # this long before its package's return deadline (business seconds); then it is
    # refused (RJ08), so that our receipt still reaches the collector in time.
    debit_review_margin_s: float = 3600.0
    # Transfers in one POST /v1/transfers/batch; a longer list is several requests.
    batch_items_max: int = 1000
    # A netting date is complete, and reconciled with the NPC (beps.720), this long after
    # its last round closed at midnight: time for that round's notices to reach us
    # (business seconds).
    recon_delay_s: float = 900.0
    # Netting dates asked for in one pass (the oldest first); the rest wait for the next.
    recon_dates_per_pass: int = 10
    # A beps.720 delivered without a beps.721 this long after is asked again (business
    # seconds), up to netting_dates.ASKS_MAX times.
    recon_retry_s: float = 900.0
    # The NPC's netting interval (the gateway's `beps_netting_interval_min`, which
    # `serve --simulate` gives the simulated NPC) and the margin after two of them at
    # which a package of ours not netted yet is overdue (not_netted.py, business seconds).
    netting_interval_min: int = 30
    not_netted_margin_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Any) -> BepsSettings:
        values = {f.name: getattr(settings, f"beps_{f.name}", f.default) for f in fields(cls)}
        return cls(**values)
