"""Experiment 6: linear classifiers on the digits data, one optimiser, four losses.

A linear model s = x W + b (64 pixel features, 10 classes) is trained on
scikit-learn's bundled digits data (1797 8x8 images, no download;
standardised, a stratified 75/25 split) by minimising::

    J(W, b) = mean_i loss(s_i, y_i) + (lambda / 2) ||W||^2

with SciPy's L-BFGS-B, fed fastloss's loss and gradient (``jac=True``); the
L2 term and the chain rule through s = x W + b (dJ/dW = X^T G + lambda W,
dJ/db = column sums of G, G the loss gradient) are added here.  The losses:

* softmax cross-entropy (``softmax_cross_entropy``): multinomial logistic regression;
* Weston-Watkins and Crammer-Singer multiclass hinge (``multiclass_hinge``):
  with the L2 term, linear multiclass SVMs;
* squared error against one-hot targets (``mse`` times 10, the sum over the
  classes): least-squares classification.

Regularisation comparable with scikit-learn: its ``LogisticRegression`` and
``LinearSVC`` minimise (1/2) ||W||^2 + C sum_i loss_i, which is n C times J
with lambda = 1 / (n C) (n training samples).  The same C is used for every
model.  ``LogisticRegression`` (lbfgs, multinomial, intercept not penalised)
then has exactly the cross-entropy objective; ``LinearSVC(loss="hinge",
multi_class="crammer_singer")`` has the Crammer-Singer objective except that
liblinear also penalises the intercept; ``LinearSVC(loss="hinge")`` is
one-vs-rest, a different multiclass SVM, compared with Weston-Watkins.
The hinge losses are not differentiable at the margin; L-BFGS-B still
decreases them, stopping on its relative-reduction test after more
iterations than the smooth losses need.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

import fastloss as fl
from ._common import single_threaded_blas

NAME = "digits"
MODELS = ("cross_entropy", "weston_watkins", "crammer_singer", "mse")
LABELS = {"cross_entropy": "softmax cross-entropy", "weston_watkins": "Weston-Watkins hinge",
          "crammer_singer": "Crammer-Singer hinge", "mse": "MSE on one-hot targets"}
# scikit-learn model compared with each fastloss model.
REFERENCE_MODEL = {"cross_entropy": "LogisticRegression",
                   "weston_watkins": "LinearSVC one-vs-rest hinge",
                   "crammer_singer": "LinearSVC Crammer-Singer"}


def digits_split(seed=0):
    """Standardised stratified 75/25 split of the bundled digits data."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=seed, stratify=labels)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test), y_train, y_test


def score_loss(model, labels, n_classes):
    """The function scores -> (mean loss, gradient) of ``model`` for these labels."""
    if model == "cross_entropy":
        return lambda scores: fl.softmax_cross_entropy(scores, labels)
    if model in ("weston_watkins", "crammer_singer"):
        return lambda scores: fl.multiclass_hinge(scores, labels, kind=model)
    if model == "mse":
        one_hot = np.eye(n_classes)[labels]

        def squared_error(scores):
            # fastloss's "mean" divides by N * C: times C is the per-row sum over classes.
            value, grad = fl.mse(scores, one_hot)
            return value * n_classes, grad * n_classes
        return squared_error
    raise ValueError(f"unknown model {model!r}")


@dataclass
class Fit:
    """A fitted linear model and how L-BFGS-B got there."""

    weights: np.ndarray         # (n_features, n_classes)
    bias: np.ndarray            # (n_classes,)
    objective: float
    iterations: int
    evaluations: int
    message: str

    def predict(self, features):
        """The class with the largest score for each row of ``features``."""
        return np.argmax(features @ self.weights + self.bias, axis=1)


def objective(loss, features, weights, bias, l2):
    """(J, dJ/dW, dJ/db) of J = mean loss(X W + b) + (l2 / 2) ||W||^2."""
    value, grad_scores = loss(features @ weights + bias)
    value += 0.5 * l2 * float(np.sum(weights * weights))
    return value, features.T @ grad_scores + l2 * weights, grad_scores.sum(axis=0)


def fit_linear(loss, features, n_classes, l2, max_iter=15000):
    """Minimise mean loss(X W + b) + (l2 / 2) ||W||^2 with L-BFGS-B from zero."""
    from scipy.optimize import minimize

    n_features = features.shape[1]
    n_weights = n_features * n_classes

    def flat_objective(theta):
        weights = theta[:n_weights].reshape(n_features, n_classes)
        value, grad_weights, grad_bias = objective(loss, features, weights, theta[n_weights:], l2)
        return value, np.concatenate([grad_weights.ravel(), grad_bias])

    start = np.zeros(n_weights + n_classes)
    result = minimize(flat_objective, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "maxfun": 2 * max_iter})
    return Fit(result.x[:n_weights].reshape(n_features, n_classes), result.x[n_weights:],
               float(result.fun), int(result.nit), int(result.nfev), str(result.message))


def sklearn_models(x_train, y_train, C):
    """The fitted scikit-learn model matched with each fastloss model, same C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    models = {
        "cross_entropy": LogisticRegression(C=C, max_iter=10000),
        "weston_watkins": LinearSVC(C=C, loss="hinge", dual=True, max_iter=100000),
        "crammer_singer": LinearSVC(C=C, multi_class="crammer_singer", max_iter=100000),
    }
    with warnings.catch_warnings():
        # multi_class="crammer_singer" may be deprecated in newer scikit-learn.
        warnings.simplefilter("ignore", FutureWarning)
        for model in models.values():
            model.fit(x_train, y_train)
    return models


@dataclass
class Result:
    """Every model's fit and accuracy, and scikit-learn's accuracy beside it."""

    n_train: int
    n_test: int
    C: float
    l2: float
    fits: dict = field(default_factory=dict)            # model -> Fit
    test_accuracy: dict = field(default_factory=dict)   # model -> accuracy
    train_accuracy: dict = field(default_factory=dict)
    sklearn_accuracy: dict = field(default_factory=dict)  # model -> matched sklearn accuracy
    # J of our cross-entropy objective at LogisticRegression's solution: the same
    # objective, so it should equal fits["cross_entropy"].objective closely.
    sklearn_cross_entropy_objective: float = float("nan")


def compute(quick=False, C=0.1, models=MODELS, compare=True):
    """Train every model on the digits split and compare with scikit-learn.

    ``quick`` caps L-BFGS-B at 300 iterations (the hinge models otherwise
    run for over a thousand); the data are the same.
    """
    with single_threaded_blas():
        return _compute(quick, C, models, compare)


def _compute(quick, C, models, compare):
    x_train, x_test, y_train, y_test = digits_split()
    n_classes = int(y_train.max()) + 1
    l2 = 1.0 / (len(y_train) * C)
    result = Result(len(y_train), len(y_test), C, l2)
    for model in models:
        fit = fit_linear(score_loss(model, y_train, n_classes), x_train, n_classes, l2,
                         max_iter=300 if quick else 15000)
        result.fits[model] = fit
        result.test_accuracy[model] = float(np.mean(fit.predict(x_test) == y_test))
        result.train_accuracy[model] = float(np.mean(fit.predict(x_train) == y_train))
    if compare:
        references = sklearn_models(x_train, y_train, C)
        for model in models:
            if model in references:
                accuracy = references[model].score(x_test, y_test)
                result.sklearn_accuracy[model] = float(accuracy)
        if "cross_entropy" in models:
            logistic = references["cross_entropy"]
            result.sklearn_cross_entropy_objective = objective(
                score_loss("cross_entropy", y_train, n_classes), x_train,
                logistic.coef_.T, logistic.intercept_, l2)[0]
    return result


def report(result):
    """Accuracy and iterations of each model, beside scikit-learn's."""
    lines = [f"Digits: {result.n_train} train / {result.n_test} test samples, "
             f"C = {result.C:g} (lambda = 1/(n C) = {result.l2:.3g}), L-BFGS-B from zero",
             f"  {'model':>24} {'test acc':>9} {'train acc':>10} {'iterations':>11} "
             f"{'f evals':>8}   scikit-learn"]
    for model, fit in result.fits.items():
        line = (f"  {LABELS[model]:>24} {result.test_accuracy[model]:9.4f} "
                f"{result.train_accuracy[model]:10.4f} {fit.iterations:11d} "
                f"{fit.evaluations:8d}")
        if model in result.sklearn_accuracy:
            diff = 100 * (result.test_accuracy[model] - result.sklearn_accuracy[model])
            line += (f"   {REFERENCE_MODEL[model]} {result.sklearn_accuracy[model]:.4f} "
                     f"({diff:+.2f} points)")
        lines.append(line)
    if "cross_entropy" in result.fits and result.sklearn_accuracy:
        lines.append(f"  cross-entropy objective J: fastloss + L-BFGS-B "
                     f"{result.fits['cross_entropy'].objective:.8f}, at LogisticRegression's "
                     f"solution {result.sklearn_cross_entropy_objective:.8f}")
    return "\n".join(lines)


def plot(result, out_dir):
    """One figure: test accuracy of each model beside its scikit-learn counterpart."""
    from ._plot import COLOURS, new_figure, save

    fig, (ax,) = new_figure(1, width=7.0, height=4.2)
    models = list(result.fits)
    positions = np.arange(len(models))
    width = 0.38
    ours = [100 * result.test_accuracy[m] for m in models]
    bars = ax.bar(positions - width / 2, ours, width,
                  color=[COLOURS.get(m, "#d62728") for m in models], label="fastloss + L-BFGS-B")
    for bar, model in zip(bars, models):
        ax.annotate(f"{bar.get_height():.1f}%\n{result.fits[model].iterations} it.",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    matched = [m for m in models if m in result.sklearn_accuracy]
    theirs = [100 * result.sklearn_accuracy[m] for m in matched]
    ref_bars = ax.bar(positions[[models.index(m) for m in matched]] + width / 2, theirs, width,
                      color="lightgrey", edgecolor="grey", label="scikit-learn, same C")
    for bar, model in zip(ref_bars, matched):
        ax.annotate(f"{bar.get_height():.1f}%", (bar.get_x() + bar.get_width() / 2,
                                                  bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(positions, [LABELS[m].replace(" ", "\n", 1) for m in models], fontsize=9)
    low = min(ours + theirs)
    ax.set(ylabel="test accuracy (%, axis cut)", ylim=(max(0, low - 8), 100.5),
           title=f"Linear models on digits (C = {result.C:g})")
    ax.legend(loc="upper right")
    return [save(fig, out_dir, "digits")]
