"""Experiment 7: MSE is the Gaussian likelihood with a fixed variance; gaussian_nll learns it.

Minimising the mean squared error is maximising the likelihood of a Gaussian
whose variance is the same everywhere.  When the noise is heteroscedastic
(its spread depends on x), a model trained with MSE can still find the mean,
but the one variance it implies (the mean squared residual) is too wide where
the data are quiet and too narrow where they are noisy.  ``gaussian_nll``
with a learned variance fits both: its prediction intervals hold their
nominal coverage across x.

Data: x uniform on [-3, 3], y = sin(x) + sigma(x) eps with
sigma(x) = 0.05 + 0.3 (x + 3) / 6 (from 0.05 to 0.35).  Both models are
linear in the same features phi(x), the Legendre polynomials of x / 3 up to
degree 7; the MSE model predicts the mean phi a (its variance is the mean
squared training residual, the Gaussian maximum-likelihood estimate of one
fixed variance), the Gaussian model the mean phi a and the variance
exp(phi b).  Both are fitted to convergence by
SciPy's L-BFGS-B on fastloss's losses and gradients (``mse``;
``gaussian_nll`` and its gradients for the mean and the variance, chained
through exp).  Calibration is measured on fresh test data: the fraction of
test points inside each model's central 50%, 80% and 95% intervals,
mean +- z sd, overall and in six bins of x.  The true conditional
distribution (mean sin x, sd sigma(x)) is measured the same way: its
deviations from the nominal levels are the sampling noise of the test set.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

import fastloss as fl

from ._common import single_threaded_blas

NAME = "heteroscedastic"
LEVELS = (0.5, 0.8, 0.95)           # nominal coverage of the central intervals measured
N_BINS = 6
DEGREE = 7                          # of the polynomial features of both models
MODELS = ("mse", "gaussian_nll")


def z_of(level):
    """The half-width, in standard deviations, of the central interval of ``level``."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def noise_sd(x):
    """The true standard deviation of y at x."""
    return 0.05 + 0.3 * (x + 3.0) / 6.0


def make_data(rng, n):
    """n samples (x, y) of the heteroscedastic problem."""
    x = rng.uniform(-3.0, 3.0, n)
    y = np.sin(x) + noise_sd(x) * rng.standard_normal(n)
    return x, y


def features(x, degree=DEGREE):
    """Legendre polynomials P_0 .. P_degree of x / 3: an (n, degree + 1) design matrix.

    Orthogonal on [-3, 3], so the least-squares problems are well conditioned
    and L-BFGS-B converges in about a hundred iterations.
    """
    return np.polynomial.legendre.legvander(np.asarray(x) / 3.0, degree)


def mse_objective(phi, y, a):
    """mean (phi a - y)^2 and its gradient with respect to a."""
    loss, g = fl.mse(phi @ a, y)
    return loss, phi.T @ g


def nll_objective(phi, y, a, b):
    """mean gaussian_nll(phi a, y, exp(phi b)) and its gradients with respect to a and b."""
    var = np.exp(phi @ b)
    loss, (g_mean, g_var) = fl.gaussian_nll(phi @ a, y, var)
    return loss, phi.T @ g_mean, phi.T @ (g_var * var)    # d var / d (phi b) = var


def _minimise(objective, size):
    """L-BFGS-B from zero on objective(w) -> (value, gradient); the minimiser."""
    from scipy.optimize import minimize

    done = minimize(objective, np.zeros(size), jac=True, method="L-BFGS-B",
                    options={"maxiter": 5_000, "gtol": 1e-10, "ftol": 1e-14})
    return done.x, done.nit


def fit_mse(phi, y):
    """Mean weights a minimising mean (phi a - y)^2, the one variance it implies, iterations."""
    a, nit = _minimise(lambda w: mse_objective(phi, y, w), phi.shape[1])
    residual = phi @ a - y
    return a, float(np.mean(residual * residual)), nit     # the Gaussian MLE of a fixed variance


def fit_gaussian_nll(phi, y):
    """Weights (a, b) of mean phi a and variance exp(phi b) minimising gaussian_nll, iterations."""
    k = phi.shape[1]

    def objective(w):
        loss, grad_a, grad_b = nll_objective(phi, y, w[:k], w[k:])
        return loss, np.concatenate([grad_a, grad_b])

    w, nit = _minimise(objective, 2 * k)
    return w[:k], w[k:], nit


@dataclass
class Result:
    """Both models' predictions on a grid and their measured calibration."""

    n_train: int
    n_test: int
    x_train: np.ndarray
    y_train: np.ndarray
    grid: np.ndarray
    mean: dict                  # model -> predicted mean on the grid
    sd: dict                    # model -> predicted standard deviation on the grid
    true_sd: np.ndarray         # on the grid
    bin_edges: np.ndarray
    coverage: dict              # model or "truth" -> (len(LEVELS), N_BINS) coverage per bin
    overall: dict               # model or "truth" -> (len(LEVELS),) overall coverage
    test_nll: dict              # model or "truth" -> mean Gaussian NLL (full) on the test set
    iterations: dict            # model -> L-BFGS-B iterations
    mse_sd: float               # the MSE model's one standard deviation

    def worst_bin_error(self, name):
        """max over levels and bins of |coverage - nominal|."""
        return float(np.max(np.abs(self.coverage[name] - np.array(LEVELS)[:, None])))


def coverage_by_bin(x, y, mean, sd, edges):
    """Coverage of each central interval of LEVELS: ((levels, bins) per bin, (levels,) overall)."""
    which = np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2)
    distance = np.abs(y - mean) / sd
    per_bin = np.empty((len(LEVELS), len(edges) - 1))
    overall = np.empty(len(LEVELS))
    for i, level in enumerate(LEVELS):
        inside = distance <= z_of(level)
        overall[i] = inside.mean()
        for k in range(len(edges) - 1):
            per_bin[i, k] = inside[which == k].mean()
    return per_bin, overall


def compute(quick=False, seed=0):
    """Fit both models on one training set and measure them on a fresh test set."""
    rng = np.random.default_rng(seed)
    n_train, n_test = (1_000, 12_000) if quick else (3_000, 60_000)
    x, y = make_data(rng, n_train)
    x_test, y_test = make_data(rng, n_test)
    phi, phi_test = features(x), features(x_test)
    grid = np.linspace(-3.0, 3.0, 301)
    phi_grid = features(grid)

    with single_threaded_blas():
        a_mse, var_mse, nit_mse = fit_mse(phi, y)
        a_nll, b_nll, nit_nll = fit_gaussian_nll(phi, y)

    edges = np.linspace(-3.0, 3.0, N_BINS + 1)
    predictors = {
        "mse": (lambda p: p @ a_mse, lambda p: np.full(p.shape[0], np.sqrt(var_mse))),
        "gaussian_nll": (lambda p: p @ a_nll, lambda p: np.sqrt(np.exp(p @ b_nll))),
    }
    mean, sd, coverage, overall, test_nll = {}, {}, {}, {}, {}
    for name, (mean_of, sd_of) in predictors.items():
        mean[name], sd[name] = mean_of(phi_grid), sd_of(phi_grid)
        m_test, s_test = mean_of(phi_test), sd_of(phi_test)
        coverage[name], overall[name] = coverage_by_bin(x_test, y_test, m_test, s_test, edges)
        test_nll[name] = fl.gaussian_nll(m_test, y_test, s_test ** 2, full=True,
                                         grad=False).loss
    true_mean, true_sd = np.sin(x_test), noise_sd(x_test)
    coverage["truth"], overall["truth"] = coverage_by_bin(x_test, y_test, true_mean, true_sd,
                                                          edges)
    test_nll["truth"] = fl.gaussian_nll(true_mean, y_test, true_sd ** 2, full=True,
                                        grad=False).loss
    return Result(n_train, n_test, x, y, grid, mean, sd, noise_sd(grid), edges, coverage,
                  overall, test_nll, {"mse": nit_mse, "gaussian_nll": nit_nll},
                  float(np.sqrt(var_mse)))


LABELS = {"mse": "MSE", "gaussian_nll": "gaussian_nll", "truth": "true sd"}


def report(result):
    """Coverage of the nominal intervals, per bin of x and overall, and the test NLL."""
    edges = result.bin_edges
    bins = " ".join(f"[{lo:+.0f},{hi:+.0f})" for lo, hi in zip(edges[:-1], edges[1:]))
    lines = [f"Heteroscedastic regression: {result.n_train} training / {result.n_test} test "
             f"samples, true sd 0.05 to 0.35; MSE's one sd {result.mse_sd:.4f}; L-BFGS-B "
             f"iterations: MSE {result.iterations['mse']}, "
             f"gaussian_nll {result.iterations['gaussian_nll']}",
             "  coverage of the central interval on test data, by bin of x",
             f"  {'nominal':>7}  {'model':<13} {bins}  overall"]
    for i, level in enumerate(LEVELS):
        for name in ("mse", "gaussian_nll", "truth"):
            cells = " ".join(f"{c:7.3f}" for c in result.coverage[name][i])
            lines.append(f"  {level:7.2f}  {LABELS[name]:<13} {cells}  "
                         f"{result.overall[name][i]:7.3f}")
    lines.append("  worst |coverage - nominal| over levels and bins: " + ", ".join(
        f"{LABELS[name]} {result.worst_bin_error(name):.3f}"
        for name in ("mse", "gaussian_nll", "truth")))
    lines.append("  test negative log-likelihood (full): " + ", ".join(
        f"{LABELS[name]} {result.test_nll[name]:.4f}" for name in ("mse", "gaussian_nll", "truth")))
    return "\n".join(lines)


def plot(result, out_dir):
    """Two panels: the data with each model's 95% band, and the coverage per bin."""
    from ._plot import COLOURS, new_figure, save

    fig, (left, right) = new_figure(2, width=5.5, height=4.2)
    left.scatter(result.x_train, result.y_train, s=3, color="#999999", alpha=0.5, label="data")
    z95 = z_of(0.95)
    for name, label in (("mse", "MSE (one variance)"), ("gaussian_nll", "gaussian_nll")):
        colour = COLOURS[name]
        lo = result.mean[name] - z95 * result.sd[name]
        hi = result.mean[name] + z95 * result.sd[name]
        left.plot(result.grid, result.mean[name], color=colour, label=f"{label}: mean")
        left.fill_between(result.grid, lo, hi, color=colour, alpha=0.18,
                          label=f"{label}: 95% interval")
    true_mean = np.sin(result.grid)
    for sign in (-1, 1):
        left.plot(result.grid, true_mean + sign * z95 * result.true_sd, color="black",
                  linestyle=":", linewidth=1, label="true 95% interval" if sign < 0 else None)
    left.set(xlabel="x", ylabel="y", title="Predicted mean and 95% interval")
    left.legend(fontsize=8, loc="upper left")

    centres = 0.5 * (result.bin_edges[:-1] + result.bin_edges[1:])
    styles = {"mse": "-", "gaussian_nll": "-", "truth": ":"}
    for i, level in enumerate(LEVELS):
        right.axhline(level, color="#bbbbbb", linewidth=1)
        for name in ("mse", "gaussian_nll"):
            right.plot(centres, result.coverage[name][i], marker="o", color=COLOURS[name],
                       linestyle=styles[name],
                       label=f"{LABELS[name]}" if i == 0 else None)
    right.set(xlabel="x (bin centre)", ylabel="coverage on test data", ylim=(0.2, 1.02),
              title="Coverage of the 50/80/95% intervals (grey: nominal)")
    right.legend(fontsize=8, loc="lower left")
    return [save(fig, out_dir, "heteroscedastic")]
