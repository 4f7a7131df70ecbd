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
    # Transfers in one POST /v1/transfers/batch; a longer list is several requests.
    batch_items_max: int = 1000

    @classmethod
    def from_settings(cls, settings: Any) -> BepsSettings:
        values = {f.name: getattr(settings, f"beps_{f.name}", f.default) for f in fields(cls)}
        return cls(**values)
