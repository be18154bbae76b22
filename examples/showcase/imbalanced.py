"""Experiment 8: a rare class, trained with binary cross-entropy and with the focal loss.

With 1% positives, the binary cross-entropy of a classifier is dominated by
the many easy negatives: each contributes a small loss, but together they
outweigh the rare positives, and at the usual threshold of 0.5 the model
finds few of them.  The focal loss (Lin et al. 2017) multiplies each
sample's cross-entropy by (1 - p_t)^gamma, where p_t is the probability
given to the true class, so confidently right samples fall silent and the
hard ones (most of them positives) dominate the gradient; alpha weighs the
positives against the negatives.

Data: two overlapping Gaussian classes in 2-D, 1% positives.  The model is
logistic regression on quadratic features, fitted by full-batch gradient
descent with Adam on fastloss's gradients (``binary_cross_entropy`` and
``sigmoid_focal_loss``).  Measured on a fresh test set with the same 1%
positives: recall, precision and F1 of the rare class at threshold 0.5, and
the average precision (threshold-free, from the ranking of the scores).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastloss as fl

NAME = "imbalanced"
POSITIVE_RATE = 0.01
# (label, loss, options): the models compared
MODELS = (
    ("BCE", "binary_cross_entropy", {}),
    ("focal, gamma=2, alpha=0.25", "sigmoid_focal_loss", {"gamma": 2.0, "alpha": 0.25}),
    ("focal, gamma=2, no alpha", "sigmoid_focal_loss", {"gamma": 2.0, "alpha": -1.0}),
    ("focal, gamma=2, alpha=0.75", "sigmoid_focal_loss", {"gamma": 2.0, "alpha": 0.75}),
)


def make_data(rng, n):
    """n points of two Gaussian classes in 2-D, a fraction POSITIVE_RATE of them positive."""
    y = (rng.random(n) < POSITIVE_RATE).astype(np.float64)
    x = rng.standard_normal((n, 2))
    x[y == 1] = x[y == 1] * 0.8 + np.array([2.0, 1.5])
    return x, y


def features(x):
    """Quadratic features and a constant: (n, 6)."""
    return np.column_stack([x, x * x, x[:, 0] * x[:, 1], np.ones(x.shape[0])])


def fit(phi, y, loss, options, steps, lr=0.05):
    """Logistic regression weights minimising the mean of ``loss`` (a fastloss function)."""
    from .heteroscedastic import Adam

    w = np.zeros(phi.shape[1])
    opt = Adam(w.size, lr)
    function = getattr(fl, loss)
    for _ in range(steps):
        _, g = function(phi @ w, y, **options)
        opt.step(w, phi.T @ g)
    return w


def average_precision(y, score):
    """Mean of the precision at the rank of each positive (scores sorted high to low)."""
    order = np.argsort(-score, kind="stable")
    hits = y[order] == 1
    precision_at = np.cumsum(hits) / np.arange(1, y.size + 1)
    return float(precision_at[hits].mean())


@dataclass
class Result:
    """Rare-class metrics of each model on the test set."""

    n_train: int
    n_positive_train: int
    n_positive_test: int
    metrics: dict               # model label -> {recall, precision, f1, average_precision}
    mean_probability: dict      # model label -> mean predicted probability on test positives


def compute(quick=False, seed=0):
    """Fit each model of MODELS on one training set, measure on a fresh test set."""
    rng = np.random.default_rng(seed)
    n_train, n_test, steps = (20_000, 20_000, 800) if quick else (100_000, 200_000, 2_000)
    x, y = make_data(rng, n_train)
    x_test, y_test = make_data(rng, n_test)
    phi, phi_test = features(x), features(x_test)
    metrics, mean_probability = {}, {}
    for label, loss, options in MODELS:
        w = fit(phi, y, loss, options, steps)
        score = phi_test @ w
        # sigma(score) > 0.5 exactly when score > 0
        predicted = score > 0
        tp = float(np.sum(predicted & (y_test == 1)))
        recall = tp / max(float(np.sum(y_test == 1)), 1.0)
        precision = tp / max(float(np.sum(predicted)), 1.0)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        metrics[label] = {"recall": recall, "precision": precision, "f1": f1,
                          "average_precision": average_precision(y_test, score)}
        positive = score[y_test == 1]
        mean_probability[label] = float(np.mean(0.5 * (1 + np.tanh(positive / 2))))
    return Result(n_train, int(y.sum()), int(y_test.sum()), metrics, mean_probability)


def report(result):
    """Recall, precision, F1 and average precision of the rare class for each model."""
    lines = [f"Imbalanced binary problem: {result.n_positive_train} positives in "
             f"{result.n_train} training samples, {result.n_positive_test} in the test set",
             f"  {'model':<28} {'recall':>7} {'precision':>9} {'F1':>6} {'avg prec':>8} "
             f"{'mean p(positives)':>17}"]
    for label, m in result.metrics.items():
        lines.append(f"  {label:<28} {m['recall']:7.3f} {m['precision']:9.3f} {m['f1']:6.3f} "
                     f"{m['average_precision']:8.3f} {result.mean_probability[label]:17.3f}")
    return "\n".join(lines)


def plot(result, out_dir):
    """One figure: the four metrics of each model, side by side."""
    from ._plot import new_figure, save

    fig, (ax,) = new_figure(1, width=7.0, height=4.2)
    names = ("recall", "precision", "f1", "average_precision")
    labels = list(result.metrics)
    width = 0.8 / len(labels)
    colours = ("#1f77b4", "#ff7f0e", "#9467bd", "#2ca02c")
    for k, label in enumerate(labels):
        values = [result.metrics[label][n] for n in names]
        ax.bar(np.arange(len(names)) + (k - (len(labels) - 1) / 2) * width, values, width,
               label=label, color=colours[k % len(colours)])
    ax.set_xticks(np.arange(len(names)), ["recall", "precision", "F1", "average precision"])
    ax.set(ylim=(0, 1), ylabel="on the rare class (test set)",
           title=f"{100 * POSITIVE_RATE:g}% positives: cross-entropy against the focal loss")
    ax.legend(fontsize=8)
    return [save(fig, out_dir, "imbalanced")]
