"""Experiment 1: learning speed of MSE against cross-entropy from a saturated start.

Claim: with a sigmoid output a = sigma(z), the quadratic loss learns slowly
when the neuron is badly wrong and saturated, and cross-entropy does not.
For one sample with L_mse = (a - y)^2 / 2 and L_ce = -(y log a + (1 - y) log(1 - a)),
the chain rule gives::

    dL_mse/dz = (a - y) sigma'(z)          dL_ce/dz = a - y

so at the same weights the quadratic gradient is the cross-entropy gradient
times sigma'(z) = sigma(z) (1 - sigma(z)) <= 1/4, which is tiny when |z| is
large (sigma'(4) ~ 0.018).  Both runs use plain gradient descent with the
same learning rate; MSE is fastloss's ``mse`` halved (the 1/2 of the classic
quadratic cost), and cross-entropy is ``binary_cross_entropy`` on the logit z.

Part A is the single neuron (input 1, target 0, weight = bias = 2, so
a = sigma(4) ~ 0.98); part B is logistic regression on scikit-learn's
bundled breast-cancer data (no download), started with every weight at 1:
the standardised features mostly grow with malignancy (label 0), so this
start is confidently wrong on ~90% of the samples.

References:
  Nielsen, "Neural Networks and Deep Learning", chapter 3 (2015).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import fastloss as fl
from ._common import sigmoid, sigmoid_derivative, single_threaded_blas

NAME = "learning_speed"
LOSSES = ("mse", "cross_entropy")


def loss_and_dz(loss, z, y):
    """(mean loss, dL/dz per sample) for a sigmoid output a = sigma(z) and targets y.

    "mse" is (a - y)^2 / 2 averaged over samples, "cross_entropy" the binary
    cross-entropy of sigma(z); both gradients are those of the mean.
    """
    if loss == "cross_entropy":
        return fl.binary_cross_entropy(z, y)
    value, grad_a = fl.mse(sigmoid(z), y)
    # d/dz of (a - y)^2 / 2 = (a - y) sigma'(z); fastloss's mse is (a - y)^2.
    return 0.5 * value, 0.5 * grad_a * sigmoid_derivative(z)


# --- part A: one neuron ------------------------------------------------------

@dataclass
class NeuronRun:
    """One loss's training history on the single neuron."""

    loss: np.ndarray            # loss after each epoch (index 0: the start)
    output: np.ndarray          # a = sigma(w x + b) after each epoch
    grad_z: np.ndarray          # dL/dz at each epoch's weights


@dataclass
class NeuronResult:
    """Part A: the setting and both runs."""

    x: float
    y: float
    w0: float
    b0: float
    learning_rate: float
    tolerance: float            # "learned" means |a - y| < tolerance
    runs: dict                  # loss name -> NeuronRun
    epochs_to_learn: dict       # loss name -> first epoch with |a - y| < tolerance (or None)


def train_neuron(loss, x=1.0, y=0.0, w0=2.0, b0=2.0, learning_rate=0.15, epochs=600):
    """Gradient descent on one sigmoid neuron; returns a :class:`NeuronRun`."""
    w, b = w0, b0
    xs, ys = np.array([x]), np.array([y])
    losses, outputs, grads = [], [], []
    for _ in range(epochs + 1):
        z = w * xs + b
        value, dz = loss_and_dz(loss, z, ys)
        losses.append(value)
        outputs.append(float(sigmoid(z)[0]))
        grads.append(float(dz[0]))
        # dL/dw = dL/dz * x and dL/db = dL/dz.
        w -= learning_rate * float(dz[0]) * x
        b -= learning_rate * float(dz[0])
    return NeuronRun(np.array(losses), np.array(outputs), np.array(grads))


def first_epoch(mask):
    """Index of the first True in ``mask``, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def neuron(epochs=600, learning_rate=0.15, tolerance=0.1, x=1.0, y=0.0, w0=2.0, b0=2.0):
    """Part A: the single saturated neuron trained with each loss."""
    runs = {loss: train_neuron(loss, x, y, w0, b0, learning_rate, epochs) for loss in LOSSES}
    learned = {loss: first_epoch(np.abs(run.output - y) < tolerance)
               for loss, run in runs.items()}
    return NeuronResult(x, y, w0, b0, learning_rate, tolerance, runs, learned)


# --- part B: logistic regression on breast cancer ------------------------------

@dataclass
class RegressionRun:
    """One loss's training history on breast cancer."""

    loss: np.ndarray            # training loss after each epoch
    train_accuracy: np.ndarray  # after each epoch
    test_accuracy: float        # at the end
    mean_abs_grad_z: np.ndarray  # mean over samples of |dL_i/dz_i|, each epoch


@dataclass
class RegressionResult:
    """Part B: the setting and both runs."""

    n_train: int
    n_test: int
    learning_rate: float
    initial_weight: float
    target_accuracy: float
    saturated_fraction: float   # share of training samples with sigma'(z) < 0.01 at the start
    runs: dict = field(default_factory=dict)
    epochs_to_target: dict = field(default_factory=dict)


def breast_cancer_split(seed=0):
    """Standardised train/test split (75/25, stratified) of the bundled data."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels.astype(np.float64), test_size=0.25, random_state=seed,
        stratify=labels)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


def breast_cancer(epochs=1000, learning_rate=0.5, initial_weight=1.0, target_accuracy=0.95):
    """Part B: full-batch gradient descent of a logistic model with each loss."""
    x_train, x_test, y_train, y_test = breast_cancer_split()
    z0 = x_train @ np.full(x_train.shape[1], initial_weight)
    result = RegressionResult(len(y_train), len(y_test), learning_rate, initial_weight,
                              target_accuracy,
                              float(np.mean(sigmoid_derivative(z0) < 0.01)))
    for loss in LOSSES:
        w = np.full(x_train.shape[1], initial_weight)
        b = 0.0
        losses, accuracy, grad_size = [], [], []
        for _ in range(epochs + 1):
            z = x_train @ w + b
            value, dz = loss_and_dz(loss, z, y_train)
            losses.append(value)
            accuracy.append(np.mean((z > 0) == (y_train == 1)))
            grad_size.append(np.sum(np.abs(dz)))   # dz is d(mean)/dz_i = (dL_i/dz_i) / n
            w -= learning_rate * (x_train.T @ dz)
            b -= learning_rate * float(np.sum(dz))
        test_accuracy = float(np.mean(((x_test @ w + b) > 0) == (y_test == 1)))
        run = RegressionRun(np.array(losses), np.array(accuracy), test_accuracy,
                            np.array(grad_size))
        result.runs[loss] = run
        result.epochs_to_target[loss] = first_epoch(run.train_accuracy >= target_accuracy)
    return result


# --- the experiment ------------------------------------------------------------

@dataclass
class Result:
    """Both parts of experiment 1."""

    neuron: NeuronResult
    breast_cancer: RegressionResult


def compute(quick=False):
    """Run both parts; ``quick`` shortens part B (for tests)."""
    with single_threaded_blas():
        return Result(neuron(), breast_cancer(epochs=200 if quick else 1000))


def _epochs(n):
    return "never" if n is None else f"{n}"


def report(result):
    """The numeric results as text."""
    a, b = result.neuron, result.breast_cancer
    mse, ce = a.runs["mse"], a.runs["cross_entropy"]
    z0 = a.w0 * a.x + a.b0
    lines = [
        f"Single neuron: x={a.x:g}, y={a.y:g}, w=b={a.w0:g} (z={z0:g}, a={mse.output[0]:.4f}), "
        f"learning rate {a.learning_rate:g}, {len(mse.loss) - 1} epochs",
        f"  epoch-0 dL/dz: MSE {mse.grad_z[0]:.5f}, cross-entropy {ce.grad_z[0]:.5f}, "
        f"ratio {mse.grad_z[0] / ce.grad_z[0]:.5f} = sigma'({z0:g}) "
        f"{float(sigmoid_derivative(z0)):.5f}",
        f"  epochs until |a - y| < {a.tolerance:g} (MSE loss < {a.tolerance ** 2 / 2:.3g}, "
        f"cross-entropy loss < {-np.log1p(-a.tolerance):.3g}): "
        f"MSE {_epochs(a.epochs_to_learn['mse'])}, "
        f"cross-entropy {_epochs(a.epochs_to_learn['cross_entropy'])}",
        f"  output after the last epoch: MSE {mse.output[-1]:.4f}, "
        f"cross-entropy {ce.output[-1]:.4f}",
        f"Breast cancer logistic regression: {b.n_train} train / {b.n_test} test samples, "
        f"all weights {b.initial_weight:g} at the start, learning rate {b.learning_rate:g}",
        f"  at the start: train accuracy {b.runs['mse'].train_accuracy[0]:.3f}, "
        f"{100 * b.saturated_fraction:.0f}% of samples with sigma'(z) < 0.01; "
        f"mean |dL_i/dz_i| MSE {b.runs['mse'].mean_abs_grad_z[0]:.4f}, "
        f"cross-entropy {b.runs['cross_entropy'].mean_abs_grad_z[0]:.4f}",
    ]
    for loss, label in (("mse", "MSE"), ("cross_entropy", "cross-entropy")):
        run = b.runs[loss]
        lines.append(
            f"  {label:>13}: epochs to {100 * b.target_accuracy:.0f}% train accuracy "
            f"{_epochs(b.epochs_to_target[loss])}, after {len(run.loss) - 1} epochs train "
            f"accuracy {run.train_accuracy[-1]:.3f}, test accuracy {run.test_accuracy:.3f}")
    return "\n".join(lines)


def plot(result, out_dir):
    """Two figures: the single neuron, and breast-cancer training curves."""
    from ._plot import COLOURS, new_figure, save

    labels = {"mse": "MSE (quadratic)", "cross_entropy": "cross-entropy"}
    a = result.neuron
    fig, (ax_loss, ax_out) = new_figure(2)
    for loss, run in a.runs.items():
        epochs = np.arange(len(run.loss))
        ax_loss.plot(epochs, run.loss, color=COLOURS[loss], label=labels[loss])
        ax_out.plot(epochs, run.output, color=COLOURS[loss], label=labels[loss])
    ax_loss.set(xlabel="epoch", ylabel="loss",
                title=f"One sigmoid neuron, x={a.x:g}, y={a.y:g}, w=b={a.w0:g}")
    ax_out.set(xlabel="epoch", ylabel="output a = sigma(wx + b)", ylim=(0, 1),
               title=f"Output (learning rate {a.learning_rate:g} for both)")
    ax_loss.legend()
    ax_out.legend()
    paths = [save(fig, out_dir, "learning_speed_neuron")]

    b = result.breast_cancer
    fig, (ax_grad, ax_acc) = new_figure(2)
    for loss, run in b.runs.items():
        epochs = np.arange(len(run.loss))
        ax_grad.plot(epochs, run.mean_abs_grad_z, color=COLOURS[loss], label=labels[loss])
        ax_acc.plot(epochs, run.train_accuracy, color=COLOURS[loss], label=labels[loss])
    ax_grad.set(xlabel="epoch", ylabel="mean over samples of |dL_i/dz_i|", yscale="log",
                title="Breast cancer, saturated start (all weights 1)")
    ax_acc.axhline(b.target_accuracy, color="grey", linestyle=":", linewidth=1)
    ax_acc.set_xscale("symlog", linthresh=1)
    ax_acc.set(xlabel="epoch (log scale after 1)", ylabel="training accuracy", ylim=(0, 1),
               xlim=(0, len(b.runs["mse"].loss) - 1),
               title=f"Accuracy (learning rate {b.learning_rate:g} for both)")
    ax_grad.legend()
    ax_acc.legend()
    paths.append(save(fig, out_dir, "learning_speed_breast_cancer"))
    return paths
