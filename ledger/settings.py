"""The ledger's settings, and the context every ledger operation runs in."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.chart import InternalAccounts
from ledger.fees import Tariff, default_tariff
from ledger.numbers import validate_institution

# Our accounting institution (机构号): Beijing (11), city 01, union 01, branch 0001. An
# accounting institution's number ends in an odd digit.
DEFAULT_INSTITUTION = "1101010001"


@dataclass(frozen=True)
class LedgerSettings:
    """`strict_numbers`: customer account numbers must carry our structure and check
    digit; turn it off only to load accounts migrated from a system with other rules."""

    institution: str = DEFAULT_INSTITUTION
    strict_numbers: bool = True
    tariff: Tariff = field(default_factory=default_tariff)

    def __post_init__(self) -> None:
        assert validate_institution(self.institution), "an institution has 10 ASCII digits"
        assert int(self.institution[-1]) % 2 == 1, "an accounting institution ends odd"


@dataclass(frozen=True)
class Context:
    settings: LedgerSettings
    accounts: InternalAccounts

    @classmethod
    def from_settings(cls, settings: LedgerSettings) -> Context:
        return cls(settings, InternalAccounts.for_institution(settings.institution))
