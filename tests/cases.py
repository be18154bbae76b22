"""The test case of every loss registered in fastloss (fastloss._registry), keyed by its name.

Each registered loss appears here as a ``LossCase`` (two for a loss that takes
two kinds of target) that knows how to make valid inputs of a given shape and
dtype, which keyword options it accepts, its exact oracle and, where torch
has the loss, the same call in torch.  The determinism, thread-safety,
layout, property-based, leak, accuracy and torch-parity tests draw every loss
from ``CASES``; tests/test_registry.py fails when a registered loss has no
case here, so a new loss is covered by adding one entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastloss
import fastloss.reference
import oracle
from fastloss._registry import REGISTRY


@dataclass(frozen=True)
class LossCase:
    """One public loss: its name, valid inputs and option variants.

    Attributes:
      name: the function's registered name in ``fastloss`` and ``fastloss.reference``.
      make_inputs: ``(rng, shape, dtype) -> (pred, target)``, valid inputs
        with ``pred.shape == shape``.
      oracle: the exact oracle, ``oracle(pred, target, **options,
        sample_weight=..., backend=...) -> oracle.Exact`` (see tests/oracle.py).
      options: option-variant id -> ``shape -> dict`` of keyword arguments
        (a function of the shape because some options are per column).
      grad_scale: a bound on |d loss / d pred| per element for the inputs
        made by make_inputs (sets the absolute tolerance of gradient checks).
      target_kind: tells apart two entries of one function with different
        kinds of target (it appears in the test ids).
      torch: where torch has the loss (the declaration's ``torch``), the same
        call in torch: ``torch(F, pred, target, options, reduction)`` with
        tensors in and the loss tensor out (per sample for "none").
      torch_options: the option variants torch has (None: all).
    """

    name: str
    make_inputs: Callable
    oracle: Callable
    options: dict = field(default_factory=lambda: {"default": lambda shape: {}})
    grad_scale: float = 1.0
    target_kind: str = ""
    torch: Callable | None = None
    torch_options: tuple | None = None

    @property
    def spec(self):
        """The loss's declaration in the registry."""
        return REGISTRY[self.name]

    @property
    def ndims(self):
        """The accepted ``pred.ndim`` values."""
        return self.spec.ndims

    @property
    def pred_name(self):
        """The name of the first argument (it appears in error messages)."""
        return self.spec.inputs[0]

    @property
    def fast(self):
        return getattr(fastloss, self.name)

    @property
    def reference(self):
        return getattr(fastloss.reference, self.name)

    def __repr__(self):
        return f"{self.name}[{self.target_kind}]" if self.target_kind else self.name


def n_columns(shape):
    return 1 if len(shape) == 1 else shape[1]


def regression_inputs(rng, shape, dtype):
    pred = rng.normal(scale=2.0, size=shape).astype(dtype)
    target = rng.normal(size=shape).astype(dtype)
    return pred, target


def bce_inputs(rng, shape, dtype):
    logits = rng.normal(scale=3.0, size=shape).astype(dtype)
    target = rng.uniform(size=shape)
    target[rng.uniform(size=shape) < 0.3] = 0.0     # hard labels as well as soft ones
    target[rng.uniform(size=shape) < 0.3] = 1.0
    return logits, target.astype(dtype)


def hinge_inputs(rng, shape, dtype):
    scores = rng.normal(scale=1.5, size=shape).astype(dtype)
    target = rng.choice(np.array([-1.0, 1.0]), size=shape).astype(dtype)
    return scores, target


def _torch_binary_cross_entropy(F, x, t, options, reduction):
    import torch
    pos_weight = options.get("pos_weight")
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=x.dtype)
    return F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight, reduction=reduction)


CASES = [
    LossCase("mse", regression_inputs, oracle.mse, grad_scale=20.0,
             torch=lambda F, x, t, options, reduction: F.mse_loss(x, t, reduction=reduction)),
    LossCase("huber", regression_inputs, oracle.huber, options={
        "default": lambda shape: {},
        "delta=0.3": lambda shape: {"delta": 0.3},
        "delta=4": lambda shape: {"delta": 4.0},
    }, grad_scale=4.0, torch=lambda F, x, t, options, reduction: F.huber_loss(
        x, t, delta=options.get("delta", 1.0), reduction=reduction)),
    LossCase("binary_cross_entropy", bce_inputs, oracle.binary_cross_entropy, options={
        "default": lambda shape: {},
        "pos_weight=2.5": lambda shape: {"pos_weight": 2.5},
        "pos_weight=(K,)": lambda shape: {
            "pos_weight": np.linspace(0.25, 3.0, n_columns(shape))},
    }, grad_scale=3.0, torch=_torch_binary_cross_entropy),
    LossCase("hinge", hinge_inputs, oracle.hinge, options={
        "default": lambda shape: {},
        "margin=0": lambda shape: {"margin": 0.0},
        "margin=2": lambda shape: {"margin": 2.0},
    }),
    LossCase("squared_hinge", hinge_inputs, oracle.squared_hinge, options={
        "default": lambda shape: {},
        "margin=0.5": lambda shape: {"margin": 0.5},
    }, grad_scale=20.0),
]


# --- the losses beyond the seed (their oracles: tests/oracle_more.py) ---------------------

def count_inputs(rng, shape, dtype):
    """Log-rates in [-3, 3] and Poisson counts (zeros included)."""
    log_rate = np.clip(rng.normal(scale=1.0, size=shape), -3.0, 3.0).astype(dtype)
    return log_rate, rng.poisson(np.exp(log_rate.astype(np.float64))).astype(dtype)


def rate_inputs(rng, shape, dtype):
    """Positive rates in [0.25, 4] (for log_input=False) and Poisson counts."""
    rate = rng.uniform(0.25, 4.0, size=shape).astype(dtype)
    return rate, rng.poisson(rate.astype(np.float64)).astype(dtype)


def _variances(shape, var_shape=None):
    """Deterministic variances in [0.25, 4], exact in float32 (so that the oracle sees the
    values the float32 kernel reads), of ``var_shape`` (the mean's shape by default)."""
    var_shape = shape if var_shape is None else var_shape
    size = int(np.prod(var_shape))
    values = np.exp2(np.linspace(-2.0, 2.0, max(size, 1))[:size])
    return values.astype(np.float32).astype(np.float64).reshape(var_shape)


def _gaussian_nll_oracle(mean, target, var, **options):
    """The Gaussian NLL's exact oracle for the mean (its gradient for var is checked
    against tests/oracle_more.reduce_var by tests/test_more_losses.py)."""
    import oracle_more
    dtype = np.asarray(mean).dtype
    return oracle_more.gaussian_nll(mean, target, var, dtype=dtype, **options)[0]


def _more_oracle(name):
    def exact(*args, **options):
        import oracle_more
        return getattr(oracle_more, name)(*args, **options)
    exact.__name__ = name
    return exact


def _torch_poisson_nll(F, x, t, options, reduction):
    return F.poisson_nll_loss(x, t, log_input=options.get("log_input", True),
                              full=options.get("full", False), eps=options.get("eps", 1e-8),
                              reduction=reduction)


def _torch_gaussian_nll(F, x, t, options, reduction):
    import torch
    var = torch.as_tensor(options["var"], dtype=x.dtype)
    return F.gaussian_nll_loss(x, t, var, full=options.get("full", False),
                               eps=options.get("eps", 1e-6), reduction=reduction)


CASES += [
    LossCase("l1", regression_inputs, _more_oracle("l1"),
             torch=lambda F, x, t, options, reduction: F.l1_loss(x, t, reduction=reduction)),
    LossCase("smooth_l1", regression_inputs, _more_oracle("smooth_l1"), options={
        "default": lambda shape: {},
        "beta=0.3": lambda shape: {"beta": 0.3},
        "beta=0": lambda shape: {"beta": 0.0},
        "beta=4": lambda shape: {"beta": 4.0},
    }, grad_scale=4.0, torch=lambda F, x, t, options, reduction: F.smooth_l1_loss(
        x, t, beta=options.get("beta", 1.0), reduction=reduction)),
    LossCase("log_cosh", regression_inputs, _more_oracle("log_cosh")),
    LossCase("pinball", regression_inputs, _more_oracle("pinball"), options={
        "default": lambda shape: {},
        "quantile=0.1": lambda shape: {"quantile": 0.1},
        "quantile=0.9": lambda shape: {"quantile": 0.9},
    }),
    LossCase("poisson_nll", count_inputs, _more_oracle("poisson_nll"), options={
        "default": lambda shape: {},
        "full": lambda shape: {"full": True},
    }, grad_scale=50.0, torch=_torch_poisson_nll),
    LossCase("poisson_nll", rate_inputs, _more_oracle("poisson_nll"), options={
        "log_input=False": lambda shape: {"log_input": False},
        "log_input=False-full-eps": lambda shape: {"log_input": False, "full": True,
                                                   "eps": 0.5},
    }, grad_scale=50.0, target_kind="rates", torch=_torch_poisson_nll),
    LossCase("sigmoid_focal_loss", bce_inputs, _more_oracle("sigmoid_focal_loss"), options={
        "default": lambda shape: {},
        "gamma=0": lambda shape: {"gamma": 0.0},
        "no alpha-gamma=0.5": lambda shape: {"alpha": -1.0, "gamma": 0.5},
        "alpha=0.75-gamma=3.5": lambda shape: {"alpha": 0.75, "gamma": 3.5},
    }),
    # var is given by keyword (it is the third positional argument): one variance per
    # element, one per row, and (1, K) broadcast over the rows
    LossCase("gaussian_nll", regression_inputs, _gaussian_nll_oracle, options={
        "default": lambda shape: {"var": _variances(shape)},
        "full-eps": lambda shape: {"var": _variances(shape), "full": True, "eps": 0.5},
        "var per row": lambda shape: {"var": _variances(shape, shape[:-1] + (1,))},
        "var (1, K)": lambda shape: {"var": _variances(shape, (1,) + shape[1:])},
    }, grad_scale=40.0, torch=_torch_gaussian_nll),
]


def pred_grad(grad):
    """The gradient with respect to the first input: ``grad`` itself, or its first part
    for a loss with several gradients (gaussian_nll: (grad_mean, grad_var))."""
    return grad[0] if isinstance(grad, tuple) else grad


def label_inputs(rng, shape, dtype):
    logits = rng.normal(scale=3.0, size=shape).astype(dtype)
    labels = rng.integers(0, shape[1], size=shape[0]) if shape[1] > 0 else \
        np.zeros(shape[0], dtype=np.intp)
    return logits, labels


def probability_inputs(rng, shape, dtype):
    logits = rng.normal(scale=3.0, size=shape).astype(dtype)
    target = rng.uniform(size=shape) ** 3            # some near-zero probabilities
    if shape[1] > 0:
        target[:, 0][rng.uniform(size=shape[0]) < 0.2] = 0.0    # exact zeros (0 log 0)
        target /= np.maximum(target.sum(axis=1, keepdims=True), 1e-300)
    return logits, target.astype(dtype)


def either_inputs(rng, shape, dtype):
    """Labels or probabilities, chosen by the seed (both are accepted)."""
    if rng.uniform() < 0.5:
        return label_inputs(rng, shape, dtype)
    return probability_inputs(rng, shape, dtype)


def _torch_cross_entropy(F, x, t, options, reduction):
    import torch
    class_weight = options.get("class_weight")
    ignore_index = options.get("ignore_index")
    return F.cross_entropy(
        x, t, weight=None if class_weight is None else torch.as_tensor(class_weight,
                                                                       dtype=x.dtype),
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=options.get("label_smoothing", 0.0), reduction=reduction)


def _torch_kl_divergence(F, x, t, options, reduction):
    """torch's kl_div of log_softmax(x), "batchmean" for our "mean", summed over each row
    for "none"."""
    batch = {"mean": "batchmean", "sum": "sum", "none": "none"}[reduction]
    loss = F.kl_div(F.log_softmax(x, dim=1), t, reduction=batch)
    return loss.sum(dim=1) if reduction == "none" else loss


def _torch_multiclass_hinge(F, x, t, options, reduction):
    """torch's multi_margin_loss is the Weston-Watkins hinge divided by C."""
    if options.get("kind", "weston_watkins") != "weston_watkins":
        raise NotImplementedError("torch has no Crammer-Singer hinge")
    return x.shape[1] * F.multi_margin_loss(x, t, p=2 if options.get("squared") else 1,
                                            margin=options.get("margin", 1.0),
                                            reduction=reduction)


def _softmax_focal_loss_oracle(logits, target, *, model=None, **options):
    """The focal loss's exact oracle (tests/oracle_more_multiclass.py), which builds its
    own rows (the shared row model is not used)."""
    import oracle_more_multiclass
    return oracle_more_multiclass.softmax_focal_loss(logits, target, **options)


CASES += [
    LossCase("softmax_cross_entropy", label_inputs, oracle.softmax_cross_entropy, options={
        "default": lambda shape: {},
        "class_weight": lambda shape: {"class_weight": np.linspace(0.5, 2.0, shape[1])},
        "ignore_index=1": lambda shape: {"ignore_index": 1},
        "label_smoothing=0.1": lambda shape: {"label_smoothing": 0.1},
        "all": lambda shape: {"class_weight": np.linspace(2.0, 0.5, shape[1]),
                              "ignore_index": 0, "label_smoothing": 0.25},
    }, torch=_torch_cross_entropy),
    LossCase("softmax_cross_entropy", probability_inputs, oracle.softmax_cross_entropy, options={
        "default": lambda shape: {},
        "class_weight-label_smoothing": lambda shape: {
            "class_weight": np.linspace(0.5, 2.0, shape[1]), "label_smoothing": 0.2},
    }, target_kind="probabilities", torch=_torch_cross_entropy),
    LossCase("softmax_focal_loss", label_inputs, _softmax_focal_loss_oracle, options={
        "default": lambda shape: {},
        "gamma=0.5-class_weight": lambda shape: {"gamma": 0.5,
                                                 "class_weight": np.linspace(0.5, 2.0, shape[1])},
        "all": lambda shape: {"gamma": 3.5, "class_weight": np.linspace(2.0, 0.5, shape[1]),
                              "ignore_index": 0},
    }),
    LossCase("softmax_binary_cross_entropy", either_inputs, oracle.softmax_binary_cross_entropy),
    LossCase("kl_divergence", probability_inputs, oracle.kl_divergence,
             torch=_torch_kl_divergence),
    LossCase("multiclass_hinge", label_inputs, oracle.multiclass_hinge, options={
        "default": lambda shape: {},
        "crammer_singer": lambda shape: {"kind": "crammer_singer"},
        "squared": lambda shape: {"squared": True, "margin": 0.5},
        "crammer_singer-squared": lambda shape: {"kind": "crammer_singer", "squared": True},
    }, grad_scale=20.0, torch=_torch_multiclass_hinge, torch_options=("default", "squared")),
]

# Every loss's cases: the registry's checks (tests/test_registry.py), the torch parity.
ALL_CASES = CASES
# The cases of the shared grids (reference, finite differences, layouts, threads, bad
# values, memory, ...): the losses with one gradient.  gaussian_nll, whose grad is
# (grad_mean, grad_var), runs the same checks on both gradients in
# tests/test_more_losses.py.
CASES = [case for case in ALL_CASES if len(case.spec.gradients) == 1]

ELEMENTWISE = [case for case in CASES if case.spec.family == "elementwise"]
MULTICLASS = [case for case in CASES if case.spec.family == "multiclass"]


@dataclass(frozen=True)
class RowUtility:
    """A row-wise utility (logsumexp, softmax, log_softmax): f(x, out=, n_threads=).

    ``oracle(x, model=None, backend=...)``: its exact values (tests/oracle.py).
    """

    name: str
    oracle: Callable

    @property
    def fast(self):
        return getattr(fastloss, self.name)

    @property
    def reference(self):
        return getattr(fastloss.reference, self.name)

    def __repr__(self):
        return self.name


UTILITIES = [RowUtility("logsumexp", oracle.logsumexp), RowUtility("softmax", oracle.softmax),
             RowUtility("log_softmax", oracle.log_softmax)]

# The exact oracle of every registered loss and row utility, by name.
ORACLES = {case.name: case.oracle for case in ALL_CASES + UTILITIES}


def variants(cases=CASES):
    """(case, option id) pairs, for pytest.mark.parametrize."""
    return [(case, option) for case in cases for option in case.options]


def variant_ids(cases=CASES):
    return [f"{case!r}[{option}]" for case, option in variants(cases)]


def shape_for(case, n_rows, n_cols):
    """A pred shape this loss accepts: (n_rows, n_cols), or (n_rows * n_cols,) if 1-D only."""
    return (n_rows, n_cols) if 2 in case.ndims else (n_rows * n_cols,)
