"""Experiment 5: hinge against cross-entropy on the same scores.

Claim: the multiclass hinge is satisfied, exactly zero with a zero gradient,
as soon as the correct class wins by at least the margin; cross-entropy is
never zero for finite scores and keeps pushing the correct score up.

For three classes with scores s = (lead, 0, 0) and label 0 (the correct class
ahead of the others by ``lead``), with margin 1::

    Weston-Watkins hinge  2 max(0, 1 - lead)
    Crammer-Singer hinge  max(0, 1 - lead)
    cross-entropy         log(1 + 2 exp(-lead))     > 0 for every lead

A few score rows are also computed and printed, with the size of each
gradient.  Everything is computed by fastloss's ``multiclass_hinge`` and
``softmax_cross_entropy`` with ``reduction="none"``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastloss as fl

NAME = "hinge_vs_cross_entropy"
KINDS = ("weston_watkins", "crammer_singer")

# Label 0 in every row; the first three beat the others by more than the margin 1.
EXAMPLE_SCORES = np.array([
    [4.0, 1.0, 2.5],        # wins by 1.5
    [4.0, 2.9, 2.9],        # wins by 1.1, the others tied
    [10.0, -5.0, -5.0],     # wins by 15
    [4.0, 3.5, 0.0],        # wins by 0.5: inside the margin
    [1.0, 3.0, 0.0],        # loses by 2
])


def losses(scores, labels, margin=1.0):
    """{name: (per-row losses, per-row gradients)} for both hinges and cross-entropy."""
    result = {kind: tuple(fl.multiclass_hinge(scores, labels, margin=margin, kind=kind,
                                              reduction="none"))
              for kind in KINDS}
    result["cross_entropy"] = tuple(fl.softmax_cross_entropy(scores, labels, reduction="none"))
    return result


@dataclass
class Result:
    """The lead sweep and the example rows, each loss with its gradient."""

    margin: float
    lead: np.ndarray                    # s_y - max_{j != y} s_j along the sweep
    sweep: dict                         # name -> per-lead loss
    example_scores: np.ndarray
    example_lead: np.ndarray
    examples: dict                      # name -> (losses, gradients) of the example rows


def compute(quick=False, margin=1.0):
    """The lead sweep (fewer points when ``quick``) and the example rows."""
    lead = np.linspace(-2.0, 5.0, 71 if quick else 701)
    sweep_scores = np.zeros((len(lead), 3))
    sweep_scores[:, 0] = lead
    sweep_labels = np.zeros(len(lead), dtype=np.intp)
    sweep = {name: value[0] for name, value in losses(sweep_scores, sweep_labels, margin).items()}
    labels = np.zeros(len(EXAMPLE_SCORES), dtype=np.intp)
    example_lead = EXAMPLE_SCORES[:, 0] - EXAMPLE_SCORES[:, 1:].max(axis=1)
    return Result(margin, lead, sweep, EXAMPLE_SCORES.copy(), example_lead,
                  losses(EXAMPLE_SCORES, labels, margin))


def report(result):
    """The example rows: each loss and the size of its gradient."""
    names = ("weston_watkins", "crammer_singer", "cross_entropy")
    lines = [f"Scores (label 0), margin {result.margin:g}: loss (|gradient|)",
             f"  {'scores':>20} {'lead':>6}   {'Weston-Watkins':>20} {'Crammer-Singer':>20} "
             f"{'cross-entropy':>22}"]
    for i, row in enumerate(result.example_scores):
        cells = []
        for name in names:
            loss, grad = result.examples[name]
            cells.append(f"{loss[i]:.3g} ({np.linalg.norm(grad[i]):.3g})")
        scores = "[" + ", ".join(f"{s:g}" for s in row) + "]"
        lines.append(f"  {scores:>20} {result.example_lead[i]:6.2g}   {cells[0]:>20} "
                     f"{cells[1]:>20} {cells[2]:>22}")
    met = result.lead >= result.margin
    lines.append(f"  sweep over lead in [{result.lead.min():g}, {result.lead.max():g}]: "
                 f"where lead >= margin, max hinge {result.sweep['weston_watkins'][met].max():g}, "
                 f"min cross-entropy {result.sweep['cross_entropy'][met].min():.3g}")
    return "\n".join(lines)


def plot(result, out_dir):
    """One figure: the three losses against the correct class's lead."""
    from ._plot import COLOURS, new_figure, save

    fig, (ax,) = new_figure(1, width=6.5, height=4.5)
    labels = {"weston_watkins": "Weston-Watkins hinge", "crammer_singer": "Crammer-Singer hinge",
              "cross_entropy": "softmax cross-entropy"}
    for name, values in result.sweep.items():
        ax.plot(result.lead, values, color=COLOURS[name], label=labels[name])
    ax.axvspan(result.margin, result.lead.max(), color="grey", alpha=0.12)
    ax.text(result.lead.max() - 0.1, 3.0, "margin met:\nhinge = 0,\ncross-entropy > 0",
            ha="right", fontsize=9)
    ax.set(xlabel="lead of the correct class: s_y - max_{j != y} s_j  (scores (lead, 0, 0))",
           ylabel="loss", xlim=(result.lead.min(), result.lead.max()),
           title=f"Hinge stops at the margin ({result.margin:g}), cross-entropy never does")
    ax.legend(loc="upper center")
    return [save(fig, out_dir, "hinge_vs_cross_entropy")]
