"""Experiment 2: the two multiclass cross-entropies differ by a bounded offset.

For a row with correct class y and p = softmax(x), the standard softmax
cross-entropy and the "variant" that also penalises the wrong classes are::

    standard  L = -log p_y                                  (softmax_cross_entropy)
    variant   V = -log p_y - sum_{j != y} log(1 - p_j)      (softmax_binary_cross_entropy)

so V - L = -sum_{j != y} log(1 - p_j) >= 0, a function of how the wrong mass
1 - p_y is spread.  Since -log(1 - u) is convex, for a given p_y the offset
lies between 1 - p_y (mass spread over infinitely many classes) and -log p_y
(all of it on one wrong class).  Spread evenly over the C - 1 wrong classes
(q = (1 - p_y) / (C - 1) each), the case plotted, it is
-(C - 1) log(1 - q), and from u <= -log(1 - u) <= u / (1 - u)::

    1 - p_y  <=  V - L  <=  (1 - p_y) / (1 - q)

which is at most about 1.1 for C = 10 and falls to 0 as p_y -> 1: the two
losses fall at similar rates, the variant a bounded offset above.  Both are
computed by fastloss from the logits log p.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastloss as fl

NAME = "cross_entropy_variants"


def even_rows(p_correct, n_classes):
    """Logits log p of rows with p_0 = p_correct and the rest spread evenly (label 0)."""
    p_correct = np.asarray(p_correct, dtype=np.float64)
    wrong = (1.0 - p_correct) / (n_classes - 1)
    probs = np.repeat(wrong[:, None], n_classes, axis=1)
    probs[:, 0] = p_correct
    return np.log(probs), np.zeros(len(p_correct), dtype=np.intp)


@dataclass
class Result:
    """Both losses along the p_y grid, with the derived bounds of their offset."""

    n_classes: int
    p_correct: np.ndarray
    standard: np.ndarray        # -log p_y per row
    variant: np.ndarray         # -log p_y - sum_{j != y} log(1 - p_j)
    lower_bound: np.ndarray     # 1 - p_y, the derived bounds of variant - standard
    upper_bound: np.ndarray     # (1 - p_y) / (1 - q)
    worst_case: np.ndarray      # standard - log p_y: all the wrong mass on one class
    slope_ratio: np.ndarray     # d variant / dp over d standard / dp (finite differences)

    @property
    def offset(self):
        """variant - standard = -sum_{j != y} log(1 - p_j), per row."""
        return self.variant - self.standard


def compute(quick=False, n_classes=10):
    """Both losses for p_y from 0.01 to 0.98 (fewer points when ``quick``)."""
    p = np.linspace(0.01, 0.98, 98 if quick else 971)
    logits, labels = even_rows(p, n_classes)
    standard = fl.softmax_cross_entropy(logits, labels, reduction="none", grad=False).loss
    variant = fl.softmax_binary_cross_entropy(logits, labels, reduction="none", grad=False).loss
    q = (1 - p) / (n_classes - 1)
    slope_ratio = np.gradient(variant, p) / np.gradient(standard, p)
    return Result(n_classes, p, standard, variant, 1 - p, (1 - p) / (1 - q),
                  standard - np.log(p), slope_ratio)


def report(result):
    """The losses and their offset at a few probabilities."""
    lines = [f"{result.n_classes} classes, the wrong mass 1 - p_y spread evenly",
             "      p_y  standard   variant    offset  bounds [1-p_y, (1-p_y)/(1-q)]  "
             "slope ratio"]
    for target in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98):
        i = int(np.argmin(np.abs(result.p_correct - target)))
        lines.append(f"  {result.p_correct[i]:7.2f} {result.standard[i]:9.4f} "
                     f"{result.variant[i]:9.4f} {result.offset[i]:9.4f}   "
                     f"[{result.lower_bound[i]:.4f}, {result.upper_bound[i]:.4f}]"
                     f"{'':16}{result.slope_ratio[i]:.3f}")
    lines.append(f"  offset range over p_y in [0.01, 0.98]: {result.offset.min():.4f} to "
                 f"{result.offset.max():.4f}; standard loss range "
                 f"{result.standard.min():.4f} to {result.standard.max():.4f}")
    return "\n".join(lines)


def plot(result, out_dir):
    """Left: both losses against p_y; right: their offset and its bounds."""
    from ._plot import COLOURS, new_figure, save

    fig, (ax, ax_offset) = new_figure(2)
    p = result.p_correct
    ax.fill_between(p, result.standard + result.lower_bound, result.worst_case,
                    color=COLOURS["cross_entropy_variant"], alpha=0.15,
                    label="variant, any spread of the wrong mass")
    ax.plot(p, result.standard, color=COLOURS["cross_entropy"],
            label="standard: -log p_y")
    ax.plot(p, result.variant, color=COLOURS["cross_entropy_variant"],
            label="variant: -log p_y - sum log(1 - p_j)")
    ax.set(xlabel="probability of the correct class p_y", ylabel="loss", xlim=(0, 1),
           title=f"Multiclass cross-entropies ({result.n_classes} classes)")
    ax.legend()
    ax_offset.fill_between(p, result.lower_bound, result.upper_bound, color="grey", alpha=0.25,
                           label="bounds [1 - p_y, (1 - p_y)/(1 - q)]")
    ax_offset.plot(p, result.offset, color="black", label="variant - standard")
    ax_offset.set(xlabel="probability of the correct class p_y", ylabel="offset", xlim=(0, 1),
                  title="The offset is bounded (wrong mass spread evenly)")
    ax_offset.legend()
    return [save(fig, out_dir, "cross_entropy_variants")]
