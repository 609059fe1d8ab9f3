"""noise: calibration fits the budget by OpenDP's own maps; thresholds and accuracy follow the formulas."""

from __future__ import annotations

import math

import pytest

from datavalley.privacy import noise


@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
@pytest.mark.parametrize(("sensitivity", "budget"), [(1, 1.0), (7, 0.1), (1048577, 0.25), (3, 3.0)])
def test_calibration_is_tight_and_within_budget(
    mechanism: noise.NoiseMechanism, sensitivity: int, budget: float
) -> None:
    scale, cost = noise.calibrate(mechanism, sensitivity, budget)
    assert cost <= budget
    assert cost == pytest.approx(budget, rel=1e-9)
    expected = sensitivity / budget if mechanism == "laplace" else sensitivity / math.sqrt(2 * budget)
    assert scale == pytest.approx(expected, rel=1e-9)


def test_samples_are_integers_around_the_value() -> None:
    out = noise.sample("laplace", 0.5, [10, 2**40, -3])
    assert all(isinstance(v, int) for v in out)
    assert abs(out[0] - 10) < 50 and abs(out[1] - 2**40) < 50 and abs(out[2] + 3) < 50
    assert noise.sample("gaussian", 1.0, []) == []


def test_accuracy_is_a_95_percent_half_width() -> None:
    # Discrete Laplace: P(|Z| > a) = 2 e^{-(a+1)/b} / (1 + e^{-1/b}); the returned a makes it <= 5%.
    for b in (0.5, 2.0, 37.0):
        a = noise.accuracy("laplace", b, 0.05)
        tail = 2 * math.exp(-(a + 1) / b) / (1 + math.exp(-1 / b))
        assert tail <= 0.05 < 2 * math.exp(-a / b) / (1 + math.exp(-1 / b))
    assert noise.accuracy("gaussian", 10.0, 0.05) in range(19, 22)


def test_threshold_formulas() -> None:
    assert noise.threshold("laplace", 2.0, per_group=1, groups=3, delta=1e-6) == pytest.approx(
        1 + 2.0 * math.log(3 / 1e-6)
    )
    assert noise.threshold("gaussian", 2.0, per_group=1, groups=1, delta=1e-6) == pytest.approx(
        1 + 2.0 * math.sqrt(2 * math.log(1 / 1e-6))
    )
    with pytest.raises(ValueError):
        noise.threshold("laplace", 1.0, per_group=1, groups=1, delta=0.0)
