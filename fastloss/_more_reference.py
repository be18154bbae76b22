"""The NumPy twins of the losses beyond the seed (API.md "More losses").

Temporary placement (issue #15): ``fastloss.reference`` re-exports these
until the registry (issue #12) declares each loss once.  Same conventions as
:mod:`fastloss.reference`: the per-element maths in the computation dtype,
sums in float64, the docstrings that the fast functions share.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastloss import reference as _reference
from fastloss._validation import (as_variance, check_flag, check_nonnegative, check_out,
                                  check_parameter, check_probabilities, mean_denominator,
                                  prepare_elementwise)

__all__ = ["l1", "smooth_l1", "log_cosh", "pinball", "poisson_nll", "sigmoid_focal_loss",
           "gaussian_nll"]

_finish = _reference._finish
_xmul = _reference._xmul
_LOG_2PI = math.log(2 * math.pi)


# --- arguments shared with the fast functions --------------------------------------

def no_hessian(hess, name):
    """hess=True is a ValueError for a piecewise-linear loss (its Hessian is 0 or undefined)."""
    if check_flag(hess, "hess"):
        raise ValueError(f"{name} is piecewise linear: it has no Hessian to offer "
                         f"(hess=True is not supported)")


def check_quantile(quantile):
    """A real number strictly between 0 and 1."""
    if not isinstance(quantile, numbers.Real) or isinstance(quantile, bool):
        raise TypeError(f"quantile must be a real number, got {type(quantile).__name__}")
    quantile = float(quantile)
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    return quantile


def check_alpha(alpha):
    """The focal loss's alpha: in [0, 1], or negative for no alpha weighting."""
    if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a real number, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not (alpha <= 1.0 and alpha > -np.inf):
        raise ValueError(f"alpha must be in [0, 1], or negative for no alpha weighting, "
                         f"got {alpha}")
    return alpha


def check_out_var(out_var, var, grad, others):
    """out_var receives the gradient of var: var's shape and dtype; it may be var itself."""
    if out_var is not None and not grad:
        raise ValueError("out_var receives the gradient of var, so it cannot be given with "
                         "grad=False (nothing would be written to it)")
    if out_var is None:
        return None
    try:
        return check_out(out_var, var.shape, var.dtype, var, others)
    except ValueError as error:
        raise ValueError(str(error).replace("out ", "out_var ", 1)
                         .replace("overlaps pred", "overlaps var")) from None


def counts_check(target):
    check_nonnegative(target, "target", "counts", finite=True)


def variances_check(var):
    check_nonnegative(var, "var", "variances", finite=False)


# --- regression ------------------------------------------------------------------

def l1(pred, target, *, sample_weight=None, reduction="mean", grad=True, hess=False,
       out=None, n_threads=None):
    """Mean absolute error (the L1 loss).

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
      hess: must be False.
      out: optional C-contiguous array receiving the gradient (may be pred).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      LossGrad(loss, grad): the reduced loss (a float, or an array of w_i l_i
      for "none") and its gradient with respect to pred.

    Examples:
      >>> import fastloss
      >>> fastloss.l1([1.0, 2.0, 3.0], [1.0, 0.0, 4.0], reduction="sum")
      LossGrad(loss=3.0, grad=array([ 0.,  1., -1.]))
    """
    no_hessian(hess, "l1")
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads)
    r = prep.pred - prep.target
    return _finish(prep, np.abs(r), np.sign(r))


def smooth_l1(pred, target, *, beta=1.0, sample_weight=None, reduction="mean", grad=True,
              hess=False, out=None, n_threads=None):
    """Smooth L1 loss: quadratic below ``beta``, linear beyond (torch's smooth_l1_loss).

    Per element, with r = pred - target::

        loss = 0.5 r**2 / beta           if |r| < beta
               |r| - beta / 2            otherwise
        grad = r / beta if |r| < beta else sign(r)
        hess = 1 / beta if |r| < beta else 0          (NaN where r is NaN)

    As ``torch.nn.functional.smooth_l1_loss``: ``beta`` >= 0, and beta = 0 is
    the L1 loss (every element in the linear zone).  It is huber / beta for
    beta = delta > 0.  Other arguments and the return value as in :func:`mse`
    (``hess=True`` returns LossGradHess).

    References:
      Girshick, "Fast R-CNN", ICCV 2015.

    Examples:
      >>> import fastloss
      >>> fastloss.smooth_l1([0.5, 3.0], [0.0, 0.0], beta=1.0, reduction="none")
      LossGrad(loss=array([0.125, 2.5  ]), grad=array([0.5, 1. ]))
    """
    beta = check_parameter(beta, "beta")
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess)
    r = prep.pred - prep.target
    a = np.abs(r)
    inv_beta = 1.0 / beta if beta > 0 else 0.0
    with np.errstate(invalid="ignore"):
        inside = a < beta
        loss = np.where(inside, 0.5 * r * r * inv_beta, a - 0.5 * beta)
        grad_value = np.where(inside, r * inv_beta, np.sign(r))
        curvature = np.where(np.isnan(r), np.nan, np.where(inside, inv_beta, 0.0))
    return _finish(prep, loss, grad_value, hess=curvature)


def log_cosh(pred, target, *, sample_weight=None, reduction="mean", grad=True, hess=False,
             out=None, n_threads=None):
    """Log-cosh loss: about r**2 / 2 near 0 and |r| - log 2 far from it.

    Per element, with r = pred - target::

        loss = log(cosh(r))
        grad = tanh(r)
        hess = 1 - tanh(r)**2 = 1 / cosh(r)**2

    computed without overflow for any finite r (as |r| + log1p(exp(-2|r|))
    - log 2 far from 0) and without cancellation near 0 (as log1p(cosh(r) - 1),
    cosh(r) - 1 = expm1(|r|)**2 / (2 exp(|r|))).  As optax's ``log_cosh``.
    Other arguments and the return value as in :func:`mse`.

    Examples:
      >>> import fastloss
      >>> round(fastloss.log_cosh([0.0, 1.0], [0.0, 0.0], reduction="sum").loss, 6)
      0.433781
    """
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess)
    r = prep.pred - prep.target
    a = np.abs(r)
    near = np.minimum(a, 1)                  # where a < 1 (else unused)
    expm1 = np.expm1(near)
    with np.errstate(over="ignore", invalid="ignore"):
        loss = np.where(a < 1, np.log1p(expm1 * expm1 / (2 * (1 + expm1))),
                        a + np.log1p(np.exp(-2 * a)) - np.log(2).astype(r.dtype))
        curvature = 1 / np.cosh(r) ** 2
    return _finish(prep, loss, np.tanh(r), hess=curvature)


def pinball(pred, target, *, quantile=0.5, sample_weight=None, reduction="mean", grad=True,
            hess=False, out=None, n_threads=None):
    """Pinball (quantile) loss: the loss whose minimiser is the ``quantile`` of the target.

    Per element, with r' = target - pred and q = quantile::

        loss = max(q r', (q - 1) r')
        grad = -q if r' >= 0 else 1 - q      (d loss / d pred; -q at r' = 0)

    As scikit-learn's ``mean_pinball_loss`` (alpha = q) and LightGBM's
    ``quantile`` objective; q = 0.5 is half the L1 loss.  ``quantile`` must be
    in (0, 1).  It is piecewise linear: ``hess=True`` is a ValueError.  Other
    arguments and the return value as in :func:`l1`.

    References:
      Koenker and Bassett, "Regression Quantiles", Econometrica 46 (1978).

    Examples:
      >>> import fastloss
      >>> fastloss.pinball([0.0, 0.0], [1.0, -1.0], quantile=0.9, reduction="none")
      LossGrad(loss=array([0.9, 0.1]), grad=array([-0.9,  0.1]))
    """
    no_hessian(hess, "pinball")
    q = check_quantile(quantile)
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads)
    r = prep.target - prep.pred
    with np.errstate(invalid="ignore"):
        grad_value = np.where(np.isnan(r), np.nan, np.where(r >= 0, -q, 1 - q))
    return _finish(prep, np.maximum(q * r, (q - 1) * r), grad_value.astype(prep.dtype))


# --- counts ----------------------------------------------------------------------

def poisson_nll(pred, target, *, log_input=True, full=False, eps=1e-8, sample_weight=None,
                reduction="mean", grad=True, hess=False, out=None, n_threads=None):
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
    at x + eps = 0; torch: NaN).  A negative, NaN or infinite target is a
    ValueError naming its position.

    Args:
      pred: log-rates (log_input) or rates, shape (N,) or (N, K).
      target: counts, same shape, finite and >= 0.
      log_input: whether pred holds log-rates.
      full: add the Stirling term.
      eps: added to the rate before its log (log_input=False), >= 0.
      Others as in :func:`mse`.

    Examples:
      >>> import fastloss
      >>> fastloss.poisson_nll([0.0], [1.0], reduction="sum")
      LossGrad(loss=1.0, grad=array([0.]))
    """
    log_input = check_flag(log_input, "log_input")
    full = check_flag(full, "full")
    eps = check_parameter(eps, "eps")
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess)
    x, t = prep.pred, prep.target
    counts_check(t)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if log_input:
            rate = np.exp(x)
            loss, grad_value, curvature = rate - _xmul(t, x), rate - t, rate
        else:
            rate = x + x.dtype.type(eps)
            loss = x - _xmul(t, np.log(rate))
            grad_value, curvature = 1 - t / rate, t / (rate * rate)
        if full:
            big = t > 1
            safe = np.where(big, t, 1)
            stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
            loss = loss + np.where(big, stirling, 0).astype(x.dtype)
    return _finish(prep, loss, grad_value, hess=curvature)


# --- binary classification -----------------------------------------------------------

def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, sample_weight=None,
                       reduction="mean", grad=True, hess=False, out=None, n_threads=None):
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

    References:
      Lin, Goyal, Girshick, He and Dollar, "Focal Loss for Dense Object
      Detection", ICCV 2017.

    Examples:
      >>> import fastloss
      >>> round(fastloss.sigmoid_focal_loss([0.0], [1.0], alpha=-1, gamma=2.0).loss, 6)
      0.173287
    """
    alpha = check_alpha(alpha)
    gamma = check_parameter(gamma, "gamma")
    prep = prepare_elementwise(logits, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="logits", hess=hess)
    x, t = prep.pred, prep.target
    check_probabilities(t, "target", at_most_one=True)
    e = np.exp(-np.abs(x))
    inv = 1 / (1 + e)
    positive = x >= 0
    sigma_pos = np.where(positive, inv, e * inv)        # sigma(x)
    sigma_neg = np.where(positive, e * inv, inv)        # sigma(-x)
    ce = _xmul(t, np.logaddexp(0, -x)) + _xmul(1 - t, np.logaddexp(0, x))
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
    if prep.hess:
        ds = s * (sigma_neg - sigma_pos) - (1 - 2 * t) * s * s
        with np.errstate(invalid="ignore"):
            ce_ds = np.where(finite, ce * ds, 0)
        curvature = a_t * power * (g * s * inner + e * inv * inv + g * (s * dce + ce_ds))
    return _finish(prep, a_t * ce * power, a_t * power * inner, hess=curvature)


# --- heteroscedastic regression ---------------------------------------------------------

def gaussian_nll(mean, target, var, *, full=False, eps=1e-6, sample_weight=None,
                 reduction="mean", grad=True, hess=False, out=None, out_var=None,
                 n_threads=None):
    """Gaussian negative log-likelihood with a predicted variance (torch's gaussian_nll_loss).

    Per element, with r = mean - target and v = max(var, eps)::

        loss     = 0.5 (log v + r**2 / v)   (+ 0.5 log(2 pi) if full)
        grad     = r / v                                   (d loss / d mean)
        grad_var = 0.5 (1 / v - r**2 / v**2)               (d loss / d var)
        hess     = 1 / v                                   (d^2 loss / d mean^2)

    As ``torch.nn.functional.gaussian_nll_loss``: eps (in the computation
    dtype) clamps the variance for the value, and the gradient with respect
    to var is taken at the clamped value and passed straight through (not 0
    below eps).  var has the mean's shape, or that shape with one dimension
    of size 1 ((N, 1): one variance per sample), or one dimension fewer
    ((N,) for an (N, K) mean); it is broadcast, and its gradient summed, over
    the missing or size-1 dimension.  A negative var is a ValueError; NaN
    propagates.

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
    full = check_flag(full, "full")
    eps = check_parameter(eps, "eps")
    prep = prepare_elementwise(mean, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="mean", hess=hess)
    var, shape = as_variance(var, prep.shape, prep.dtype)
    out_var = check_out_var(out_var, var, prep.grad,
                            [("mean", prep.pred), ("target", prep.target),
                             ("sample_weight", prep.weight), ("out", prep.out)])
    variances_check(var)
    dtype = prep.dtype.type
    v = np.maximum(var.reshape(shape), dtype(eps))      # NaN stays NaN
    r = prep.pred - prep.target
    loss = 0.5 * (np.log(v) + r * r / v) + (dtype(0.5 * _LOG_2PI) if full else 0)
    result = _finish(prep, loss, r / v, hess=np.broadcast_to(1 / v, r.shape))
    if not prep.grad:
        return result
    grad_var = _scaled_like_grad(prep, 0.5 * (1 / v - (r / v) ** 2))
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and prep.shape[k] != 1)
    grad_var = np.sum(grad_var, axis=axes, dtype=np.float64).reshape(var.shape).astype(prep.dtype)
    if out_var is not None:
        np.copyto(out_var, grad_var)
        grad_var = out_var
    return result._replace(grad=(result.grad, grad_var))


def _scaled_like_grad(prep, values):
    """values * w_i (row weights), divided by the "mean" denominator: as _finish scales grad."""
    if prep.weight is not None:
        values = values * (prep.weight if values.ndim == 1 else prep.weight[:, None])
    if prep.reduction == "mean":
        denominator = mean_denominator(prep, 1 if values.ndim == 1 else values.shape[1])
        values = np.zeros_like(values) if denominator == 0 else values / denominator
    return values
