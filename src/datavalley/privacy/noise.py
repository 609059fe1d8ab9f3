"""Integer noise from OpenDP's samplers: calibration, sampling, accuracy and key-release thresholds.

Every noisy value is an integer (a count, or a sum in fixed point) and gets discrete Laplace or discrete
Gaussian noise from OpenDP's ``make_laplace`` / ``make_gaussian`` on ``Vec<i64>``. Integer noise on an
exact integer avoids the floating-point attacks on naive Laplace noise (Mironov, "On significance of the
least significant bits for differential privacy", CCS 2012). The privacy cost of each measurement is what
OpenDP's own privacy map says, never our own formula: calibration picks a scale and then asks OpenDP.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import opendp.prelude as dp

__all__ = ["NoiseMechanism", "accuracy", "calibrate", "sample", "threshold"]

NoiseMechanism = Literal["laplace", "gaussian"]


@functools.lru_cache(maxsize=512)
def _measurement(mechanism: NoiseMechanism, scale: float) -> dp.Measurement:
    # A measurement is an immutable function of (mechanism, scale): memoised, since building one costs
    # about as much as sampling a few dozen values. OpenDP gates its constructors behind the "contrib"
    # feature flag (process-wide, idempotent); these are the library's standard integer mechanisms.
    dp.enable_features("contrib")
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    if mechanism == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale)
    return dp.m.make_gaussian(domain, dp.l2_distance(T="f64"), scale)


def _privacy_map(mechanism: NoiseMechanism, scale: float, sensitivity: float) -> float:
    meas = _measurement(mechanism, scale)
    d_in: int | float = int(sensitivity) if mechanism == "laplace" else float(sensitivity)
    return float(meas.map(d_in))  # type: ignore[no-untyped-call]


def calibrate(mechanism: NoiseMechanism, sensitivity: float, budget: float) -> tuple[float, float]:
    """The smallest scale (found by a tiny upward search) whose OpenDP privacy map fits ``budget``.

    ``sensitivity`` is the L1 sensitivity (integer) for Laplace, the L2 sensitivity for Gaussian;
    ``budget`` is ε for Laplace and ρ for Gaussian. Returns ``(scale, cost)`` with ``cost <= budget``.
    """
    if sensitivity <= 0:
        raise ValueError("sensitivity must be positive")
    # Laplace: ε = Δ1 / b. Gaussian: ρ = Δ2² / (2σ²).
    scale = sensitivity / budget if mechanism == "laplace" else sensitivity / math.sqrt(2.0 * budget)
    for _ in range(200):
        cost = _privacy_map(mechanism, scale, sensitivity)
        if cost <= budget:
            return scale, cost
        # OpenDP rounds its maps conservatively; nudge the scale up until the map fits.
        scale = math.nextafter(scale, math.inf) * (1.0 + 2.0**-40)
    raise RuntimeError(f"cannot calibrate {mechanism} noise for sensitivity {sensitivity} within {budget}")


def sample(mechanism: NoiseMechanism, scale: float, values: Sequence[int]) -> list[int]:
    """``values`` plus independent integer noise of ``scale`` (OpenDP's discrete Laplace or Gaussian)."""
    if not values:
        return []
    meas = _measurement(mechanism, scale)
    return [int(v) for v in meas([int(v) for v in values])]


@functools.lru_cache(maxsize=1024)
def accuracy(mechanism: NoiseMechanism, scale: float, alpha: float) -> int:
    """Integer ``a`` with P(|noise| > a) <= alpha (OpenDP's accuracy functions, floored as they allow)."""
    if mechanism == "laplace":
        value = dp.discrete_laplacian_scale_to_accuracy(scale, alpha)
    else:
        value = dp.discrete_gaussian_scale_to_accuracy(scale, alpha)
    return math.floor(float(value))


def threshold(mechanism: NoiseMechanism, scale: float, *, per_group: int, groups: int, delta: float) -> float:
    """The noisy-unit-count threshold τ that releases a key created by one unit with probability <= δ.

    A unit absent from the neighbouring data set can create at most ``groups`` keys, each with a true
    unit count of at most ``per_group``. A key is released when ``count + Z >= τ``; the union bound
    needs ``groups * P(Z >= τ - per_group) <= δ``.

    - discrete Laplace (scale b): P(Z >= t) = e^(-t/b) / (1 + e^(-1/b)) <= e^(-t/b), so
      τ = per_group + b ln(groups / δ);
    - discrete Gaussian (σ): it is σ-subgaussian (Canonne, Kamath, Steinke 2020), P(Z >= t) <=
      e^(-t²/2σ²), so τ = per_group + σ sqrt(2 ln(groups / δ)).
    """
    if not 0.0 < delta < 1.0:
        raise ValueError("delta must be in (0, 1)")
    log_term = math.log(groups / delta)
    if mechanism == "laplace":
        return per_group + scale * log_term
    return per_group + scale * math.sqrt(2.0 * log_term)
