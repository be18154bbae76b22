"""Experiment 8: a rare class, trained with binary cross-entropy and with the focal loss.

With 1% positives, a classifier trained with the binary cross-entropy
flags few of them at the usual threshold p > 0.5: few points are more
likely positive than negative.  The focal loss (Lin et al. 2017) multiplies
each sample's cross-entropy by (1 - p_t)^gamma, where p_t is the
probability given to the true class, so confidently right samples fall
silent and the hard ones dominate the gradient; alpha weighs the positives
(alpha) against the negatives (1 - alpha).  Does that find more of the rare
class, and is the model better or only its operating point different?

Data: two overlapping Gaussian classes in 2-D, 1% positives (negatives
N(0, I), positives N((2, 1.5), 0.8^2 I)).  The model is logistic regression
on quadratic features, which holds the true log-odds (a quadratic in x), so
every loss is fitted in a well-specified model.  Each loss is minimised by
SciPy's L-BFGS-B on fastloss's loss and gradient (``binary_cross_entropy``,
``sigmoid_focal_loss``).  Measured on a fresh test set with the same 1%
positives: recall, precision and F1 of the rare class at threshold
p > 0.5, the average precision (threshold-free, from the ranking of the
scores), and the same for the Bayes scorer (the true log-odds).  The Bayes
rule at the threshold where each loss's minimiser predicts 0.5
(:func:`implied_threshold`) predicts each model's operating point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastloss as fl

from ._common import single_threaded_blas

NAME = "imbalanced"
POSITIVE_RATE = 0.01
THRESHOLD = 0.5                     # the predicted probability above which a sample is flagged
BAYES = "Bayes (true log-odds)"      # the reference scorer: make_data's own log-odds
# (label, loss, options): the models compared
MODELS = (
    ("BCE", "binary_cross_entropy", {}),
    ("focal, gamma=2, alpha=0.25", "sigmoid_focal_loss", {"gamma": 2.0, "alpha": 0.25}),
    ("focal, gamma=2, no alpha", "sigmoid_focal_loss", {"gamma": 2.0, "alpha": -1.0}),
    ("focal, gamma=2, alpha=0.75", "sigmoid_focal_loss", {"gamma": 2.0, "alpha": 0.75}),
)
MODEL_COLOURS = {
    "BCE": "#1f77b4",
    "focal, gamma=2, alpha=0.25": "#ff7f0e",
    "focal, gamma=2, no alpha": "#9467bd",
    "focal, gamma=2, alpha=0.75": "#2ca02c",
    BAYES: "#777777",
}
POSITIVE_MEAN = np.array([2.0, 1.5])
POSITIVE_SD = 0.8


def make_data(rng, n):
    """n points of two Gaussian classes in 2-D, a fraction POSITIVE_RATE of them positive.

    Negatives N(0, I), positives N(POSITIVE_MEAN, POSITIVE_SD^2 I).
    """
    y = (rng.random(n) < POSITIVE_RATE).astype(np.float64)
    x = rng.standard_normal((n, 2))
    x[y == 1] = x[y == 1] * POSITIVE_SD + POSITIVE_MEAN
    return x, y


def features(x):
    """Quadratic features and a constant: (n, 6)."""
    return np.column_stack([x, x * x, x[:, 0] * x[:, 1], np.ones(x.shape[0])])


def objective(phi, y, loss, options, w):
    """Mean ``loss`` (a fastloss function) of the logits phi w, and its gradient for w."""
    value, g = getattr(fl, loss)(phi @ w, y, **options)
    return value, phi.T @ g


def fit(phi, y, loss, options):
    """Logistic-model weights minimising the mean of ``loss``, by L-BFGS-B from zero."""
    from scipy.optimize import minimize

    done = minimize(lambda w: objective(phi, y, loss, options, w), np.zeros(phi.shape[1]),
                    jac=True, method="L-BFGS-B",
                    options={"maxiter": 2_000, "gtol": 1e-10, "ftol": 1e-14})
    return done.x, done.nit


def bayes_log_odds(x):
    """The true log-odds log P(y=1 | x) / P(y=0 | x) of make_data's distribution."""
    d = x - POSITIVE_MEAN
    return (-0.5 * np.sum(d * d, axis=1) / POSITIVE_SD ** 2 + 0.5 * np.sum(x * x, axis=1)
            - 2 * np.log(POSITIVE_SD) + np.log(POSITIVE_RATE / (1 - POSITIVE_RATE)))


def average_precision(y, score):
    """Mean of the precision at the rank of each positive (scores sorted high to low)."""
    order = np.argsort(-score, kind="stable")
    hits = y[order] == 1
    precision_at = np.cumsum(hits) / np.arange(1, y.size + 1)
    return float(precision_at[hits].mean())


def logit(p):
    """log(p / (1 - p))."""
    return float(np.log(p / (1 - p)))


def implied_threshold(options):
    """The true probability P(y=1 | x) at which a minimiser of the loss predicts 0.5.

    Pointwise, the expected focal loss at P(y=1 | x) = eta is
    a eta (1-p)^g (-log p) + (1-a) (1-eta) p^g (-log(1-p)), proportional to
    the unweighted one at eta' = a eta / (a eta + (1-a)(1-eta)).  Its
    minimiser increases with eta' and is 1/2 at eta' = 1/2 (the loss is then
    symmetric in p and 1-p), whatever gamma: at eta = 1 - a.  Without alpha
    (and for BCE, gamma = 0 and no alpha), at eta = 1/2.
    """
    alpha = options.get("alpha", -1.0)
    return 0.5 if alpha < 0 else 1.0 - alpha


def metrics_at(y, score, threshold_logit=0.0):
    """Recall, precision and F1 of the rare class for score > threshold_logit, and AP."""
    predicted = score > threshold_logit
    tp = float(np.sum(predicted & (y == 1)))
    recall = tp / max(float(np.sum(y == 1)), 1.0)
    precision = tp / max(float(np.sum(predicted)), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"recall": recall, "precision": precision, "f1": f1,
            "average_precision": average_precision(y, score),
            "predicted_positive": int(np.sum(predicted))}


@dataclass
class Result:
    """Rare-class metrics of each model on the test set."""

    n_train: int
    n_test: int
    n_positive_train: int
    n_positive_test: int
    y_test: np.ndarray
    scores: dict                # model label -> test logits (the Bayes log-odds under "Bayes")
    metrics: dict               # model label -> {recall, precision, f1, average_precision, ...}
    mean_probability: dict      # model label -> mean predicted probability on test positives
    iterations: dict            # model label -> L-BFGS-B iterations
    bayes_at: dict              # eta -> the metrics of the Bayes rule P(y=1 | x) > eta


def compute(quick=False, seed=0):
    """Fit each model of MODELS on one training set, measure on a fresh test set."""
    rng = np.random.default_rng(seed)
    n_train, n_test = (50_000, 50_000) if quick else (100_000, 400_000)
    x, y = make_data(rng, n_train)
    x_test, y_test = make_data(rng, n_test)
    phi, phi_test = features(x), features(x_test)
    scores, iterations = {}, {}
    with single_threaded_blas():
        for label, loss, options in MODELS:
            w, iterations[label] = fit(phi, y, loss, options)
            scores[label] = phi_test @ w
    scores[BAYES] = bayes_log_odds(x_test)
    metrics, mean_probability = {}, {}
    for label, score in scores.items():
        # sigma(score) > THRESHOLD exactly when score > logit(THRESHOLD) (0 for 0.5)
        metrics[label] = metrics_at(y_test, score, logit(THRESHOLD))
        positive = score[y_test == 1]
        mean_probability[label] = float(np.mean(0.5 * (1 + np.tanh(positive / 2))))
    bayes_at = {eta: metrics_at(y_test, scores[BAYES], logit(eta))
                for eta in sorted({implied_threshold(options) for _, _, options in MODELS})}
    return Result(n_train, n_test, int(y.sum()), int(y_test.sum()), y_test, scores, metrics,
                  mean_probability, iterations, bayes_at)


def report(result):
    """Recall, precision, F1 and average precision of the rare class for each model."""
    lines = [f"Imbalanced binary problem: {result.n_positive_train} positives in "
             f"{result.n_train} training samples, {result.n_positive_test} in "
             f"{result.n_test} test samples; threshold p > {THRESHOLD:g}",
             f"  {'model':<28} {'recall':>7} {'precision':>9} {'F1':>6} {'flagged':>7} "
             f"{'avg prec':>8} {'mean p(pos)':>11} {'iters':>5}"]
    for label, m in result.metrics.items():
        iters = result.iterations.get(label)
        lines.append(f"  {label:<28} {m['recall']:7.3f} {m['precision']:9.3f} {m['f1']:6.3f} "
                     f"{m['predicted_positive']:7d} {m['average_precision']:8.3f} "
                     f"{result.mean_probability[label]:11.3f} "
                     f"{iters if iters is not None else '':>5}".rstrip())
    lines.append("  The Bayes rule P(y=1 | x) > eta at the eta where each loss's minimiser "
                 "predicts 0.5:")
    for eta, m in result.bayes_at.items():
        users = ", ".join(label for label, _, options in MODELS
                          if implied_threshold(options) == eta)
        lines.append(f"  {'eta = ' + format(eta, 'g'):<28} {m['recall']:7.3f} "
                     f"{m['precision']:9.3f} {m['f1']:6.3f} {m['predicted_positive']:7d}   "
                     f"({users})")
    return "\n".join(lines)


def precision_recall_curve(y, score):
    """(recall, precision) after each sample, scores sorted high to low."""
    order = np.argsort(-score, kind="stable")
    hits = np.cumsum(y[order] == 1)
    return hits / max(hits[-1], 1), hits / np.arange(1, y.size + 1)


def plot(result, out_dir):
    """Two panels: the metrics at p > 0.5 per model, and the precision-recall curves."""
    from ._plot import new_figure, save

    fig, (left, right) = new_figure(2, width=5.5, height=4.4)
    names = ("recall", "precision", "f1", "average_precision")
    labels = list(result.metrics)
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        values = [result.metrics[label][n] for n in names]
        left.bar(np.arange(len(names)) + (k - (len(labels) - 1) / 2) * width, values, width,
                 label=label, color=MODEL_COLOURS[label],
                 hatch="//" if label == BAYES else None)
    left.set_xticks(np.arange(len(names)), ["recall", "precision", "F1", "average\nprecision"])
    left.set(ylim=(0, 1), ylabel="on the rare class (test set)",
             title=f"At p > {THRESHOLD:g}; {100 * POSITIVE_RATE:g}% positives")

    for label in labels:
        recall, precision = precision_recall_curve(result.y_test, result.scores[label])
        right.plot(recall, precision, color=MODEL_COLOURS[label], linewidth=1,
                   linestyle=":" if label == BAYES else "-",
                   label=f"{label} (AP {result.metrics[label]['average_precision']:.3f})")
        if label != BAYES:
            m = result.metrics[label]
            right.plot(m["recall"], m["precision"], "o", color=MODEL_COLOURS[label],
                       markersize=7, markeredgecolor="black")
    right.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
              title=f"Precision-recall curves (dots: p > {THRESHOLD:g})")
    right.legend(fontsize=7, loc="upper right")
    return [save(fig, out_dir, "imbalanced")]
