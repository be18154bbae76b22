"""fastloss.reference: every loss of fastloss in plain, readable NumPy.

Same names, signatures, semantics and errors as the fast kernels in
``fastloss``: it is the test oracle, the benchmark baseline and a fallback
anyone can read.  ``import fastloss.reference as fl`` and ``import fastloss
as fl`` are interchangeable.

The per-element maths is computed in the computation dtype (float32 or
float64); sums are accumulated in float64.
"""
from __future__ import annotations

import numpy as np

from fastloss._validation import (LossGrad, as_pos_weight, check_parameter, mean_denominator,
                                  prepare_elementwise, prepare_hinge)

__all__ = ["LossGrad", "mse", "huber", "binary_cross_entropy", "hinge", "squared_hinge"]


# --- shared helpers --------------------------------------------------------

def _xmul(a, b):
    """a * b with 0 * inf = 0 (a vanishing term), NaN still propagating."""
    with np.errstate(invalid="ignore"):
        return np.where((a == 0) & np.isinf(b), 0.0, a * b)


def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for either sign of x."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _finish(prep, loss, grad):
    """Apply sample weights and the reduction to per-element losses and gradients.

    ``loss`` and ``grad`` have the shape of ``prep.pred``; ``grad`` is the
    derivative of each element's (unweighted) loss with respect to pred.
    """
    dtype, reduction = prep.dtype, prep.reduction
    if prep.weight is not None:
        w = prep.weight if loss.ndim == 1 else prep.weight[:, None]
        loss = loss * w
        grad = grad * w
    if reduction == "none":
        value = loss.astype(dtype)
    else:
        value = float(np.sum(loss, dtype=np.float64))
        if reduction == "mean":
            row_size = 1 if loss.ndim == 1 else loss.shape[1]
            denominator = mean_denominator(prep, row_size)
            if denominator == 0:        # a mean over nothing is 0, with a zero gradient
                value, grad = 0.0, np.zeros_like(grad)
            else:
                value, grad = value / denominator, grad / denominator
    if not prep.grad:
        return LossGrad(value, None)
    grad = np.asarray(grad).astype(dtype, copy=False)
    if prep.out is not None:
        np.copyto(prep.out, grad)
        grad = prep.out
    return LossGrad(value, grad)


# --- regression ------------------------------------------------------------

def mse(pred, target, *, sample_weight=None, reduction="mean", grad=True, out=None,
        n_threads=None):
    """Mean squared error: the Gaussian negative log-likelihood up to constants.

    Per element, with r = pred - target::

        loss = r ** 2
        grad = 2 r

    As ``torch.nn.functional.mse_loss``.

    Args:
      pred: predictions, shape (N,) or (N, K).
      target: targets, same shape.
      sample_weight: optional (N,) weights, one per sample (row).
      reduction: "mean" (sum_i w_i l_i / (K sum_i w_i)), "sum" or "none".
      grad: compute the gradient (False skips all gradient work).
      out: optional C-contiguous array receiving the gradient (may be pred).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      LossGrad(loss, grad): the reduced loss (a float, or an array of w_i l_i
      for "none") and its gradient with respect to pred.

    Examples:
      >>> import fastloss
      >>> fastloss.mse([1.0, 2.0], [1.0, 0.0])
      LossGrad(loss=2.0, grad=array([0., 2.]))
    """
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads)
    r = prep.pred - prep.target
    return _finish(prep, r * r, 2 * r)


def huber(pred, target, *, delta=1.0, sample_weight=None, reduction="mean", grad=True,
          out=None, n_threads=None):
    """Huber loss: quadratic near zero, linear beyond ``delta``.

    Per element, with r = pred - target::

        loss = 0.5 r**2                  if |r| <= delta
               delta (|r| - delta / 2)   otherwise
        grad = clip(r, -delta, delta)

    As ``torch.nn.functional.huber_loss``; ``delta`` must be > 0 (as in torch).
    Other arguments and the return value as in :func:`mse`.

    References:
      Huber, "Robust Estimation of a Location Parameter", 1964.

    Examples:
      >>> import fastloss
      >>> fastloss.huber([0.5, 3.0], [0.0, 0.0], delta=1.0, reduction="sum")
      LossGrad(loss=2.625, grad=array([0.5, 1. ]))
    """
    delta = check_parameter(delta, "delta", positive=True)
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads)
    r = prep.pred - prep.target
    abs_r = np.abs(r)
    with np.errstate(invalid="ignore"):
        loss = np.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta))
    return _finish(prep, loss, np.clip(r, -delta, delta))


# --- binary classification ---------------------------------------------------

def binary_cross_entropy(logits, target, *, pos_weight=None, sample_weight=None,
                         reduction="mean", grad=True, out=None, n_threads=None):
    """Binary cross-entropy of sigmoid(logits), computed from the logits.

    Per element, with x the logit, t in [0, 1] the target, pw the positive
    class weight and softplus(x) = log(1 + exp(x)) = -log(1 - sigma(x))::

        loss = -(pw t log sigma(x) + (1 - t) log(1 - sigma(x)))
             = pw t softplus(-x) + (1 - t) softplus(x)
        grad = (1 - t) sigma(x) - pw t sigma(-x)        (= sigma(x) - t for pw = 1)

    softplus is computed as max(x, 0) + log1p(exp(-|x|)), finite for every
    finite logit.  A term whose coefficient is zero vanishes even where its
    softplus is infinite, so logits of +-inf give the limiting values.  As
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Args:
      logits: shape (N,) or (N, K).
      target: same shape, values in [0, 1] (soft labels allowed).
      pos_weight: None, a scalar, or (K,) weights of the positive term.
      Others as in :func:`mse`.

    Examples:
      >>> import fastloss
      >>> round(fastloss.binary_cross_entropy([0.0], [1.0]).loss, 6)  # log 2
      0.693147
    """
    prep = prepare_elementwise(logits, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="logits")
    x, t = prep.pred, prep.target
    pw = as_pos_weight(pos_weight, 1 if x.ndim == 1 else x.shape[1])
    pw = 1.0 if pw is None else (pw.astype(x.dtype) if x.ndim == 2 else pw[0])
    softplus_pos = np.logaddexp(0, x)       # -log(1 - sigma(x))
    softplus_neg = np.logaddexp(0, -x)      # -log sigma(x)
    loss = _xmul(pw * t, softplus_neg) + _xmul(1 - t, softplus_pos)
    grad_value = (1 - t) * _sigmoid(x) - pw * t * _sigmoid(-x)
    return _finish(prep, loss, grad_value)


def hinge(scores, target, *, margin=1.0, sample_weight=None, reduction="mean", grad=True,
          out=None, n_threads=None):
    """Hinge loss of a binary max-margin classifier (the linear SVM loss).

    Per sample, with s the score and t in {-1, +1}::

        loss = max(0, margin - t s)
        grad = -t if margin - t s > 0 else 0     (subgradient 0 at the kink)

    Targets may also be given all in {0, 1} (0 meaning -1).

    Args:
      scores: shape (N,).
      target: shape (N,), all in {-1, +1} or all in {0, 1}.
      margin: the margin, >= 0.
      Others as in :func:`mse`.

    Examples:
      >>> import fastloss
      >>> fastloss.hinge([2.0, 0.5], [1, 1], reduction="none")
      LossGrad(loss=array([0. , 0.5]), grad=array([ 0., -1.]))
    """
    margin = check_parameter(margin, "margin")
    prep = prepare_hinge(scores, target, sample_weight, reduction, grad, out, n_threads)
    t = prep.target
    z = margin - t * prep.pred
    with np.errstate(invalid="ignore"):
        grad_value = np.where(np.isnan(z), z, np.where(z > 0, -t, 0))
    return _finish(prep, np.maximum(z, 0), grad_value.astype(prep.dtype))


def squared_hinge(scores, target, *, margin=1.0, sample_weight=None, reduction="mean",
                  grad=True, out=None, n_threads=None):
    """Squared hinge loss (the L2-SVM loss): smooth at the margin.

    Per sample, with s the score and t in {-1, +1}::

        loss = max(0, margin - t s) ** 2
        grad = -2 t max(0, margin - t s)

    Arguments as in :func:`hinge`.

    Examples:
      >>> import fastloss
      >>> fastloss.squared_hinge([0.5], [1], reduction="sum")
      LossGrad(loss=0.25, grad=array([-1.]))
    """
    margin = check_parameter(margin, "margin")
    prep = prepare_hinge(scores, target, sample_weight, reduction, grad, out, n_threads)
    t = prep.target
    z = np.maximum(margin - t * prep.pred, 0)
    return _finish(prep, z * z, -2 * t * z)

