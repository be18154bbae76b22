"""Experiment 3: the derivative of the sigmoid, and where it vanishes.

Claim: sigma'(z) = sigma(z) (1 - sigma(z)) peaks at 1/4 for z = 0 and decays
like exp(-|z|), so any loss whose gradient carries the factor sigma'(z)
(the quadratic loss on a sigmoid output, experiment 1) stops learning once
|z| is a few units, whether the output is right or wrong.  Cross-entropy
cancels this factor: its gradient with respect to z is sigma(z) - y.

sigma is computed by fastloss's ``binary_cross_entropy`` kernel (its
gradient against target 0 is sigma(z)); the decay point |z| where sigma'
falls below a fraction f of its peak solves sigma'(z) = f/4, i.e.
z = log(u) with u + 1/u + 2 = 4/f (u = e^z), the closed form printed beside
the measured value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import sigmoid, sigmoid_derivative

NAME = "sigmoid_derivative"


@dataclass
class Result:
    """sigma and sigma' on a grid, and where sigma' falls below fractions of its peak."""

    z: np.ndarray
    sigma: np.ndarray
    derivative: np.ndarray
    peak: float                 # max of sigma' on the grid
    peak_at: float              # its z
    fractions: tuple            # f: thresholds relative to the peak
    measured_cutoff: dict       # f -> smallest grid |z| with sigma'(z) < f * peak
    exact_cutoff: dict          # f -> closed-form |z| where sigma'(z) = f / 4


def exact_cutoff(fraction):
    """|z| where sigma'(z) = fraction / 4.

    With u = e^z, sigma'(z) = u / (1 + u)^2 = 1 / (u + 2 + 1/u); setting it to
    f/4 gives u + 1/u = 4/f - 2 =: c, so u = (c + sqrt(c^2 - 4)) / 2.
    """
    c = 4.0 / fraction - 2.0
    return float(np.log((c + np.sqrt(c * c - 4.0)) / 2.0))


def compute(quick=False, fractions=(0.5, 0.1, 0.01)):
    """sigma and sigma' on z in [-10, 10] (a coarser grid when ``quick``)."""
    z = np.linspace(-10.0, 10.0, 401 if quick else 4001)
    derivative = sigmoid_derivative(z)
    peak = float(derivative.max())
    measured = {}
    for f in fractions:
        below = np.abs(z)[(derivative < f * 0.25) & (z >= 0)]
        measured[f] = float(below.min())
    return Result(z, sigmoid(z), derivative, peak, float(z[np.argmax(derivative)]),
                  tuple(fractions), measured, {f: exact_cutoff(f) for f in fractions})


def report(result):
    """The numeric results as text."""
    lines = [f"sigma'(z) peaks at {result.peak:.6f} for z = {result.peak_at:g} (exact: 1/4 at 0)"]
    for f in result.fractions:
        lines.append(f"  sigma'(z) < {f:g} x peak for |z| > {result.measured_cutoff[f]:.3f} "
                     f"(closed form {result.exact_cutoff[f]:.3f})")
    for z in (2.0, 4.0, 6.0, 10.0):
        lines.append(f"  sigma'({z:g}) = {float(sigmoid_derivative(z)):.3e}")
    return "\n".join(lines)


def plot(result, out_dir):
    """One figure: sigma and sigma' with the vanishing region shaded."""
    from ._plot import new_figure, save

    fig, (ax,) = new_figure(1, width=6.5)
    ax.plot(result.z, result.sigma, color="#1f77b4", label="sigma(z)")
    ax.plot(result.z, result.derivative, color="#d62728",
            label="sigma'(z) = sigma(z)(1 - sigma(z))")
    cut = result.exact_cutoff[0.1]
    for side in (-1, 1):
        ax.axvspan(side * cut, side * result.z.max(), color="grey", alpha=0.12)
    ax.text(0.98 * result.z.max(), 0.55, f"sigma' < 10% of its peak\n(|z| > {cut:.2f})",
            ha="right", fontsize=9)
    ax.set(xlabel="z", ylabel="value", title="The sigmoid saturates: its derivative vanishes",
           xlim=(result.z.min(), result.z.max()))
    ax.legend(loc="upper left")
    return [save(fig, out_dir, "sigmoid_derivative")]
