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
linear in the same Gaussian bump features phi(x); the MSE model predicts the
mean phi a, the Gaussian model the mean phi a and the variance
exp(phi b).  Both are fitted by full-batch gradient descent with Adam on
fastloss's gradients (``mse``, and ``gaussian_nll``'s gradients for the mean
and the variance, chained through exp).  Calibration is measured on fresh
test data: the fraction of test points inside each model's central 90%
interval, mean +- 1.645 sd, overall and in six bins of x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastloss as fl

NAME = "heteroscedastic"
Z90 = 1.6448536269514722            # the standard normal's 95% quantile: a central 90% interval
N_BINS = 6


def noise_sd(x):
    """The true standard deviation of y at x."""
    return 0.05 + 0.3 * (x + 3.0) / 6.0


def make_data(rng, n):
    """n samples (x, y) of the heteroscedastic problem."""
    x = rng.uniform(-3.0, 3.0, n)
    y = np.sin(x) + noise_sd(x) * rng.standard_normal(n)
    return x, y


def features(x, n_centres=12):
    """Gaussian bumps on [-3, 3] and a constant: an (n, n_centres + 1) design matrix."""
    centres = np.linspace(-3.0, 3.0, n_centres)
    width = centres[1] - centres[0]
    bumps = np.exp(-0.5 * ((x[:, None] - centres[None, :]) / width) ** 2)
    return np.hstack([bumps, np.ones((x.size, 1))])


class Adam:
    """Adam steps for one parameter vector (the usual defaults but the learning rate)."""

    def __init__(self, size, lr):
        self.lr, self.m, self.v, self.t = lr, np.zeros(size), np.zeros(size), 0

    def step(self, params, grad, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat = self.m / (1 - b1 ** self.t)
        v_hat = self.v / (1 - b2 ** self.t)
        params -= self.lr * m_hat / (np.sqrt(v_hat) + eps)


def fit_mse(phi, y, steps, lr=0.05):
    """Mean weights a minimising mean (phi a - y)^2, and the one variance it implies."""
    a = np.zeros(phi.shape[1])
    opt = Adam(a.size, lr)
    for _ in range(steps):
        _, g = fl.mse(phi @ a, y)
        opt.step(a, phi.T @ g)
    residual = phi @ a - y
    return a, float(np.mean(residual * residual))       # the Gaussian MLE of a fixed variance


def fit_gaussian_nll(phi, y, steps, lr=0.05):
    """Weights (a, b) of mean phi a and variance exp(phi b) minimising gaussian_nll."""
    a = np.zeros(phi.shape[1])
    b = np.zeros(phi.shape[1])
    opt_a, opt_b = Adam(a.size, lr), Adam(b.size, lr)
    for _ in range(steps):
        var = np.exp(phi @ b)
        _, (g_mean, g_var) = fl.gaussian_nll(phi @ a, y, var)
        opt_a.step(a, phi.T @ g_mean)
        opt_b.step(b, phi.T @ (g_var * var))            # d var / d (phi b) = var
    return a, b


@dataclass
class Result:
    """Both models' predictions on a grid and their measured calibration."""

    x_train: np.ndarray
    y_train: np.ndarray
    grid: np.ndarray
    mean: dict                  # model -> predicted mean on the grid
    sd: dict                    # model -> predicted standard deviation on the grid
    true_sd: np.ndarray         # on the grid
    bin_edges: np.ndarray
    coverage: dict              # model -> coverage of the 90% interval per bin of x
    overall: dict               # model -> overall coverage
    test_nll: dict              # model -> mean Gaussian negative log-likelihood on the test set


def coverage_by_bin(x, y, mean, sd, edges):
    """The fraction of points with |y - mean| <= Z90 sd, in each bin of x."""
    inside = np.abs(y - mean) <= Z90 * sd
    which = np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2)
    return np.array([inside[which == k].mean() for k in range(len(edges) - 1)]), inside.mean()


def compute(quick=False, seed=0):
    """Fit both models on one training set and measure them on a fresh test set."""
    rng = np.random.default_rng(seed)
    n_train, n_test, steps = (600, 4_000, 1_500) if quick else (3_000, 40_000, 3_000)
    x, y = make_data(rng, n_train)
    x_test, y_test = make_data(rng, n_test)
    phi, phi_test = features(x), features(x_test)
    grid = np.linspace(-3.0, 3.0, 301)
    phi_grid = features(grid)

    a_mse, var_mse = fit_mse(phi, y, steps)
    a_nll, b_nll = fit_gaussian_nll(phi, y, steps)

    edges = np.linspace(-3.0, 3.0, N_BINS + 1)
    models = {
        "mse": (lambda p: p @ a_mse, lambda p: np.full(p.shape[0], np.sqrt(var_mse))),
        "gaussian_nll": (lambda p: p @ a_nll, lambda p: np.sqrt(np.exp(p @ b_nll))),
    }
    mean, sd, coverage, overall, test_nll = {}, {}, {}, {}, {}
    for name, (mean_of, sd_of) in models.items():
        mean[name], sd[name] = mean_of(phi_grid), sd_of(phi_grid)
        m_test, s_test = mean_of(phi_test), sd_of(phi_test)
        coverage[name], overall[name] = coverage_by_bin(x_test, y_test, m_test, s_test, edges)
        test_nll[name] = fl.gaussian_nll(m_test, y_test, s_test ** 2, full=True,
                                         grad=False).loss
    return Result(x, y, grid, mean, sd, noise_sd(grid), edges, coverage, overall, test_nll)


def report(result):
    """Coverage of the nominal 90% intervals, per bin of x and overall."""
    lines = ["Heteroscedastic regression: coverage of the nominal 90% prediction interval",
             "  x bin          " + " ".join(f"[{lo:+.0f},{hi:+.0f})"
                                            for lo, hi in zip(result.bin_edges[:-1],
                                                              result.bin_edges[1:]))]
    for name in ("mse", "gaussian_nll"):
        cells = " ".join(f"{c:7.3f}" for c in result.coverage[name])
        worst = float(np.max(np.abs(result.coverage[name] - 0.9)))
        lines.append(f"  {name:<14} {cells}   overall {result.overall[name]:.3f}, "
                     f"worst bin off by {worst:.3f}, test NLL {result.test_nll[name]:.3f}")
    return "\n".join(lines)


def plot(result, out_dir):
    """Two panels: the data with each model's 90% band, and the coverage per bin."""
    from ._plot import COLOURS, new_figure, save

    fig, (left, right) = new_figure(2, width=5.5, height=4.2)
    left.scatter(result.x_train, result.y_train, s=3, color="#999999", alpha=0.5, label="data")
    for name, label in (("mse", "MSE (one variance)"), ("gaussian_nll", "gaussian_nll")):
        colour = COLOURS[name]
        lo = result.mean[name] - Z90 * result.sd[name]
        hi = result.mean[name] + Z90 * result.sd[name]
        left.plot(result.grid, result.mean[name], color=colour, label=f"{label}: mean")
        left.fill_between(result.grid, lo, hi, color=colour, alpha=0.18,
                          label=f"{label}: 90% interval")
    left.set(xlabel="x", ylabel="y", title="Predicted mean and 90% interval")
    left.legend(fontsize=8, loc="upper left")

    centres = 0.5 * (result.bin_edges[:-1] + result.bin_edges[1:])
    width = 0.4 * (result.bin_edges[1] - result.bin_edges[0])
    for offset, name in ((-0.5, "mse"), (0.5, "gaussian_nll")):
        right.bar(centres + offset * width, result.coverage[name], width=width,
                  color=COLOURS[name], label=name)
    right.axhline(0.9, color="black", linestyle=":", label="nominal 0.9")
    right.set(xlabel="x (bin centre)", ylabel="coverage on test data", ylim=(0.5, 1.02),
              title="Coverage of the 90% interval across x")
    right.legend(fontsize=8, loc="lower left")
    return [save(fig, out_dir, "heteroscedastic")]
