"""The showcase's claims, asserted numerically at a small size (no matplotlib needed).

Each expected value is derived independently of fastloss: closed forms
evaluated with ``math``, or scikit-learn's own models.
"""
import functools
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import finite_difference_gradient, load_showcase

pytest.importorskip("scipy")
pytest.importorskip("sklearn")
load_showcase()     # examples/showcase, as the package ``showcase``

from showcase import EXPERIMENTS, load  # noqa: E402
from showcase import (cross_entropy_variants, digits, heteroscedastic,  # noqa: E402
                      hinge_vs_cross_entropy, imbalanced, learning_speed, margin_losses,
                      sigmoid_derivative)


def exact_sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def exact_sigmoid_derivative(z):
    return math.exp(-abs(z)) / (1.0 + math.exp(-abs(z))) ** 2


# --- experiment 1: learning speed -------------------------------------------------

@pytest.mark.parametrize("y", [0.0, 1.0, 0.3])
def test_mse_gradient_is_cross_entropy_gradient_times_sigmoid_derivative(y):
    # dL_mse/dz = (a - y) sigma'(z) and dL_ce/dz = a - y for one sample.
    zs = np.array([-6.0, -1.5, 0.0, 0.7, 4.0, 9.0])
    for z in zs:
        z_arr, y_arr = np.array([z]), np.array([y])
        _, mse_dz = learning_speed.loss_and_dz("mse", z_arr, y_arr)
        _, ce_dz = learning_speed.loss_and_dz("cross_entropy", z_arr, y_arr)
        a = exact_sigmoid(z)
        assert ce_dz[0] == pytest.approx(a - y, rel=1e-12, abs=1e-15)
        assert mse_dz[0] == pytest.approx((a - y) * exact_sigmoid_derivative(z),
                                          rel=1e-12, abs=1e-15)


def test_mse_gradient_matches_finite_differences():
    # The chain rule through sigma, checked against the loss value alone.
    z = np.array([-3.0, -0.4, 0.5, 2.0, 4.0])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.0])
    for loss in learning_speed.LOSSES:
        _, dz = learning_speed.loss_and_dz(loss, z, y)
        numeric = finite_difference_gradient(
            lambda v: learning_speed.loss_and_dz(loss, v, y)[0], z)
        np.testing.assert_allclose(dz, numeric, rtol=1e-7, atol=1e-10)


def test_neuron_mse_starts_slower_by_the_sigmoid_derivative():
    result = learning_speed.neuron()
    mse, ce = result.runs["mse"], result.runs["cross_entropy"]
    z0 = result.w0 * result.x + result.b0
    # Same weights at epoch 0: the ratio is exactly sigma'(4) ~ 0.0177.
    assert mse.grad_z[0] / ce.grad_z[0] == pytest.approx(exact_sigmoid_derivative(z0), rel=1e-10)
    assert mse.grad_z[0] / ce.grad_z[0] < 0.02
    # Early epochs: the quadratic gradient stays far smaller.
    assert np.all(np.abs(mse.grad_z[:20]) < 0.1 * np.abs(ce.grad_z[:20]))
    ce_epochs, mse_epochs = result.epochs_to_learn["cross_entropy"], result.epochs_to_learn["mse"]
    assert ce_epochs is not None and mse_epochs is not None
    assert mse_epochs > 5 * ce_epochs


def test_breast_cancer_saturated_start():
    result = learning_speed.breast_cancer(epochs=200)
    x_train, _, y_train, _ = learning_speed.breast_cancer_split()
    z0 = x_train @ np.full(x_train.shape[1], result.initial_weight)
    # Per sample at the start (gradients of the mean over n samples):
    # dL_mse/dz_i = (a_i - y_i) sigma'(z_i) / n and dL_ce/dz_i = (a_i - y_i) / n.
    n = len(y_train)
    _, mse_dz = learning_speed.loss_and_dz("mse", z0, y_train)
    _, ce_dz = learning_speed.loss_and_dz("cross_entropy", z0, y_train)
    slope = np.array([exact_sigmoid_derivative(z) for z in z0])
    # a - y is formed from the rounded output a, as the MSE path does.
    error = np.array([exact_sigmoid(z) for z in z0]) - y_train
    np.testing.assert_allclose(mse_dz, error * slope / n, rtol=1e-10, atol=1e-300)
    # The ratio to cross-entropy's gradient is sigma'(z_i) wherever a - y is not
    # dominated by the rounding of a (cross-entropy forms a - y without cancellation).
    clear = np.abs(error) > 1e-6
    assert clear.sum() > 100
    np.testing.assert_allclose(mse_dz[clear] / ce_dz[clear], slope[clear], rtol=1e-8)
    mse, ce = result.runs["mse"], result.runs["cross_entropy"]
    assert ce.train_accuracy[0] < 0.2                   # confidently wrong at the start
    assert mse.mean_abs_grad_z[0] < 0.05 * ce.mean_abs_grad_z[0]
    ce_epochs = result.epochs_to_target["cross_entropy"]
    assert ce_epochs is not None and ce_epochs <= 30
    mse_epochs = result.epochs_to_target["mse"]
    assert mse_epochs is None or mse_epochs > 5 * ce_epochs
    assert ce.test_accuracy >= 0.95


# --- experiment 2: the two multiclass cross-entropies ----------------------------

def test_cross_entropy_variants_differ_by_a_bounded_offset():
    result = cross_entropy_variants.compute(quick=True)
    p, n_classes = result.p_correct, result.n_classes
    q = (1 - p) / (n_classes - 1)
    np.testing.assert_allclose(result.standard, -np.log(p), rtol=1e-12)
    np.testing.assert_allclose(result.variant, -np.log(p) - (n_classes - 1) * np.log1p(-q),
                               rtol=1e-12)
    # 1 - p <= offset <= (1 - p) / (1 - q), from u <= -log(1 - u) <= u / (1 - u).
    offset = result.offset
    assert np.all(offset >= (1 - p) - 1e-12)
    assert np.all(offset <= (1 - p) / (1 - q) + 1e-12)
    assert offset.max() <= 0.99 / (1 - 0.99 / 9) + 1e-12     # ~1.11 for 10 classes
    # Similar rates: d variant/dp = d standard/dp (1 + p / (1 - q)), between 1x and 2x.
    inner = (p >= 0.1) & (p < p.max())
    np.testing.assert_allclose(result.slope_ratio[inner], (1 + p / (1 - q))[inner], rtol=2e-2)
    assert np.all((result.slope_ratio[1:-1] > 1) & (result.slope_ratio[1:-1] < 2))


# --- experiment 3: the sigmoid derivative -------------------------------------------

def test_sigmoid_derivative_vanishes():
    result = sigmoid_derivative.compute(quick=True)
    expected = np.array([exact_sigmoid_derivative(z) for z in result.z])
    np.testing.assert_allclose(result.derivative, expected, rtol=1e-12)
    assert result.peak == pytest.approx(0.25, rel=1e-12) and result.peak_at == 0
    step = result.z[1] - result.z[0]
    for f in result.fractions:
        cutoff = result.exact_cutoff[f]
        assert exact_sigmoid_derivative(cutoff) == pytest.approx(f / 4, rel=1e-10)
        assert cutoff <= result.measured_cutoff[f] <= cutoff + step + 1e-12


# --- experiment 4: losses against the margin ----------------------------------------

def test_margin_losses_match_their_formulas_and_bound_the_zero_one_loss():
    result = margin_losses.compute(quick=True)
    m = result.margin
    losses = result.losses
    np.testing.assert_allclose(losses["hinge"], np.maximum(0, 1 - m), atol=1e-15)
    np.testing.assert_allclose(losses["squared_hinge"], np.maximum(0, 1 - m) ** 2, atol=1e-14)
    logistic = np.array([math.log1p(math.exp(-v)) / math.log(2) for v in m])
    np.testing.assert_allclose(losses["cross_entropy"], logistic, rtol=1e-12)
    np.testing.assert_allclose(losses["mse"], (1 - m) ** 2, rtol=1e-12, atol=1e-14)
    for name in ("hinge", "squared_hinge", "cross_entropy"):
        assert np.all(losses[name] >= losses["zero_one"])
    past = m >= 1
    assert np.all(losses["hinge"][past] == 0) and np.all(losses["cross_entropy"] > 0)
    assert np.all(np.diff(losses["mse"][past]) > 0)     # squared error grows past the margin


# --- experiment 5: hinge against cross-entropy -------------------------------------

def test_hinge_is_zero_where_the_margin_is_met_and_cross_entropy_is_not():
    result = hinge_vs_cross_entropy.compute(quick=True)
    met = result.example_lead >= result.margin
    assert met.sum() >= 3 and (~met).sum() >= 1
    ce_loss, ce_grad = result.examples["cross_entropy"]
    for kind in hinge_vs_cross_entropy.KINDS:
        loss, grad = result.examples[kind]
        assert np.all(loss[met] == 0.0) and np.all(grad[met] == 0.0)
        assert np.all(loss[~met] > 0)
    assert np.all(ce_loss > 0) and np.all(np.abs(ce_grad[met]).max(axis=1) > 0)
    for i, scores in enumerate(result.example_scores):
        # -log softmax(s)_0 = log sum_j exp(s_j - s_0)
        expected = math.log(sum(math.exp(s - scores[0]) for s in scores))
        assert ce_loss[i] == pytest.approx(expected, rel=1e-12)
    lead = result.lead
    sweep = result.sweep
    np.testing.assert_allclose(sweep["weston_watkins"], 2 * np.maximum(0, 1 - lead), atol=1e-12)
    np.testing.assert_allclose(sweep["crammer_singer"], np.maximum(0, 1 - lead), atol=1e-12)
    np.testing.assert_allclose(sweep["cross_entropy"],
                               [math.log1p(2 * math.exp(-v)) for v in lead], rtol=1e-12)


# --- experiment 6: linear models on digits -----------------------------------------

@pytest.fixture(scope="module")
def digits_quick():
    return digits.compute(quick=True)


def test_digits_models_reach_their_accuracy(digits_quick):
    accuracy = digits_quick.test_accuracy
    assert accuracy["cross_entropy"] >= 0.96
    assert accuracy["weston_watkins"] >= 0.95
    assert accuracy["crammer_singer"] >= 0.95
    assert accuracy["mse"] >= 0.92


def test_digits_models_match_scikit_learn_within_a_point(digits_quick):
    for model, theirs in digits_quick.sklearn_accuracy.items():
        assert abs(digits_quick.test_accuracy[model] - theirs) <= 0.01, model
    assert set(digits_quick.sklearn_accuracy) == {"cross_entropy", "weston_watkins",
                                                 "crammer_singer"}


def test_digits_cross_entropy_objective_is_logistic_regressions(digits_quick):
    # Same objective (lambda = 1/(n C)): L-BFGS-B on fastloss reaches the value
    # LogisticRegression's solution has, up to scikit-learn's tolerance.
    ours = digits_quick.fits["cross_entropy"].objective
    theirs = digits_quick.sklearn_cross_entropy_objective
    assert ours == pytest.approx(theirs, rel=1e-3)
    assert ours <= theirs * (1 + 1e-6)


def test_digits_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(7, 3))
    labels = rng.integers(0, 4, size=7)
    bias = rng.normal(size=4)
    for model in digits.MODELS:
        loss = digits.score_loss(model, labels, 4)
        weights = rng.normal(size=(3, 4))
        _, grad_weights, _ = digits.objective(loss, features, weights, bias, 0.3)
        numeric = finite_difference_gradient(
            lambda w: digits.objective(loss, features, w, bias, 0.3)[0], weights, step=1e-6)
        np.testing.assert_allclose(grad_weights, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_digits_full_run_matches_scikit_learn():
    result = digits.compute()
    for model, theirs in result.sklearn_accuracy.items():
        assert abs(result.test_accuracy[model] - theirs) <= 0.01, model
    assert min(result.test_accuracy[m] for m in ("cross_entropy", "weston_watkins",
                                                 "crammer_singer")) >= 0.95


# --- experiment 7: heteroscedastic regression -------------------------------------

SEEDS = (0, 1, 2)        # the measured claims hold for each of these training sets


@functools.lru_cache(maxsize=None)
def quick_result(module, seed):
    return module.compute(quick=True, seed=seed)


@pytest.fixture(params=SEEDS)
def heteroscedastic_quick(request):
    return quick_result(heteroscedastic, request.param)


def test_heteroscedastic_interval_half_widths():
    # Phi(z) = 1/2 + level/2, checked with math.erf.
    for level in heteroscedastic.LEVELS:
        z = heteroscedastic.z_of(level)
        assert math.erf(z / math.sqrt(2)) == pytest.approx(level, rel=1e-12)


def test_heteroscedastic_nll_gradient_matches_finite_differences():
    # The gradients for the mean and the variance, chained through exp, against
    # the loss value alone.
    rng = np.random.default_rng(0)
    x, y = heteroscedastic.make_data(rng, 40)
    phi = heteroscedastic.features(x)
    a, b = rng.normal(size=phi.shape[1]) * 0.3, rng.normal(size=phi.shape[1]) * 0.3
    _, grad_a, grad_b = heteroscedastic.nll_objective(phi, y, a, b)
    numeric_a = finite_difference_gradient(
        lambda v: heteroscedastic.nll_objective(phi, y, v, b)[0], a, step=1e-6)
    numeric_b = finite_difference_gradient(
        lambda v: heteroscedastic.nll_objective(phi, y, a, v)[0], b, step=1e-6)
    np.testing.assert_allclose(grad_a, numeric_a, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(grad_b, numeric_b, rtol=1e-5, atol=1e-8)


def expected_fixed_sd_coverage(sd, lo, hi, level, points=2001):
    """Coverage of mean +- z sd for the true mean over x uniform on [lo, hi]:
    the average of erf(z sd / (sigma(x) sqrt 2)), sigma(x) = 0.05 + 0.05 (x + 3)."""
    z = heteroscedastic.z_of(level)
    xs = np.linspace(lo, hi, points)
    return float(np.mean([math.erf(z * sd / ((0.05 + 0.05 * (v + 3)) * math.sqrt(2)))
                          for v in xs]))


def test_heteroscedastic_mse_variance_is_the_average_noise(heteroscedastic_quick):
    # The mean squared residual estimates E[sigma(x)^2] = 0.0475 for x uniform on
    # [-3, 3] (the mean of (0.05 + 0.3 u)^2 over u in [0, 1]).
    assert heteroscedastic_quick.mse_sd == pytest.approx(math.sqrt(0.0475), rel=0.1)


def test_heteroscedastic_mse_coverage_is_its_closed_form(heteroscedastic_quick):
    # One sd for all x: per bin, the coverage is what that sd gives against the
    # true noise, too wide where the data are quiet, too narrow where noisy.
    result = heteroscedastic_quick
    edges = result.bin_edges
    for i, level in enumerate(heteroscedastic.LEVELS):
        expected = [expected_fixed_sd_coverage(result.mse_sd, lo, hi, level)
                    for lo, hi in zip(edges[:-1], edges[1:])]
        np.testing.assert_allclose(result.coverage["mse"][i], expected, atol=0.05)
        assert result.coverage["mse"][i][0] > level > result.coverage["mse"][i][-1]


def test_heteroscedastic_gaussian_nll_is_calibrated_in_every_bin(heteroscedastic_quick):
    result = heteroscedastic_quick
    # The harness: the true distribution covers its nominal levels up to sampling noise
    # (about 2000 test points per bin: a standard error of at most 0.012).
    assert result.worst_bin_error("truth") < 0.05
    # MSE's worst bin is off by what its closed form says (0.44 at the 50% level of
    # the quietest bin); gaussian_nll's is several times smaller.
    lo, hi = result.bin_edges[:2]
    closed_form = expected_fixed_sd_coverage(result.mse_sd, lo, hi, 0.5) - 0.5
    assert result.worst_bin_error("mse") >= closed_form - 0.05 > 0.3
    assert result.worst_bin_error("gaussian_nll") < result.worst_bin_error("mse") / 3
    assert result.test_nll["gaussian_nll"] < result.test_nll["mse"]


# --- experiment 8: a rare class ----------------------------------------------------

@pytest.fixture(params=SEEDS)
def imbalanced_quick(request):
    return quick_result(imbalanced, request.param)


def test_imbalanced_metrics_are_scikit_learns(imbalanced_quick):
    from sklearn.metrics import average_precision_score, precision_score, recall_score

    y = imbalanced_quick.y_test
    for label, score in imbalanced_quick.scores.items():
        m = imbalanced_quick.metrics[label]
        assert m["average_precision"] == pytest.approx(average_precision_score(y, score),
                                                       rel=1e-12)
        assert m["recall"] == pytest.approx(recall_score(y, score > 0), rel=1e-12)
        assert m["precision"] == pytest.approx(precision_score(y, score > 0), rel=1e-12)


def test_imbalanced_bayes_log_odds_is_the_posterior():
    # log P(y=1 | x) / P(y=0 | x) from the two densities written out with math.
    x = np.array([[0.0, 0.0], [2.0, 1.5], [-1.0, 3.0], [4.0, -0.5]])
    mu, s, pi = imbalanced.POSITIVE_MEAN, imbalanced.POSITIVE_SD, imbalanced.POSITIVE_RATE
    for row, got in zip(x, imbalanced.bayes_log_odds(x)):
        positive = math.exp(-((row[0] - mu[0]) ** 2 + (row[1] - mu[1]) ** 2) / (2 * s * s)) / s ** 2
        negative = math.exp(-(row[0] ** 2 + row[1] ** 2) / 2)
        assert got == pytest.approx(math.log(pi * positive / ((1 - pi) * negative)), rel=1e-12,
                                    abs=1e-12)


def test_imbalanced_focal_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, _ = imbalanced.make_data(rng, 30)
    y = (rng.random(30) < 0.3).astype(np.float64)
    phi = imbalanced.features(x)
    w = rng.normal(size=phi.shape[1]) * 0.5
    for _, loss, options in imbalanced.MODELS:
        _, grad = imbalanced.objective(phi, y, loss, options, w)
        numeric = finite_difference_gradient(
            lambda v: imbalanced.objective(phi, y, loss, options, v)[0], w, step=1e-6)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_imbalanced_implied_thresholds_minimise_the_pointwise_loss():
    # The minimiser over p of the expected focal loss at eta = implied_threshold is 1/2.
    from scipy.optimize import minimize_scalar

    for _, _, options in imbalanced.MODELS:
        eta = imbalanced.implied_threshold(options)
        alpha, gamma = options.get("alpha", -1.0), options.get("gamma", 0.0)
        a = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)

        def expected(p):
            return (a[0] * eta * (1 - p) ** gamma * -math.log(p)
                    + a[1] * (1 - eta) * p ** gamma * -math.log(1 - p))

        best = minimize_scalar(expected, bounds=(1e-6, 1 - 1e-6), method="bounded",
                               options={"xatol": 1e-10})
        assert best.x == pytest.approx(0.5, abs=1e-6)


def test_imbalanced_focal_loss_moves_the_operating_point_not_the_ranking(imbalanced_quick):
    result = imbalanced_quick
    m = result.metrics
    bce, low, plain, high = (m[label] for label, _, _ in imbalanced.MODELS)
    # Every model is as good a ranker as the others and as the Bayes scorer.
    aps = [m[label]["average_precision"] for label, _, _ in imbalanced.MODELS]
    assert max(aps) - min(aps) < 0.01
    assert max(abs(ap - m[imbalanced.BAYES]["average_precision"]) for ap in aps) < 0.02
    # At p > 0.5 each model is the Bayes rule at the threshold its loss implies.
    for label, _, options in imbalanced.MODELS:
        bayes = result.bayes_at[imbalanced.implied_threshold(options)]
        assert abs(m[label]["recall"] - bayes["recall"]) < 0.08, label
        assert abs(m[label]["precision"] - bayes["precision"]) < 0.1, label
    # Hence: gamma alone keeps BCE's operating point, alpha = 0.75 trades
    # precision for recall, alpha = 0.25 (torchvision's default) recall for precision.
    assert abs(plain["recall"] - bce["recall"]) < 0.02
    assert high["recall"] > bce["recall"] + 0.1 and high["precision"] < bce["precision"]
    assert low["recall"] < bce["recall"] - 0.1 and low["precision"] > bce["precision"]
    # BCE is calibrated (its mean probability on the positives is the Bayes one);
    # gamma pulls the probabilities towards 1/2.
    labels = [label for label, _, _ in imbalanced.MODELS]
    p = result.mean_probability
    assert p[labels[0]] == pytest.approx(p[imbalanced.BAYES], abs=0.03)
    assert p[labels[2]] > p[labels[0]] + 0.03


def test_new_figures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    for module in (heteroscedastic, imbalanced):
        for path in module.plot(quick_result(module, SEEDS[0]), tmp_path):
            assert path.suffix == ".png" and path.stat().st_size > 1000


# --- the command and the package boundary -----------------------------------------

def test_command_prints_the_numbers_without_figures(capsys):
    from showcase.__main__ import main

    assert main(["--no-figures", "--quick", "--only", "sigmoid_derivative",
                 "margin_losses"]) == 0
    printed = capsys.readouterr().out
    assert "== sigmoid_derivative" in printed and "== margin_losses" in printed
    assert "sigma'(z) peaks at 0.250000" in printed


def test_every_experiment_has_the_interface():
    for name in EXPERIMENTS:
        module = load(name)
        assert module.NAME == name
        for function in ("compute", "report", "plot"):
            assert callable(getattr(module, function)) and getattr(module, function).__doc__
    with pytest.raises(ValueError, match="unknown experiment"):
        load("nope")


def test_figures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    for module in (sigmoid_derivative, margin_losses, hinge_vs_cross_entropy):
        for path in module.plot(module.compute(quick=True), tmp_path):
            assert path.suffix == ".png" and path.stat().st_size > 1000


def test_the_documented_command_runs_against_the_imported_fastloss(tmp_path):
    """``python examples/showcase``, in a fresh process, with only the fastloss these
    tests import on its path (as an installed package would be)."""
    import fastloss

    showcase = Path(load_showcase().__file__).parent
    env = dict(os.environ, PYTHONPATH=str(Path(fastloss.__file__).resolve().parent.parent))
    done = subprocess.run([sys.executable, str(showcase), "--no-figures", "--quick",
                           "--only", "sigmoid_derivative"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "sigma'(z) peaks at 0.250000" in done.stdout


def test_import_fastloss_does_not_import_the_showcase():
    code = ("import sys, fastloss; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'scipy', 'sklearn', 'showcase', 'examples')))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert printed == "[]"


def test_the_package_does_not_hold_the_showcase():
    import fastloss

    assert importlib.util.find_spec("fastloss.showcase") is None
    assert not (Path(fastloss.__file__).parent / "showcase").exists()
