"""The topology data: the programme's 8 hubs and 10 clusters, PUE targets, the MEE 2022 factors as
published (national, extremes, ranking), the latency model and the hourly profile's stated property."""

from __future__ import annotations

import pytest

from datavalley.compute import topology as t


def test_hubs_and_clusters_of_the_programme() -> None:
    assert len(t.HUBS) == 8 and len(t.CLUSTERS) == 10
    assert {c.name for c in t.CLUSTERS.values()} >= {
        "Zhangjiakou",
        "Wuhu",
        "Shaoguan",
        "Tianfu",
        "Chongqing",
        "Horinger",
        "Gui'an",
        "Qingyang",
        "Zhongwei",
    }
    for c in t.CLUSTERS.values():
        assert c.pue_target == (1.2 if c.west else 1.25)
        assert all(p in t.PROVINCES for p in c.provinces)
    assert sum(h.west for h in t.HUBS.values()) == 4


def test_grid_factors_match_the_published_2022_figures() -> None:
    assert t.NATIONAL_FACTOR == 0.5366
    f = {p.code: p.grid_factor for p in t.PROVINCES.values()}
    assert max(f, key=f.__getitem__) == "hebei" and f["hebei"] == 0.7252
    assert min(f, key=f.__getitem__) == "yunnan" and f["yunnan"] == 0.1073
    ranked = sorted(f, key=f.__getitem__, reverse=True)
    assert ranked[:5] == ["hebei", "shanxi", "tianjin", "inner_mongolia", "anhui"]
    assert ranked[-5:] == ["fujian", "guangxi", "qinghai", "sichuan", "yunnan"]
    assert all(p.checked for p in t.PROVINCES.values() if p.code in ranked[:5] + ranked[-5:])


def test_latency_is_symmetric_and_within_the_target_between_hubs() -> None:
    m = t.latency_matrix()
    for a in m:
        assert m[a][a] == 0
        for b in m:
            assert m[a][b] == m[b][a] and m[a][b] <= t.LATENCY_TARGET_MS
    assert t.latency_ms("hebei", "zhangjiakou") < t.latency_ms("hebei", "guian")


@pytest.mark.parametrize("province", ["gansu", "beijing", "sichuan"])
def test_hourly_profile_keeps_the_annual_mean_and_dips_at_noon(province: str) -> None:
    hours = [t.hourly_factor(province, h) for h in range(24)]
    # the continuous shape integrates to 1/π; hourly sampling is within 1 %
    assert sum(hours) / 24 == pytest.approx(t.PROVINCES[province].grid_factor, rel=0.01)
    assert hours[12] < hours[0]


def test_province_from_a_unified_social_credit_code() -> None:
    assert t.province_of_registry_id("91520000000000000X") == "guizhou"
    assert t.province_of_registry_id("914403000000000000") == "guangdong"
    assert (
        t.province_of_registry_id("short") is None and t.province_of_registry_id("919900000000000000") is None
    )
