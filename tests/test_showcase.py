"""The showcase's claims, asserted numerically at a small size (no matplotlib needed).

Each expected value is derived independently of fastloss: closed forms
evaluated with ``math``, or scikit-learn's own models.
"""
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
from showcase import (cross_entropy_variants, digits, hinge_vs_cross_entropy,  # noqa: E402
                      learning_speed, margin_losses, sigmoid_derivative)


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
