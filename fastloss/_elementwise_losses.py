"""The elementwise losses: one declaration each, the public function beside it.

Design: a loss of one prediction and one target per element.  Each loss is
declared here once (:class:`fastloss._registry.Loss`): its parameters and
their rules, its target rule, its kernel, whether it has a Hessian, its
torch counterpart, the NumPy formula of one element (from which
``fastloss.reference`` builds its twin) and its row of the README table.
The function below each declaration is the public one, with the docstring
and type hints; its body hands everything to the shared call path
(:func:`fastloss._elementwise.run`).

To add an elementwise loss: its kernel in ``_elementwise_kernels.pyx.tp``,
a declaration and function here (add the name to ``__all__``), and its test
case in ``tests/cases.py``; then ``python tools/loss_table.py`` rewrites the
README's table (see docs/architecture.md).
"""
from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from fastloss._checks import Real, Weights
from fastloss._elementwise import run
from fastloss._numpy_maths import sigmoid, xmul
from fastloss._registry import Loss
from fastloss._results import FloatArray, LossGrad, LossGradHess, Reduction
from fastloss._targets import SIGNS, UNIT_INTERVAL

__all__ = ["mse", "huber", "binary_cross_entropy", "hinge", "squared_hinge"]

Formula = tuple[Any, Any, Any]


# --- regression ------------------------------------------------------------------

def _mse(pred: np.ndarray, target: np.ndarray, hess: bool) -> Formula:
    r = pred - target
    return r * r, 2 * r, np.full(r.shape, 2.0) if hess else None


MSE = Loss(
    "mse", "elementwise", kernel="mse", hess=True, torch="mse_loss", formula=_mse,
    doc_shapes="(N,) or (N, K)", doc_loss="r², r = pred − target")


@overload
def mse(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
        reduction: Reduction = "mean", grad: bool = True, hess: Literal[False] = False,
        out: FloatArray | None = None, n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def mse(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
        reduction: Reduction = "mean", grad: bool = True, hess: Literal[True],
        out: FloatArray | None = None, n_threads: int | None = None) -> LossGradHess: ...
@MSE.declare  # noqa: E302
def mse(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
        reduction: Reduction = "mean", grad: bool = True, hess: bool = False,
        out: FloatArray | None = None, n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Mean squared error: the Gaussian negative log-likelihood up to constants.

    Per element, with r = pred - target::

        loss = r ** 2
        grad = 2 r
        hess = 2                 (whatever r, NaN included: 2 r is linear in pred)

    As ``torch.nn.functional.mse_loss``.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      sample_weight: optional (N,) weights, one per sample (row).
      reduction: "mean" (sum_i w_i l_i / (K sum_i w_i)), "sum" or "none".
      grad: compute the gradient (False skips all gradient work).
      hess: also compute the diagonal of the Hessian, d^2 loss / d pred_i^2
        of the returned loss (weights and the "mean" divisor included), in
        the same pass; needs grad=True.
      out: optional C-contiguous array receiving the gradient (may be pred).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      LossGrad(loss, grad): the reduced loss (a float, or an array of w_i l_i
      for "none") and its gradient with respect to pred.  With hess=True,
      LossGradHess(loss, grad, hess), hess a new array of grad's shape and
      dtype (``out`` receives the gradient only).

    Examples:
      >>> import fastloss
      >>> fastloss.mse([1.0, 2.0], [1.0, 0.0])
      LossGrad(loss=2.0, grad=array([0., 2.]))
    """
    return run(MSE, pred, target, (), sample_weight, reduction, grad, hess, out, n_threads)


def _huber(pred: np.ndarray, target: np.ndarray, delta: float, hess: bool) -> Formula:
    r = pred - target
    abs_r = np.abs(r)
    curvature = None
    with np.errstate(invalid="ignore"):
        loss = np.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta))
        if hess:
            curvature = np.where(np.isnan(r), np.nan, np.where(abs_r <= delta, 1.0, 0.0))
    return loss, np.clip(r, -delta, delta), curvature


HUBER = Loss(
    "huber", "elementwise", kernel="huber", hess=True, torch="huber_loss", formula=_huber,
    params=(Real("delta", 1.0, low=0.0, low_open=True),),
    doc_shapes="(N,) or (N, K)", doc_loss="½r² if \\|r\\| ≤ δ, else δ(\\|r\\| − δ/2)")


@overload
def huber(pred: ArrayLike, target: ArrayLike, *, delta: float = 1.0,
          sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
          grad: bool = True, hess: Literal[False] = False, out: FloatArray | None = None,
          n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def huber(pred: ArrayLike, target: ArrayLike, *, delta: float = 1.0,
          sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
          grad: bool = True, hess: Literal[True], out: FloatArray | None = None,
          n_threads: int | None = None) -> LossGradHess: ...
@HUBER.declare  # noqa: E302
def huber(pred: ArrayLike, target: ArrayLike, *, delta: float = 1.0,
          sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
          grad: bool = True, hess: bool = False, out: FloatArray | None = None,
          n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Huber loss: quadratic near zero, linear beyond ``delta``.

    Per element, with r = pred - target::

        loss = 0.5 r**2                  if |r| <= delta
               delta (|r| - delta / 2)   otherwise
        grad = clip(r, -delta, delta)
        hess = 1 if |r| <= delta else 0           (NaN where r is NaN)

    As ``torch.nn.functional.huber_loss``.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      delta: where the loss turns from quadratic to linear, > 0 (as in torch).
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True,
      as in :func:`mse`.

    References:
      Huber, "Robust Estimation of a Location Parameter", 1964.

    Examples:
      >>> import fastloss
      >>> fastloss.huber([0.5, 3.0], [0.0, 0.0], delta=1.0, reduction="sum")
      LossGrad(loss=2.625, grad=array([0.5, 1. ]))
    """
    return run(HUBER, pred, target, (delta,), sample_weight, reduction, grad, hess, out,
               n_threads)


# --- binary classification ---------------------------------------------------------

def _binary_cross_entropy(logits: np.ndarray, target: np.ndarray,
                          pos_weight: float | np.ndarray | None, hess: bool) -> Formula:
    x, t = logits, target
    # pos_weight is None, a float (a scalar, or 1-D logits) or float64 (K,).  It
    # multiplies in float64 for 1-D logits and in the computation dtype, one per
    # column, for (N, K) logits.
    pw64: Any = 1.0
    if isinstance(pos_weight, np.ndarray):
        pw64 = pos_weight
    elif pos_weight is not None:
        pw64 = np.float64(pos_weight) if x.ndim == 1 else np.full(x.shape[1], pos_weight)
    pw = pw64.astype(x.dtype) if isinstance(pw64, np.ndarray) else pw64
    softplus_pos = np.logaddexp(0, x)       # -log(1 - sigma(x))
    softplus_neg = np.logaddexp(0, -x)      # -log sigma(x)
    loss = xmul(pw * t, softplus_neg) + xmul(1 - t, softplus_pos)
    grad = (1 - t) * sigmoid(x) - pw * t * sigmoid(-x)
    curvature = None
    if hess:
        x64, t64 = x.astype(np.float64), t.astype(np.float64)
        e = np.exp(-np.abs(x64))            # sigma(x) sigma(-x) = e / (1 + e)^2
        curvature = (pw64 * t64 + 1 - t64) * (e / ((1 + e) * (1 + e)))
    return loss, grad, curvature


BINARY_CROSS_ENTROPY = Loss(
    "binary_cross_entropy", "elementwise", inputs=("logits", "target"),
    kernel="binary_cross_entropy", hess=True, torch="binary_cross_entropy_with_logits",
    target=UNIT_INTERVAL, formula=_binary_cross_entropy,
    params=(Weights("pos_weight", None, per="column"),),
    doc_shapes="(N,) or (N, K), target in [0, 1]",
    doc_loss="−(pw·t·log σ(x) + (1 − t)·log(1 − σ(x)))")


@overload
def binary_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                         pos_weight: ArrayLike | None = None,
                         sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                         grad: bool = True, hess: Literal[False] = False,
                         out: FloatArray | None = None,
                         n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def binary_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                         pos_weight: ArrayLike | None = None,
                         sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                         grad: bool = True, hess: Literal[True],
                         out: FloatArray | None = None,
                         n_threads: int | None = None) -> LossGradHess: ...
@BINARY_CROSS_ENTROPY.declare  # noqa: E302
def binary_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                         pos_weight: ArrayLike | None = None,
                         sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                         grad: bool = True, hess: bool = False, out: FloatArray | None = None,
                         n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Binary cross-entropy of sigmoid(logits), computed from the logits.

    Per element, with x the logit, t in [0, 1] the target, pw the positive
    class weight and softplus(x) = log(1 + exp(x)) = -log(1 - sigma(x))::

        loss = -(pw t log sigma(x) + (1 - t) log(1 - sigma(x)))
             = pw t softplus(-x) + (1 - t) softplus(x)
        grad = (1 - t) sigma(x) - pw t sigma(-x)        (= sigma(x) - t for pw = 1)
        hess = (pw t + 1 - t) sigma(x) sigma(-x)

    softplus is computed as max(x, 0) + log1p(exp(-|x|)), finite for every
    finite logit.  A term whose coefficient is zero vanishes even where its
    softplus is infinite, so logits of +-inf give the limiting values.  As
    ``torch.nn.functional.binary_cross_entropy_with_logits``.  The Hessian
    uses sigma(x) sigma(-x) = e / (1 + e)^2 with e = exp(-|x|): no overflow,
    and 0 at x = +-inf.

    Args:
      logits: shape (N,) or (N, K).
      target: same shape, values in [0, 1] (soft labels allowed); a target
        outside [0, 1] or NaN is a ValueError naming its position (the fast
        kernel finds it in its own pass).
      pos_weight: None, a scalar, or (K,) finite weights of the positive term.
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True,
      as in :func:`mse`; grad is the gradient with respect to the logits.

    Examples:
      >>> import fastloss
      >>> round(fastloss.binary_cross_entropy([0.0], [1.0]).loss, 6)  # log 2
      0.693147
    """
    return run(BINARY_CROSS_ENTROPY, logits, target, (pos_weight,), sample_weight, reduction,
               grad, hess, out, n_threads)


_MARGIN = Real("margin", 1.0, low=0.0)
_BINARY_HINGE_SHAPE = ("scores must be 1-D for a binary hinge loss, got shape {shape}; "
                       "use multiclass_hinge for (N, C) scores")


def _hinge(scores: np.ndarray, target: np.ndarray, margin: float, hess: bool) -> Formula:
    z = margin - target * scores
    with np.errstate(invalid="ignore"):
        grad = np.where(np.isnan(z), z, np.where(z > 0, -target, 0))
    return np.maximum(z, 0), grad.astype(scores.dtype), None


HINGE = Loss(
    "hinge", "elementwise", inputs=("scores", "target"), kernel="hinge", target=SIGNS,
    ndims=(1,), shape_error=_BINARY_HINGE_SHAPE, params=(_MARGIN,), formula=_hinge,
    doc_shapes="(N,), target ±1 or 0/1", doc_loss="max(0, m − t·s)")


@HINGE.declare
def hinge(scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0,
          sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
          grad: bool = True, out: FloatArray | None = None,
          n_threads: int | None = None) -> LossGrad:
    """Hinge loss of a binary max-margin classifier (the linear SVM loss).

    Per sample, with s the score and t in {-1, +1}::

        loss = max(0, margin - t s)
        grad = -t if margin - t s > 0 else 0     (subgradient 0 at the kink)

    Targets may also be given all in {0, 1} (0 meaning -1).

    Args:
      scores: shape (N,).
      target: shape (N,), all in {-1, +1} or all in {0, 1}.
      margin: the margin, >= 0.
      Others as in :func:`mse` (no hess: the hinge is not twice differentiable).

    Returns:
      LossGrad(loss, grad): the reduced loss and its (sub)gradient with
      respect to the scores.

    Examples:
      >>> import fastloss
      >>> fastloss.hinge([2.0, 0.5], [1, 1], reduction="none")
      LossGrad(loss=array([0. , 0.5]), grad=array([ 0., -1.]))
    """
    return run(HINGE, scores, target, (margin,), sample_weight, reduction, grad, False, out,
               n_threads)  # type: ignore[return-value]


def _squared_hinge(scores: np.ndarray, target: np.ndarray, margin: float,
                   hess: bool) -> Formula:
    z = np.maximum(margin - target * scores, 0)
    return z * z, -2 * target * z, None


SQUARED_HINGE = Loss(
    "squared_hinge", "elementwise", inputs=("scores", "target"), kernel="squared_hinge",
    target=SIGNS, ndims=(1,), shape_error=_BINARY_HINGE_SHAPE, params=(_MARGIN,),
    formula=_squared_hinge, doc_shapes="(N,)", doc_loss="max(0, m − t·s)²")


@SQUARED_HINGE.declare
def squared_hinge(scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0,
                  sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                  grad: bool = True, out: FloatArray | None = None,
                  n_threads: int | None = None) -> LossGrad:
    """Squared hinge loss (the L2-SVM loss): smooth at the margin.

    Per sample, with s the score and t in {-1, +1}::

        loss = max(0, margin - t s) ** 2
        grad = -2 t max(0, margin - t s)

    Args:
      scores: shape (N,).
      target: shape (N,), all in {-1, +1} or all in {0, 1}.
      margin: the margin, >= 0.
      Others as in :func:`mse` (no hess).

    Returns:
      LossGrad(loss, grad): the reduced loss and its gradient with respect to
      the scores.

    Examples:
      >>> import fastloss
      >>> fastloss.squared_hinge([0.5], [1], reduction="sum")
      LossGrad(loss=0.25, grad=array([-1.]))
    """
    return run(SQUARED_HINGE, scores, target, (margin,), sample_weight, reduction, grad, False,
               out, n_threads)  # type: ignore[return-value]
