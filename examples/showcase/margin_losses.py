"""Experiment 4: the binary losses as functions of the margin m = y f(x).

With labels y in {-1, +1} and a score f(x), every classic binary loss depends
on the margin m = y f(x) only (m > 0: correct side)::

    0-1            [m <= 0]
    hinge          max(0, 1 - m)
    squared hinge  max(0, 1 - m)^2
    logistic       log(1 + exp(-m)) / log 2   (binary cross-entropy of sigma(f), in bits)
    squared error  (f - y)^2 = (1 - m)^2      (since y^2 = 1)

Claims: hinge, squared hinge and logistic are convex upper bounds of the 0-1
loss (logistic in bits passes through (0, 1)); hinge is exactly zero once
m >= 1 while logistic stays positive; squared error is the only one that
*grows* for m > 1, penalising predictions that are "too correct".

Each curve is computed by fastloss's kernels (``hinge``, ``squared_hinge``,
``binary_cross_entropy``, ``mse`` with ``reduction="none"``) on the margins
as scores against target +1; the 0-1 loss is a plain comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import fastloss as fl

NAME = "margin_losses"
LOSSES = ("zero_one", "hinge", "squared_hinge", "cross_entropy", "mse")
LABELS = {"zero_one": "0-1", "hinge": "hinge", "squared_hinge": "squared hinge",
          "cross_entropy": "logistic (cross-entropy, bits)", "mse": "squared error"}


def margin_losses(margin):
    """Each loss of :data:`LOSSES` at the margins ``margin`` (a dict of arrays)."""
    m = np.asarray(margin, dtype=np.float64)
    ones = np.ones_like(m)
    return {
        "zero_one": (m <= 0).astype(np.float64),
        "hinge": fl.hinge(m, ones, reduction="none").loss,
        "squared_hinge": fl.squared_hinge(m, ones, reduction="none").loss,
        # log(1 + e^-m) in nats, / log 2 in bits.
        "cross_entropy": fl.binary_cross_entropy(m, ones, reduction="none").loss / math.log(2),
        "mse": fl.mse(m, ones, reduction="none").loss,
    }


@dataclass
class Result:
    """Every loss on the margin grid and at a few margins."""

    margin: np.ndarray
    losses: dict                # loss name -> values on the margin grid
    table_margins: tuple
    table: dict                 # loss name -> values at table_margins
    min_upper_bound_gap: dict   # loss name -> min over the grid of (loss - 0-1 loss)


def compute(quick=False, table_margins=(-2.0, 0.0, 0.5, 1.0, 2.0, 3.0)):
    """The losses on m in [-3, 4] and at a few margins."""
    margin = np.linspace(-3.0, 4.0, 141 if quick else 1401)
    losses = margin_losses(margin)
    table = margin_losses(np.array(table_margins))
    gap = {name: float(np.min(values - losses["zero_one"]))
           for name, values in losses.items() if name not in ("zero_one", "mse")}
    return Result(margin, losses, tuple(table_margins), table, gap)


def report(result):
    """A table of the losses at a few margins."""
    header = f"  {'margin m = y f(x)':>31}: " + " ".join(f"{m:>7g}" for m in result.table_margins)
    lines = ["Binary losses against the margin", header]
    for name in LOSSES:
        values = " ".join(f"{v:7.3f}" for v in result.table[name])
        lines.append(f"  {LABELS[name]:>31}: {values}")
    for name, gap in result.min_upper_bound_gap.items():
        lines.append(f"  min over m of ({LABELS[name]} - 0-1) = {gap:.3g} (>= 0: an upper bound)")
    return "\n".join(lines)


def plot(result, out_dir):
    """One figure: every loss against the margin."""
    from ._plot import COLOURS, new_figure, save

    fig, (ax,) = new_figure(1, width=6.5, height=4.5)
    # squared hinge after squared error: it coincides with it for m < 1
    for name in ("zero_one", "hinge", "cross_entropy", "mse", "squared_hinge"):
        style = {"zero_one": {"drawstyle": "steps-post"},
                 "mse": {"linewidth": 3.5, "alpha": 0.6},
                 "squared_hinge": {"linestyle": (0, (4, 3)), "color": "#2ca02c",
                                   "linewidth": 2},
                 }.get(name, {})
        style.setdefault("color", COLOURS[name])
        ax.plot(result.margin, result.losses[name], label=LABELS[name], **style)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="margin m = y f(x)", ylabel="loss", ylim=(-0.1, 4.0),
           xlim=(result.margin.min(), result.margin.max()),
           title="Binary classification losses against the margin")
    ax.legend()
    return [save(fig, out_dir, "margin_losses")]
