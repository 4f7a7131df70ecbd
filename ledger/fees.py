"""Fees charged to customers for payments, by a configurable tariff.

A tariff maps a business kind ("hvps", "beps") to bands ordered by upper bound. The
first band whose `upper_fen` covers the amount decides the fee: a fixed part plus a
rate in parts per million of the amount, rounded half up to the fen (fees are amounts
we compute, the only ones that are ever rounded), then kept within the band's minimum
and maximum. The default tariff is an example in the shape of a typical counter
tariff; banks replace it in configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.money import round_half_up_fen
from ledger.errors import LedgerError


@dataclass(frozen=True)
class Band:
    upper_fen: int | None  # None: no upper bound (the last band)
    fixed_fen: int = 0
    rate_ppm: int = 0
    min_fen: int = 0
    max_fen: int | None = None

    def fee_fen(self, amount_fen: int) -> int:
        rated_yuan = Decimal(amount_fen) * self.rate_ppm / Decimal(1_000_000) / 100
        fee_fen = self.fixed_fen + round_half_up_fen(rated_yuan)
        fee_fen = max(fee_fen, self.min_fen)
        return fee_fen if self.max_fen is None else min(fee_fen, self.max_fen)


@dataclass(frozen=True)
class Tariff:
    bands: dict[str, tuple[Band, ...]]

    def __post_init__(self) -> None:
        for business, bands in self.bands.items():
            bounds = [band.upper_fen for band in bands]
            assert bands and bounds[-1] is None, f"{business}: the last band is open-ended"
            finite = [bound for bound in bounds[:-1] if bound is not None]
            assert finite == sorted(finite) and len(finite) == len(bounds) - 1, (
                f"{business}: bands are ordered by upper bound"
            )

    def fee_fen(self, business: str, amount_fen: int) -> int:
        bands = self.bands.get(business)
        if bands is None:
            raise LedgerError("fee_business_unknown", business,
                              f"one of {sorted(self.bands)}", "business")
        for band in bands:
            if band.upper_fen is None or amount_fen <= band.upper_fen:
                return band.fee_fen(amount_fen)
        raise AssertionError("the last band is open-ended")


def default_tariff() -> Tariff:
    """Counter-style fees: fixed by amount band, a small rate with a cap above 1 million."""
    return Tariff({
        "hvps": (
            Band(upper_fen=1_000_000, fixed_fen=500),
            Band(upper_fen=10_000_000, fixed_fen=1_000),
            Band(upper_fen=50_000_000, fixed_fen=1_500),
            Band(upper_fen=100_000_000, fixed_fen=2_000),
            Band(upper_fen=None, rate_ppm=20, min_fen=2_000, max_fen=20_000),
        ),
        "beps": (
            Band(upper_fen=200_000, fixed_fen=0),
            Band(upper_fen=None, fixed_fen=200),
        ),
    })
