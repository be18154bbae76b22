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

import math
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from fastloss._checks import GAMMA, Flag, Real, Weights
from fastloss._elementwise import run, run_several
from fastloss._numpy_maths import sigmoid, xmul
from fastloss._registry import Loss
from fastloss._results import FloatArray, LossGrad, LossGradHess, Reduction
from fastloss._targets import COUNTS, SIGNS, UNIT_INTERVAL, VARIANCES

__all__ = ["mse", "huber", "binary_cross_entropy", "hinge", "squared_hinge", "l1", "smooth_l1",
           "log_cosh", "pinball", "poisson_nll", "sigmoid_focal_loss", "gaussian_nll"]

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


# --- robust regression --------------------------------------------------------------

def _l1(pred: np.ndarray, target: np.ndarray, hess: bool) -> Formula:
    r = pred - target
    return np.abs(r), np.sign(r), None


L1 = Loss(
    "l1", "elementwise", kernel="l1", takes_hess=True, torch="l1_loss", formula=_l1,
    doc_shapes="(N,) or (N, K)", doc_loss="\\|r\\|")


@L1.declare
def l1(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
       reduction: Reduction = "mean", grad: bool = True, hess: bool = False,
       out: FloatArray | None = None, n_threads: int | None = None) -> LossGrad:
    """Mean absolute error (the L1 loss): the Laplace negative log-likelihood up to constants.

    Per element, with r = pred - target::

        loss = |r|
        grad = sign(r)           (the subgradient 0 at r = 0, as torch)

    As ``torch.nn.functional.l1_loss``.  It is piecewise linear: ``hess=True``
    is a ValueError.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      sample_weight: optional (N,) weights, one per sample (row).
      reduction: "mean" (sum_i w_i l_i / (K sum_i w_i)), "sum" or "none".
      grad: compute the gradient (False skips all gradient work).
      hess: must be False (there is no Hessian).
      out: optional C-contiguous array receiving the gradient (may be pred).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      LossGrad(loss, grad): the reduced loss (a float, or an array of w_i l_i
      for "none") and its (sub)gradient with respect to pred.

    Examples:
      >>> import fastloss
      >>> fastloss.l1([1.0, 2.0, 3.0], [1.0, 0.0, 4.0], reduction="sum")
      LossGrad(loss=3.0, grad=array([ 0.,  1., -1.]))
    """
    return run(L1, pred, target, (), sample_weight, reduction, grad, hess, out,
               n_threads)  # type: ignore[return-value]


def _smooth_l1(pred: np.ndarray, target: np.ndarray, beta: float, hess: bool) -> Formula:
    r = pred - target
    a = np.abs(r)
    inv_beta = 1.0 / beta if beta > 0 else 0.0
    curvature = None
    with np.errstate(invalid="ignore"):
        inside = a < beta
        loss = np.where(inside, 0.5 * r * r * inv_beta, a - 0.5 * beta)
        grad = np.where(inside, r * inv_beta, np.sign(r))
        if hess:
            curvature = np.where(np.isnan(r), np.nan, np.where(inside, inv_beta, 0.0))
    return loss, grad, curvature


SMOOTH_L1 = Loss(
    "smooth_l1", "elementwise", kernel="smooth_l1", hess=True, torch="smooth_l1_loss",
    formula=_smooth_l1, params=(Real("beta", 1.0, low=0.0),),
    doc_shapes="(N,) or (N, K)", doc_loss="½r²/β if \\|r\\| < β, else \\|r\\| − β/2")


@overload
def smooth_l1(pred: ArrayLike, target: ArrayLike, *, beta: float = 1.0,
              sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
              grad: bool = True, hess: Literal[False] = False, out: FloatArray | None = None,
              n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def smooth_l1(pred: ArrayLike, target: ArrayLike, *, beta: float = 1.0,
              sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
              grad: bool = True, hess: Literal[True], out: FloatArray | None = None,
              n_threads: int | None = None) -> LossGradHess: ...
@SMOOTH_L1.declare  # noqa: E302
def smooth_l1(pred: ArrayLike, target: ArrayLike, *, beta: float = 1.0,
              sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
              grad: bool = True, hess: bool = False, out: FloatArray | None = None,
              n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Smooth L1 loss: quadratic below ``beta``, linear beyond (torch's smooth_l1_loss).

    Per element, with r = pred - target::

        loss = 0.5 r**2 / beta           if |r| < beta
               |r| - beta / 2            otherwise
        grad = r / beta if |r| < beta else sign(r)
        hess = 1 / beta if |r| < beta else 0          (NaN where r is NaN)

    As ``torch.nn.functional.smooth_l1_loss``: beta = 0 is the L1 loss
    (every element in the linear zone), and for beta = delta > 0 it is
    huber / beta.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      beta: where the quadratic zone ends, a finite number >= 0.
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True,
      as in :func:`mse`.

    References:
      Girshick, "Fast R-CNN", ICCV 2015.

    Examples:
      >>> import fastloss
      >>> fastloss.smooth_l1([0.5, 3.0], [0.0, 0.0], beta=1.0, reduction="none")
      LossGrad(loss=array([0.125, 2.5  ]), grad=array([0.5, 1. ]))
    """
    return run(SMOOTH_L1, pred, target, (beta,), sample_weight, reduction, grad, hess, out,
               n_threads)


def _log_cosh(pred: np.ndarray, target: np.ndarray, hess: bool) -> Formula:
    r = pred - target
    a = np.abs(r)
    near = np.minimum(a, 1)                  # where a < 1 (else unused)
    expm1 = np.expm1(near)
    curvature = None
    with np.errstate(over="ignore", invalid="ignore"):
        loss = np.where(a < 1, np.log1p(expm1 * expm1 / (2 * (1 + expm1))),
                        a + np.log1p(np.exp(-2 * a)) - np.log(2).astype(r.dtype))
        if hess:    # from the exact residual, in float64 (as the kernels)
            r64 = pred.astype(np.float64) - target.astype(np.float64)
            curvature = 1 / np.cosh(r64) ** 2
    return loss, np.tanh(r), curvature


LOG_COSH = Loss(
    "log_cosh", "elementwise", kernel="log_cosh", hess=True, formula=_log_cosh,
    doc_shapes="(N,) or (N, K)", doc_loss="log cosh r")


@overload
def log_cosh(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
             reduction: Reduction = "mean", grad: bool = True, hess: Literal[False] = False,
             out: FloatArray | None = None, n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def log_cosh(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
             reduction: Reduction = "mean", grad: bool = True, hess: Literal[True],
             out: FloatArray | None = None, n_threads: int | None = None) -> LossGradHess: ...
@LOG_COSH.declare  # noqa: E302
def log_cosh(pred: ArrayLike, target: ArrayLike, *, sample_weight: ArrayLike | None = None,
             reduction: Reduction = "mean", grad: bool = True, hess: bool = False,
             out: FloatArray | None = None,
             n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Log-cosh loss: about r**2 / 2 near 0 and |r| - log 2 far from it.

    Per element, with r = pred - target::

        loss = log(cosh(r))
        grad = tanh(r)
        hess = 1 - tanh(r)**2 = 1 / cosh(r)**2

    computed without overflow for any finite r (as |r| + log1p(exp(-2|r|))
    - log 2 far from 0) and without cancellation near 0 (as log1p(cosh(r) - 1),
    cosh(r) - 1 = expm1(|r|)**2 / (2 exp(|r|))).  As optax's ``log_cosh``.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True,
      as in :func:`mse`.

    Examples:
      >>> import fastloss
      >>> round(fastloss.log_cosh([0.0, 1.0], [0.0, 0.0], reduction="sum").loss, 6)
      0.433781
    """
    return run(LOG_COSH, pred, target, (), sample_weight, reduction, grad, hess, out,
               n_threads)


def _pinball(pred: np.ndarray, target: np.ndarray, quantile: float, hess: bool) -> Formula:
    r = target - pred
    q = quantile
    with np.errstate(invalid="ignore"):
        grad = np.where(np.isnan(r), np.nan, np.where(r >= 0, -q, 1 - q))
    return np.maximum(q * r, (q - 1) * r), grad.astype(pred.dtype), None


PINBALL = Loss(
    "pinball", "elementwise", kernel="pinball", takes_hess=True, formula=_pinball,
    params=(Real("quantile", 0.5, low=0.0, high=1.0, low_open=True, high_open=True),),
    doc_shapes="(N,) or (N, K)", doc_loss="max(q·r′, (q − 1)·r′), r′ = target − pred")


@PINBALL.declare
def pinball(pred: ArrayLike, target: ArrayLike, *, quantile: float = 0.5,
            sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
            grad: bool = True, hess: bool = False, out: FloatArray | None = None,
            n_threads: int | None = None) -> LossGrad:
    """Pinball (quantile) loss: the loss whose minimiser is the ``quantile`` of the target.

    Per element, with r' = target - pred and q = quantile::

        loss = max(q r', (q - 1) r')
        grad = -q if r' >= 0 else 1 - q      (d loss / d pred; -q at r' = 0)

    As scikit-learn's ``mean_pinball_loss`` (alpha = q) and LightGBM's
    ``quantile`` objective; q = 0.5 is half the L1 loss.  It is piecewise
    linear: ``hess=True`` is a ValueError.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      quantile: the quantile q, in (0, 1).
      hess: must be False (there is no Hessian).
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, grad): the reduced loss and its (sub)gradient with
      respect to pred, as in :func:`l1`.

    References:
      Koenker and Bassett, "Regression Quantiles", Econometrica 46 (1978).

    Examples:
      >>> import fastloss
      >>> fastloss.pinball([0.0, 0.0], [1.0, -1.0], quantile=0.9, reduction="none")
      LossGrad(loss=array([0.9, 0.1]), grad=array([-0.9,  0.1]))
    """
    return run(PINBALL, pred, target, (quantile,), sample_weight, reduction, grad, hess, out,
               n_threads)  # type: ignore[return-value]


# --- counts ----------------------------------------------------------------------

def _poisson_nll(pred: np.ndarray, target: np.ndarray, log_input: bool, full: bool,
                 eps: float, hess: bool) -> Formula:
    x, t = pred, target
    x64, t64 = pred.astype(np.float64), target.astype(np.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # (the Hessian in float64, as the kernels)
        if log_input:
            rate = np.exp(x)
            loss, grad, curvature = rate - xmul(t, x), rate - t, np.exp(x64)
        else:
            rate = x + x.dtype.type(eps)
            loss = x - xmul(t, np.log(rate))
            rate64 = x64 + float(x.dtype.type(eps))
            grad, curvature = 1 - t / rate, t64 / (rate64 * rate64)
        if full:
            big = t > 1
            safe = np.where(big, t, 1)
            stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
            loss = loss + np.where(big, stirling, 0).astype(x.dtype)
    return loss, grad, curvature if hess else None


POISSON_NLL = Loss(
    "poisson_nll", "elementwise", kernel="poisson_nll", hess=True, torch="poisson_nll_loss",
    target=COUNTS, formula=_poisson_nll,
    params=(Flag("log_input", True), Flag("full", False), Real("eps", 1e-8, low=0.0)),
    doc_shapes="(N,) or (N, K), target counts ≥ 0",
    doc_loss="exp(x) − t·x (log_input), x − t·log(x + ε); + Stirling if full")


@overload
def poisson_nll(pred: ArrayLike, target: ArrayLike, *, log_input: bool = True,
                full: bool = False, eps: float = 1e-8, sample_weight: ArrayLike | None = None,
                reduction: Reduction = "mean", grad: bool = True,
                hess: Literal[False] = False, out: FloatArray | None = None,
                n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def poisson_nll(pred: ArrayLike, target: ArrayLike, *, log_input: bool = True,
                full: bool = False, eps: float = 1e-8, sample_weight: ArrayLike | None = None,
                reduction: Reduction = "mean", grad: bool = True, hess: Literal[True],
                out: FloatArray | None = None, n_threads: int | None = None) -> LossGradHess: ...
@POISSON_NLL.declare  # noqa: E302
def poisson_nll(pred: ArrayLike, target: ArrayLike, *, log_input: bool = True,
                full: bool = False, eps: float = 1e-8, sample_weight: ArrayLike | None = None,
                reduction: Reduction = "mean", grad: bool = True, hess: bool = False,
                out: FloatArray | None = None,
                n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Poisson negative log-likelihood of counts (torch's poisson_nll_loss).

    Per element, with x the prediction and t >= 0 the target::

        log_input=True:   loss = exp(x) - t x,         grad = exp(x) - t,
                          hess = exp(x)                 (x is the log-rate)
        log_input=False:  loss = x - t log(x + eps),   grad = 1 - t / (x + eps),
                          hess = t / (x + eps)**2       (x is the rate)
        full=True:        + t log t - t + 0.5 log(2 pi t) where t > 1
                          (Stirling's approximation of log t!; no gradient)

    As ``torch.nn.functional.poisson_nll_loss``, except that a term whose
    target is 0 is 0 even where its factor is infinite (t x at x = -inf, t log
    at x + eps = 0; torch: NaN).

    Args:
      pred: log-rates (log_input) or rates, shape (N,) or (N, K).
      target: counts, same shape, finite and >= 0 (a negative, NaN or
        infinite target is a ValueError naming its position).
      log_input: whether pred holds log-rates.
      full: add the Stirling term.
      eps: added to the rate before its log (log_input=False), >= 0.
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True,
      as in :func:`mse`.

    Examples:
      >>> import fastloss
      >>> fastloss.poisson_nll([0.0], [1.0], reduction="sum")
      LossGrad(loss=1.0, grad=array([0.]))
    """
    return run(POISSON_NLL, pred, target, (log_input, full, eps), sample_weight, reduction,
               grad, hess, out, n_threads)


# --- binary classification, focused ------------------------------------------------------

def _sigmoid_focal_loss(logits: np.ndarray, target: np.ndarray, alpha: float, gamma: float,
                        hess: bool) -> Formula:
    if hess and logits.dtype != np.float64:     # the Hessian in float64, as the kernels
        loss, grad, _ = _sigmoid_focal_loss(logits, target, alpha, gamma, False)
        return loss, grad, _sigmoid_focal_loss(logits.astype(np.float64),
                                               target.astype(np.float64), alpha, gamma, True)[2]
    x, t = logits, target
    e = np.exp(-np.abs(x))
    inv = 1 / (1 + e)
    positive = x >= 0
    sigma_pos = np.where(positive, inv, e * inv)        # sigma(x)
    sigma_neg = np.where(positive, e * inv, inv)        # sigma(-x)
    ce = xmul(t, np.logaddexp(0, -x)) + xmul(1 - t, np.logaddexp(0, x))
    n = np.where(positive, (1 - t) + t * e, t + (1 - t) * e)
    q = n * inv                                         # 1 - p_t
    power = np.ones_like(q) if gamma == 0 else q ** gamma
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(n > 0, e * inv / n, 1)             # sigma(x) sigma(-x) / (1 - p_t)
    a_t = (alpha * t + (1 - alpha) * (1 - t)) if alpha >= 0 else 1
    g = gamma * (1 - 2 * t)
    dce = (1 - t) * sigma_pos - t * sigma_neg           # d BCE / dx = sigma(x) - t
    finite = np.isfinite(x)                             # ce s -> 0 as |x| -> inf
    with np.errstate(invalid="ignore"):
        inner = dce + g * np.where(finite, ce * s, 0)
    curvature = None
    if hess:
        ds = s * (sigma_neg - sigma_pos) - (1 - 2 * t) * s * s
        with np.errstate(invalid="ignore"):
            ce_ds = np.where(finite, ce * ds, 0)
        curvature = a_t * power * (g * s * inner + e * inv * inv + g * (s * dce + ce_ds))
    return a_t * ce * power, a_t * power * inner, curvature


SIGMOID_FOCAL_LOSS = Loss(
    "sigmoid_focal_loss", "elementwise", inputs=("logits", "target"),
    kernel="sigmoid_focal_loss", hess=True, target=UNIT_INTERVAL, formula=_sigmoid_focal_loss,
    params=(Real("alpha", 0.25, high=1.0), GAMMA),
    doc_shapes="(N,) or (N, K), target in [0, 1]", doc_loss="α_t·(1 − p_t)^γ·BCE")


@overload
def sigmoid_focal_loss(logits: ArrayLike, target: ArrayLike, *, alpha: float = 0.25,
                       gamma: float = 2.0, sample_weight: ArrayLike | None = None,
                       reduction: Reduction = "mean", grad: bool = True,
                       hess: Literal[False] = False, out: FloatArray | None = None,
                       n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def sigmoid_focal_loss(logits: ArrayLike, target: ArrayLike, *, alpha: float = 0.25,
                       gamma: float = 2.0, sample_weight: ArrayLike | None = None,
                       reduction: Reduction = "mean", grad: bool = True, hess: Literal[True],
                       out: FloatArray | None = None,
                       n_threads: int | None = None) -> LossGradHess: ...
@SIGMOID_FOCAL_LOSS.declare  # noqa: E302
def sigmoid_focal_loss(logits: ArrayLike, target: ArrayLike, *, alpha: float = 0.25,
                       gamma: float = 2.0, sample_weight: ArrayLike | None = None,
                       reduction: Reduction = "mean", grad: bool = True, hess: bool = False,
                       out: FloatArray | None = None,
                       n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Sigmoid focal loss: binary cross-entropy that down-weights the easy examples.

    Per element, with x the logit, t in [0, 1] the target, p = sigma(x)::

        p_t  = p t + (1 - p) (1 - t)
        a_t  = alpha t + (1 - alpha) (1 - t)        (1 when alpha < 0)
        loss = a_t (1 - p_t)**gamma BCE(x, t)

    As ``torchvision.ops.sigmoid_focal_loss``, computed from the logits
    without rounding a probability: 1 - p_t = t sigma(-x) + (1 - t) sigma(x)
    from exp(-|x|), BCE from softplus.  The gradient and the Hessian are
    those of this formula (gamma = 0 is a_t BCE).

    Args:
      logits: shape (N,) or (N, K).
      target: same shape, values in [0, 1] (a target outside or NaN is a
        ValueError naming its position).
      alpha: the weight of the positive class, in [0, 1]; negative for none.
      gamma: the focusing exponent, >= 0.
      Others as in :func:`mse`.  The default reduction is "mean" (torchvision's
      is "none").

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True,
      as in :func:`mse`; grad is the gradient with respect to the logits.

    References:
      Lin, Goyal, Girshick, He and Dollar, "Focal Loss for Dense Object
      Detection", ICCV 2017.

    Examples:
      >>> import fastloss
      >>> round(fastloss.sigmoid_focal_loss([0.0], [1.0], alpha=-1, gamma=2.0).loss, 6)
      0.173287
    """
    return run(SIGMOID_FOCAL_LOSS, logits, target, (alpha, gamma), sample_weight, reduction,
               grad, hess, out, n_threads)


# --- heteroscedastic regression ---------------------------------------------------------

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _gaussian_nll(mean: np.ndarray, target: np.ndarray, var: np.ndarray, full: bool,
                  eps: float, hess: bool) -> Formula:
    dtype = mean.dtype.type
    v = np.maximum(var, dtype(eps))                     # NaN stays NaN
    r = mean - target
    loss = 0.5 * (np.log(v) + r * r / v) + (dtype(_HALF_LOG_2PI) if full else 0)
    grad_var = 0.5 * (1 / v - (r / v) ** 2)
    curvature = np.broadcast_to(1 / v, r.shape) if hess else None
    return loss, (r / v, grad_var), curvature


GAUSSIAN_NLL = Loss(
    "gaussian_nll", "elementwise", inputs=("mean", "target", "var"),
    gradients=("mean", "var"), kernel="gaussian_nll", hess=True, torch="gaussian_nll_loss",
    input_rules={"var": VARIANCES}, broadcast_inputs=("var",), formula=_gaussian_nll,
    params=(Flag("full", False), Real("eps", 1e-6, low=0.0)),
    doc_shapes="mean (N,) or (N, K); var the same, or (N,), (N, 1), (1, K) (torch's rule)",
    doc_loss="½(log v + r²/v), v = max(var, ε) (+ ½ log 2π if full)")


@overload
def gaussian_nll(mean: ArrayLike, target: ArrayLike, var: ArrayLike, *, full: bool = False,
                 eps: float = 1e-6, sample_weight: ArrayLike | None = None,
                 reduction: Reduction = "mean", grad: bool = True,
                 hess: Literal[False] = False, out: FloatArray | None = None,
                 out_var: FloatArray | None = None, n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def gaussian_nll(mean: ArrayLike, target: ArrayLike, var: ArrayLike, *, full: bool = False,
                 eps: float = 1e-6, sample_weight: ArrayLike | None = None,
                 reduction: Reduction = "mean", grad: bool = True, hess: Literal[True],
                 out: FloatArray | None = None, out_var: FloatArray | None = None,
                 n_threads: int | None = None) -> LossGradHess: ...
@GAUSSIAN_NLL.declare  # noqa: E302
def gaussian_nll(mean: ArrayLike, target: ArrayLike, var: ArrayLike, *, full: bool = False,
                 eps: float = 1e-6, sample_weight: ArrayLike | None = None,
                 reduction: Reduction = "mean", grad: bool = True, hess: bool = False,
                 out: FloatArray | None = None, out_var: FloatArray | None = None,
                 n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Gaussian negative log-likelihood with a predicted variance (torch's gaussian_nll_loss).

    Per element, with r = mean - target and v = max(var, eps)::

        loss     = 0.5 (log v + r**2 / v)   (+ 0.5 log(2 pi) if full)
        grad     = r / v                                   (d loss / d mean)
        grad_var = 0.5 (1 / v - r**2 / v**2)               (d loss / d var)
        hess     = 1 / v                                   (d^2 loss / d mean^2)

    As ``torch.nn.functional.gaussian_nll_loss``: eps (in the computation
    dtype) clamps the variance for the value, and the gradient with respect
    to var is taken at the clamped value and passed straight through (not 0
    below eps).  var has the mean's shape, or that shape without its last
    dimension ((N,) for an (N, K) mean: one variance per sample; () for an
    (N,) mean), or with the last dimension of size 1 ((N, 1), (1,)); it is
    broadcast, and its gradient summed, over the last dimension.  A negative
    var is a ValueError naming its position; NaN propagates.  With mse as the
    loss of a fixed variance, this is its natural completion: the model
    learns how uncertain each prediction is.

    Args:
      mean: predicted means, shape (N,) or (N, K).
      target: targets, the mean's shape.
      var: predicted variances (see above), >= 0.
      full: add the constant 0.5 log(2 pi).
      eps: the smallest variance used, >= 0.
      out: optional array receiving the gradient for mean (may be mean).
      out_var: optional array of var's shape receiving the gradient for var
        (may be var).
      Others as in :func:`mse`.

    Returns:
      LossGrad(loss, (grad_mean, grad_var)); (loss, None) with grad=False;
      LossGradHess(loss, (grad_mean, grad_var), hess) with hess=True, hess
      the second derivatives with respect to mean.

    Examples:
      >>> import fastloss
      >>> loss, (grad_mean, grad_var) = fastloss.gaussian_nll([1.0], [0.0], [1.0])
      >>> loss, grad_mean, grad_var
      (0.5, array([1.]), array([0.]))
    """
    return run_several(GAUSSIAN_NLL, (mean, target, var), (full, eps), sample_weight,
                       reduction, grad, hess, (out, out_var), n_threads)
