"""The soak's memory slope: a process that grows while warming up and then stays flat
is told from one that grows with every payment to the end."""

from __future__ import annotations

import pytest

from gateway.bench_e2e import rss_slope_mib_per_min


def samples(memory_at) -> list[dict[str, float]]:
    return [{"t": float(t), "gateway": memory_at(t)} for t in range(0, 605, 5)]


def test_growth_that_stopped_after_the_warm_up_has_no_slope_in_the_second_half():
    rss = samples(lambda t: 100.0 + min(t, 180) / 180 * 29)  # 100 -> 129 MiB, then flat
    assert rss_slope_mib_per_min(rss, "gateway", 300, 600) == 0.0
    assert rss_slope_mib_per_min(rss, "gateway", 0, 600) > 1.0


def test_steady_growth_keeps_its_slope():
    rss = samples(lambda t: 120.0 + t / 60 * 0.35)  # 0.35 MiB a minute, to the end
    assert rss_slope_mib_per_min(rss, "gateway", 300, 600) == pytest.approx(0.35)


def test_too_few_samples_give_no_slope():
    rss = samples(lambda t: 120.0)
    assert rss_slope_mib_per_min(rss, "gateway", 300, 302) == 0.0
    assert rss_slope_mib_per_min(rss[:1], "gateway", 0, 600) == 0.0
