"""fastloss.reference: every loss of fastloss in plain, readable NumPy.

Same names, signatures, semantics and errors as the fast kernels in
``fastloss``: it is the test oracle, the benchmark baseline and a fallback
anyone can read.  ``import fastloss.reference as fl`` and ``import fastloss
as fl`` are interchangeable.

The per-element maths is computed in the computation dtype (float32 or
float64); sums are accumulated in float64.  The multiclass rows are computed
in float64, as in the kernels, and cast to the computation dtype at the end.
"""
from __future__ import annotations

import numpy as np

from fastloss._linear_validation import LinearCrossEntropyGrad, prepare_linear
from fastloss._validation import (LossGrad, LossGradHess, as_pos_weight, check_kind,
                                  check_probabilities,
                                  check_parameter, mean_denominator, prepare_elementwise,
                                  prepare_hinge, prepare_multiclass, prepare_rows)

__all__ = ["LossGrad", "LossGradHess", "mse", "huber", "binary_cross_entropy", "hinge",
           "squared_hinge", "softmax_cross_entropy", "softmax_binary_cross_entropy",
           "kl_divergence", "multiclass_hinge", "logsumexp", "softmax", "log_softmax"]


# --- shared helpers --------------------------------------------------------

def _xmul(a, b):
    """a * b with 0 * inf = 0 (a vanishing term), NaN still propagating."""
    with np.errstate(invalid="ignore"):
        return np.where((a == 0) & np.isinf(b), 0.0, a * b)


def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for either sign of x."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _finish(prep, loss, grad, denominator=None, hess=None):
    """Apply sample weights and the reduction to per-element losses and gradients.

    ``loss`` has the shape of ``prep.pred`` (elementwise losses) or (N,) (one
    loss per row); ``grad`` has the shape of ``prep.pred`` and is the
    derivative of each (unweighted) loss with respect to pred, ``hess`` (used
    when ``prep.hess``) the second derivatives d^2 loss / d pred_i^2 of the
    same shape.  ``denominator`` overrides the "mean" divisor of
    :func:`mean_denominator`.
    """
    dtype, reduction = prep.dtype, prep.reduction
    if prep.weight is not None:
        loss = loss * (prep.weight if loss.ndim == 1 else prep.weight[:, None])
        grad = grad * (prep.weight if grad.ndim == 1 else prep.weight[:, None])
        if prep.hess:
            hess = hess * (prep.weight if hess.ndim == 1 else prep.weight[:, None])
    if reduction == "none":
        with np.errstate(over="ignore"):    # a loss beyond float32's range is stored as inf
            value = loss.astype(dtype)
    else:
        value = float(np.sum(loss, dtype=np.float64))
        if reduction == "mean":
            if denominator is None:
                row_size = 1 if loss.ndim == 1 else loss.shape[1]
                denominator = mean_denominator(prep, row_size)
            if denominator == 0:        # a mean over nothing is 0, with a zero gradient
                value, grad = 0.0, np.zeros_like(grad)
                if prep.hess:
                    hess = np.zeros_like(hess)
            else:
                value, grad = value / denominator, grad / denominator
                if prep.hess:
                    hess = hess / denominator
    if not prep.grad:
        return LossGrad(value, None)
    grad = np.asarray(grad).astype(dtype, copy=False)
    if prep.out is not None:
        np.copyto(prep.out, grad)
        grad = prep.out
    if prep.hess:
        return LossGradHess(value, grad, np.asarray(hess).astype(dtype))     # always a copy
    return LossGrad(value, grad)


# --- regression ------------------------------------------------------------

def mse(pred, target, *, sample_weight=None, reduction="mean", grad=True, hess=False,
        out=None, n_threads=None):
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
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess)
    r = prep.pred - prep.target
    return _finish(prep, r * r, 2 * r, hess=np.full(r.shape, 2.0))


def huber(pred, target, *, delta=1.0, sample_weight=None, reduction="mean", grad=True,
          hess=False, out=None, n_threads=None):
    """Huber loss: quadratic near zero, linear beyond ``delta``.

    Per element, with r = pred - target::

        loss = 0.5 r**2                  if |r| <= delta
               delta (|r| - delta / 2)   otherwise
        grad = clip(r, -delta, delta)
        hess = 1 if |r| <= delta else 0           (NaN where r is NaN)

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
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess)
    r = prep.pred - prep.target
    abs_r = np.abs(r)
    with np.errstate(invalid="ignore"):
        loss = np.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta))
        curvature = np.where(np.isnan(r), np.nan, np.where(abs_r <= delta, 1.0, 0.0))
    return _finish(prep, loss, np.clip(r, -delta, delta), hess=curvature)


# --- binary classification ---------------------------------------------------

def binary_cross_entropy(logits, target, *, pos_weight=None, sample_weight=None,
                         reduction="mean", grad=True, hess=False, out=None, n_threads=None):
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

    Examples:
      >>> import fastloss
      >>> round(fastloss.binary_cross_entropy([0.0], [1.0]).loss, 6)  # log 2
      0.693147
    """
    prep = prepare_elementwise(logits, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="logits", hess=hess)
    x, t = prep.pred, prep.target
    check_probabilities(t, "target", at_most_one=True)
    pw64 = as_pos_weight(pos_weight, 1 if x.ndim == 1 else x.shape[1])
    pw64 = 1.0 if pw64 is None else (pw64 if x.ndim == 2 else pw64[0])
    pw = pw64.astype(x.dtype) if isinstance(pw64, np.ndarray) else pw64
    softplus_pos = np.logaddexp(0, x)       # -log(1 - sigma(x))
    softplus_neg = np.logaddexp(0, -x)      # -log sigma(x)
    loss = _xmul(pw * t, softplus_neg) + _xmul(1 - t, softplus_pos)
    grad_value = (1 - t) * _sigmoid(x) - pw * t * _sigmoid(-x)
    curvature = None
    if prep.hess:
        x64, t64 = x.astype(np.float64), t.astype(np.float64)
        e = np.exp(-np.abs(x64))            # sigma(x) sigma(-x) = e / (1 + e)^2
        curvature = (pw64 * t64 + 1 - t64) * (e / ((1 + e) * (1 + e)))
    return _finish(prep, loss, grad_value, hess=curvature)


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



# --- multiclass ------------------------------------------------------------
#
# Every multiclass function works on the rows of an (N, C) array.  The row
# maths follows one rule, shared with the fast kernels:
#
#   m = max_c x_c, k = the first class where x_k = m,
#   e_c = exp(x_c - m), S = sum_{c != k} e_c,
#   log-sum-exp = m + log1p(S)                 (Blanchard, Higham & Higham 2021)
#   p_c = e_c / (1 + S),  log p_c = (x_c - m) - log1p(S).
#
# Infinite logits: if m is infinite (+inf, or -inf for a row of -inf only),
# the classes at m share the probability equally (x_c - m counts as 0 there)
# and every other class has probability 0.  A -inf logit in a row with a
# finite maximum has probability 0.  NaN anywhere in a row makes that row's
# results NaN.
#
# References:
#   P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the
#   log-sum-exp and softmax functions", IMA J. Numer. Anal. 41 (2021).
#   M. Maechler, "Accurately computing log(1 - exp(-|a|))", Rmpfr vignette (2012).


class _RowStats:
    """The shifted logits of each row and the sums the row maths is built on.

    As in the kernels, each row is computed in float64 from the stored values
    (so float32 rows like [3e38, -3e38] give finite losses); the public
    functions cast their results to the computation dtype.
    """

    def __init__(self, x):
        x = x.astype(np.float64)
        n_rows, n_classes = x.shape
        self.n_rows, self.n_classes = n_rows, n_classes
        self.rows = np.arange(n_rows)
        if n_classes == 0:
            self.max = np.full(n_rows, -np.inf)
            self.shifted = x.copy()
            self.argmax = np.zeros(n_rows, dtype=np.intp)
            self.exp = x.copy()
            self.others = np.zeros(n_rows)
            self.log1p_others = np.zeros(n_rows)
            return
        m = np.max(x, axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):
            self.shifted = np.where(x == m, 0, x - m)
        self.max = m[:, 0]
        self.argmax = np.argmax(x, axis=1)
        self.exp = np.exp(self.shifted)
        exp_others = self.exp.copy()
        exp_others[self.rows, self.argmax] = 0
        # S; a NaN maximum makes it NaN, also in a row of one class
        self.others = np.where(np.isnan(self.max), np.nan, np.sum(exp_others, axis=1))
        self.log1p_others = np.log1p(self.others)

    def logsumexp(self):
        with np.errstate(invalid="ignore"):
            return self.max + self.log1p_others

    def log_softmax(self):
        return self.shifted - self.log1p_others[:, None]

    def softmax(self):
        return self.exp / (1 + self.others[:, None])

    def label_gradient(self, labels):
        """softmax - onehot(labels), with p_y - 1 = -S / (1 + S) where y is the maximum.

        p_y - 1 = -(sum_{c != y} e_c) / (1 + S) keeps every digit when p_y is
        close to 1; when y is not the first maximum p_y <= 1/2 and p_y - 1 is
        exact enough as written.
        """
        grad = self.softmax()
        grad[self.rows, labels] -= 1
        at_max = labels == self.argmax
        grad[self.rows[at_max], labels[at_max]] = (-self.others / (1 + self.others))[at_max]
        return grad

    def target_gradient(self, a):
        """(sum_c a_c) p - a for non-negative class coefficients a (N, C).

        At the first maximum k, A p_k - a_k = (sum_{c != k} a_c) - A S / (1 + S),
        which keeps its digits when p_k is close to 1 and a_k close to A.
        """
        a = a.astype(np.float64)
        a_sum = np.sum(a, axis=1)
        grad = a_sum[:, None] * self.softmax() - a
        if self.n_classes > 0:
            a_others = a.copy()
            a_others[self.rows, self.argmax] = 0
            grad[self.rows, self.argmax] = (np.sum(a_others, axis=1)
                                            - a_sum * self.others / (1 + self.others))
        return grad

    def hessian_diagonal(self, a_sum):
        """A p_c (1 - p_c) of each row, A = ``a_sum`` (N,): the diagonal of A (diag(p) - p p^T).

        At the first maximum k, p_k (1 - p_k) = S / (1 + S)^2, which keeps its
        digits when p_k is close to 1; elsewhere p_c <= 1/2.
        """
        p = self.softmax()
        curvature = p * (1 - p)
        if self.n_classes > 0:
            curvature[self.rows, self.argmax] = self.others / (1 + self.others) ** 2
        return np.asarray(a_sum, dtype=np.float64)[:, None] * curvature

    def log_others(self):
        """log S = log(sum_{c != k} e_c) without underflow (the log-sum-exp of the others)."""
        if self.n_classes < 2:
            return np.full(self.n_rows, -np.inf)
        others = self.shifted.copy()
        others[self.rows, self.argmax] = -np.inf
        second = np.max(others, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shifted = np.where(others == second, 0, others - second)
            return second[:, 0] + np.log(np.sum(np.exp(shifted), axis=1))


def _log1mexp(a):
    """log(1 - exp(a)) for a <= 0, switching at -log 2 (Maechler 2012)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > -np.log(2), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def _xlogx(t):
    """t log t with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, t * np.log(t))


def softmax_cross_entropy(logits, target, *, class_weight=None, ignore_index=None,
                          label_smoothing=0.0, sample_weight=None, reduction="mean",
                          grad=True, hess=False, out=None, n_threads=None):
    """Softmax cross-entropy of integer labels or probability targets.

    Exactly ``torch.nn.functional.cross_entropy(logits, target, weight=class_weight,
    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)``,
    except that a "mean" over nothing is 0.0 with a zero gradient.  Per row,
    with p = softmax(x), w the class weights (1 without), eps the label
    smoothing and C the number of classes:

    Labels y::

        loss = (1 - eps) w_y (-log p_y) + (eps / C) sum_c w_c (-log p_c)
        grad = (1 - eps) w_y (p - onehot(y)) + (eps / C) (sum_c w_c p - w)

    A row whose label equals ``ignore_index`` has loss 0 and gradient 0.
    "mean" divides by sum_i s_i w_{y_i} over the rows not ignored (s the
    sample weights, 1 without): torch's weighted mean.

    Probability targets t (rows of an (N, C) array), with
    t' = (1 - eps) t + eps / C::

        loss = -sum_c w_c t'_c log p_c
        grad = (sum_c w_c t'_c) p - w t'

    and "mean" divides by sum_i s_i (N without sample weights), as torch.

    Hessian: both forms are loss = -sum_c a_c log p_c with A = sum_c a_c
    (A = (1 - eps) w_y + (eps / C) sum_c w_c for labels, sum_c w_c t'_c for
    probabilities), so grad = A p - a and the Hessian is A (diag(p) - p p^T),
    whose diagonal is returned with hess=True::

        hess = A p (1 - p)

    with p_k (1 - p_k) = S / (1 + S)^2 at the first maximum k (accurate as
    p_k -> 1).  An ignored row has hess 0.

    The log-probabilities are log p_c = (x_c - m) - log1p(S), m the row
    maximum and S the sum of exp(x_c - m) over the classes other than the
    first maximum, so every loss and gradient is finite for finite logits of
    any magnitude.  A term with a zero coefficient vanishes even where
    log p_c = -inf (a -inf logit).

    Infinite logits: the classes at an infinite row maximum share the
    probability equally (+inf beats every finite logit; a row of -inf only is
    uniform), and a -inf logit below a finite maximum has probability 0.
    NaN in a row makes that row's loss and gradient NaN, and no other row's.

    Args:
      logits: shape (N, C).
      target: (N,) integer labels (any integer dtype; floats are a TypeError)
        or (N, C) class probabilities.
      class_weight: optional (C,) weight of each class (torch's ``weight``).
      ignore_index: None, or a label value whose rows are skipped (labels only).
      label_smoothing: eps in [0, 1].
      sample_weight: optional (N,) weights, one per row; each also weights
        that row's share of the "mean" denominator.
      reduction: "mean", "sum" or "none" (per-row s_i loss_i).
      grad: compute the gradient (False skips all gradient work).
      hess: also compute the diagonal of the Hessian of the returned loss
        with respect to the logits (sample weights and the "mean" divisor
        included), in the same pass; needs grad=True.
      out: optional C-contiguous (N, C) array receiving the gradient; may be
        ``logits`` itself (the gradient then overwrites the logits).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      LossGrad(loss, grad): the reduced loss and its gradient with respect
      to the logits.  With hess=True, LossGradHess(loss, grad, hess), hess a
      new (N, C) array of grad's dtype (``out`` receives the gradient only).

    References:
      Szegedy et al., "Rethinking the Inception Architecture for Computer
      Vision", 2016 (label smoothing).

    Examples:
      >>> import fastloss
      >>> loss, g = fastloss.softmax_cross_entropy([[0.0, 0.0]], [1])
      >>> round(loss, 6)  # log 2
      0.693147
      >>> g
      array([[ 0.5, -0.5]])
    """
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              class_weight=class_weight, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, hess=hess)
    x, eps = prep.pred, prep.label_smoothing
    n_rows, n_classes = x.shape
    stats = _RowStats(x)
    w = np.ones(n_classes) if prep.class_weight is None else prep.class_weight
    log_p = stats.log_softmax()
    sample = np.ones(n_rows) if prep.weight is None else prep.weight
    if prep.has_labels:
        y = prep.target
        kept = np.ones(n_rows, bool) if prep.ignore_index is None else y != prep.ignore_index
        y = np.where(kept, y, 0)
        loss = np.zeros(n_rows)
        grad_value = np.zeros(x.shape)
        a_sum = np.zeros(n_rows)
        kept_rows = kept
        if n_classes > 0:
            w_y = w[y]
            loss = _xmul((1 - eps) * w_y, -log_p[stats.rows, y])
            grad_value = (1 - eps) * w_y[:, None] * stats.label_gradient(y)
            if eps > 0:
                loss = loss + eps / n_classes * -np.sum(_xmul(w, log_p), axis=1)
                grad_value += eps / n_classes * (np.sum(w) * stats.softmax() - w)
            loss = np.where(kept, loss, 0)
            grad_value = np.where(kept[:, None], grad_value, 0)
            a_sum = np.where(kept, (1 - eps) * w_y + eps / n_classes * np.sum(w), 0)
            denominator = float(np.sum(sample * w_y * kept))
        else:
            denominator = 0.0
    else:
        kept_rows = np.ones(n_rows, bool)
        t = prep.target.astype(np.float64)
        if eps > 0:
            t = (1 - eps) * t + eps / n_classes
        weighted_t = w * t
        loss = -np.sum(_xmul(weighted_t, log_p), axis=1)
        grad_value = stats.target_gradient(weighted_t)
        a_sum = np.sum(weighted_t, axis=1)
        denominator = float(np.sum(sample))
    curvature = None
    if prep.hess:       # an ignored row has hess 0, also where its logits are NaN
        curvature = np.where(kept_rows[:, None], stats.hessian_diagonal(a_sum), 0.0)
    return _finish(prep, loss, grad_value, denominator, hess=curvature)


def _cross_odds(x, stats):
    """p_c r_k = p_c p_k / (1 - p_k) = e_c / (T S) of every class c, k the first maximum.

    Rescaled by the largest other logit m2: e_c / S = exp(x_c - m2) / S' with
    S' = sum_{j != k} exp(x_j - m2) >= 1, so neither e_c nor S underflows, and
    log S' is never added to a huge m2 - m (the log-domain exp(log p_c - log S)
    loses it: for the float32 row [3e38, 0, 0] it gives 1 instead of 1/2).
    """
    others = x.astype(np.float64)
    others[stats.rows, stats.argmax] = -np.inf
    second = np.max(others, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        rescaled = np.exp(np.where(others == second, 0.0, others - second))
        rescaled[stats.rows, stats.argmax] = 0.0
        return rescaled / (np.sum(rescaled, axis=1, keepdims=True)
                           * (1 + stats.others[:, None]))


def softmax_binary_cross_entropy(logits, target, *, sample_weight=None, reduction="mean",
                                 grad=True, out=None, n_threads=None):
    """Softmax cross-entropy that also penalises the probability of the wrong classes.

    Per row, with p = softmax(x) and t the target probabilities (onehot(y)
    for labels)::

        loss = -sum_c [t_c log p_c + (1 - t_c) log(1 - p_c)]

    so for a label y it is -log p_y - sum_{c != y} log(1 - p_c).  With
    A = sum_c t_c, the odds r_c = p_c / (1 - p_c) and B = sum_c (1 - t_c) r_c::

        grad_k = p_k A - t_k + (1 - t_k) r_k - p_k B

    log(1 - p_c) is computed without cancellation: for the first maximum k,
    1 - p_k = S / (1 + S) with log S computed as the log-sum-exp of the other
    logits; elsewhere p_c <= 1/2 and log(1 - p_c) = log1mexp(log p_c)
    (Maechler 2012).  The term p_c r_k of the largest class is e_c / (T S),
    rescaled by the second largest logit, so the gradient is finite and
    accurate for finite logits of any magnitude.

    Args:
      logits: shape (N, C).
      target: (N,) integer labels or (N, C) probabilities.
      Others as in :func:`softmax_cross_entropy` ("mean" averages over rows).

    Returns:
      LossGrad(loss, grad).

    Examples:
      >>> import fastloss
      >>> round(fastloss.softmax_binary_cross_entropy([[0.0, 0.0]], [0]).loss, 6)  # 2 log 2
      1.386294
    """
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads)
    x = prep.pred
    n_rows, n_classes = x.shape
    if prep.has_labels:
        t = np.zeros(x.shape)
        if n_classes > 0:
            t[np.arange(n_rows), prep.target] = 1
    else:
        t = prep.target.astype(np.float64)
    stats = _RowStats(x)
    log_p = stats.log_softmax()
    rows, k = stats.rows, stats.argmax
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_1mp = _log1mexp(np.minimum(log_p, 0))
        if n_classes > 0:
            log_1mp[rows, k] = stats.log_others() - stats.log1p_others
        loss = -np.sum(_xmul(t, log_p) + _xmul(1 - t, log_1mp), axis=1)
        p = np.exp(log_p)
        odds = np.exp(log_p - log_1mp)
        odds[rows, k] = 0
        t_sum = np.sum(t, axis=1, keepdims=True)
        b_rest = np.sum((1 - t) * odds, axis=1, keepdims=True)      # B without class k
        grad_value = p * t_sum - t + (1 - t) * odds - p * b_rest
        if n_classes > 0:
            # p_c (1 - t_k) r_k for c != k, rescaled: finite and accurate when p_k -> 1.
            cross = np.where(log_p == -np.inf, 0.0, _cross_odds(x, stats))
            cross *= (1 - t[rows, k])[:, None]
            cross[rows, k] = 0
            grad_value -= cross
            # at k itself (1 - t_k) r_k - p_k (1 - t_k) r_k = (1 - t_k) p_k
            grad_value[rows, k] += (1 - t[rows, k]) * p[rows, k]
    return _finish(prep, loss, grad_value, float(n_rows if prep.weight is None
                                                 else np.sum(prep.weight)))


def kl_divergence(logits, target, *, sample_weight=None, reduction="mean", grad=True,
                  hess=False, out=None, n_threads=None):
    """Kullback-Leibler divergence KL(target || softmax(logits)) of each row.

    Per row, with p = softmax(x), t the target probabilities and
    A = sum_c t_c::

        loss = sum_c t_c (log t_c - log p_c)        (0 log 0 = 0)
        grad = A p - t
        hess = A p (1 - p)          (the diagonal of A (diag(p) - p p^T))

    "mean" averages over rows (torch's ``kl_div(log_softmax(x), t,
    reduction="batchmean")``).  Targets are not checked to sum to 1.

    Args:
      logits: shape (N, C).
      target: (N, C) probabilities.
      Others as in :func:`softmax_cross_entropy` (hess included).

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True.

    Examples:
      >>> import fastloss
      >>> fastloss.kl_divergence([[0.0, 0.0]], [[0.5, 0.5]]).loss
      0.0
    """
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="probabilities", hess=hess)
    t = prep.target.astype(np.float64)
    stats = _RowStats(prep.pred)
    loss = np.sum(_xlogx(t) - _xmul(t, stats.log_softmax()), axis=1)
    grad_value = stats.target_gradient(t)
    curvature = stats.hessian_diagonal(np.sum(t, axis=1)) if prep.hess else None
    n_rows = t.shape[0]
    return _finish(prep, loss, grad_value, float(n_rows if prep.weight is None
                                                 else np.sum(prep.weight)), hess=curvature)


def multiclass_hinge(scores, target, *, margin=1.0, kind="weston_watkins", squared=False,
                     sample_weight=None, reduction="mean", grad=True, out=None,
                     n_threads=None):
    """Multiclass hinge loss of a max-margin classifier (the multiclass SVM loss).

    Per row, with s the scores, y the label and q = 2 if ``squared`` else 1:

    Weston-Watkins (``kind="weston_watkins"``), one hinge per wrong class::

        loss = sum_{j != y} max(0, margin + s_j - s_y) ** q

    Crammer-Singer (``kind="crammer_singer"``), the hinge of the best wrong class::

        loss = max(0, max_{j != y} (margin + s_j) - s_y) ** q

    Subgradient: a hinge term z contributes q z^(q-1) to d/ds_j and its
    negative to d/ds_y only when z > 0 strictly; for Crammer-Singer ties take
    the first maximising class.  torch's ``multi_margin_loss(s, y, p=q,
    margin=margin)`` is the Weston-Watkins loss divided by C.

    Args:
      scores: shape (N, C).
      target: (N,) integer labels.
      margin: the margin, >= 0.
      kind: "weston_watkins" or "crammer_singer".
      squared: square each hinge (the L2-SVM loss).
      Others as in :func:`softmax_cross_entropy` ("mean" averages over rows).

    Returns:
      LossGrad(loss, grad).

    References:
      J. Weston, C. Watkins, "Support Vector Machines for Multi-Class Pattern
      Recognition", ESANN 1999.  K. Crammer, Y. Singer, "On the Algorithmic
      Implementation of Multiclass Kernel-based Vector Machines", JMLR 2001.

    Examples:
      >>> import fastloss
      >>> fastloss.multiclass_hinge([[2.0, 1.5, 0.0]], [0], reduction="sum")
      LossGrad(loss=0.5, grad=array([[-1.,  1.,  0.]]))
    """
    margin = check_parameter(margin, "margin")
    kind = check_kind(kind)
    prep = prepare_multiclass(scores, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", pred_name="scores")
    s, y = prep.pred.astype(np.float64), prep.target
    n_rows, n_classes = s.shape
    rows = np.arange(n_rows)
    power = 2 if squared else 1
    loss, grad_value = np.zeros(n_rows), np.zeros(s.shape)
    if n_classes > 0:
        s_y = s[rows, y]
        if kind == "weston_watkins":
            z = margin + s - s_y[:, None]
            z[rows, y] = 0                     # the true class has no hinge
        else:
            others = s.copy()
            others[rows, y] = -np.inf
            best = np.argmax(others, axis=1)   # the first maximum (or the first NaN)
            # when every wrong class is at -inf, argmax may return y: take the first j != y
            best = np.where(best == y, np.where(y == 0, 1, 0), best)
            z = np.zeros(s.shape)
            if n_classes > 1:                  # else no wrong class, no hinge
                z[rows, best] = margin + others[rows, best] - s_y
        with np.errstate(invalid="ignore"):
            active = np.maximum(z, 0)          # keeps NaN
            loss = np.sum(active ** power, axis=1)
            slope = np.where(np.isnan(z), z, np.where(z > 0, power * active ** (power - 1), 0))
        grad_value = slope
        grad_value[rows, y] = -np.sum(slope, axis=1)
    return _finish(prep, loss, grad_value, float(n_rows if prep.weight is None
                                                 else np.sum(prep.weight)))


# --- row-wise utilities ------------------------------------------------------

def _rows_result(values, out):
    if out is None:
        return values
    np.copyto(out, values)
    return out


def logsumexp(x, *, out=None, n_threads=None):
    """log(sum_c exp(x_c)) of each row of a 2-D array, without overflow.

    Computed as m + log1p(sum_{c != k} exp(x_c - m)), m the row maximum at
    its first position k (Blanchard, Higham & Higham 2021).  A row with a
    +inf gives +inf, a row of -inf only gives -inf, a row with NaN gives NaN,
    an empty row gives -inf.  As ``scipy.special.logsumexp(x, axis=1)``.

    Args:
      x: shape (N, C).
      out: optional C-contiguous (N,) array of x's dtype receiving the result.
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      An (N,) array of x's computation dtype (float32 or float64).

    Examples:
      >>> import fastloss
      >>> fastloss.logsumexp([[0.0, 0.0], [1000.0, 1000.0]]).tolist()
      [0.6931471805599453, 1000.6931471805599]
    """
    arr, out, _ = prepare_rows(x, out, n_threads, out_ndim=1)
    return _rows_result(_RowStats(arr).logsumexp().astype(arr.dtype), out)


def softmax(x, *, out=None, n_threads=None):
    """softmax of each row: p_c = exp(x_c - m) / sum_j exp(x_j - m), m the row maximum.

    The classes at an infinite row maximum share the probability equally
    (+inf beats every finite logit; a row of -inf only is uniform); a -inf
    logit below a finite maximum has probability 0; NaN makes its row NaN.
    As ``scipy.special.softmax(x, axis=1)`` for finite rows.

    Args:
      x: shape (N, C).
      out: optional C-contiguous (N, C) array receiving the result; may be x
        itself (in place).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      An (N, C) array.

    Examples:
      >>> import fastloss
      >>> fastloss.softmax([[0.0, 0.0]])
      array([[0.5, 0.5]])
    """
    arr, out, _ = prepare_rows(x, out, n_threads, out_ndim=2)
    return _rows_result(_RowStats(arr).softmax().astype(arr.dtype), out)


def log_softmax(x, *, out=None, n_threads=None):
    """log softmax of each row: (x_c - m) - log1p(sum_{j != k} exp(x_j - m)).

    m is the row maximum at its first position k.  Finite for finite logits
    of any magnitude; as ``scipy.special.log_softmax(x, axis=1)``.  Infinite
    logits follow the rule of :func:`softmax`.

    Args:
      x: shape (N, C).
      out: optional C-contiguous (N, C) array receiving the result; may be x
        itself (in place).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      An (N, C) array.

    Examples:
      >>> import fastloss
      >>> fastloss.log_softmax([[0.0, 0.0]])
      array([[-0.69314718, -0.69314718]])
    """
    arr, out, _ = prepare_rows(x, out, n_threads, out_ndim=2)
    return _rows_result(_RowStats(arr).log_softmax().astype(arr.dtype), out)


# --- fused linear cross-entropy ---------------------------------------------------

__all__ += ["LinearCrossEntropyGrad", "linear_cross_entropy"]


def linear_cross_entropy(hidden, weight, target, *, bias=None, class_weight=None,
                         ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None,
                         sample_weight=None, reduction="mean", grad=True, chunk_rows=None,
                         n_threads=None):
    """Cross-entropy of a linear output layer, without holding the (N, V) logits.

    The loss of ``softmax_cross_entropy(hidden @ weight.T + bias, target, ...)``
    (same options, same semantics, "mean" over nothing included) and its
    gradients with respect to the layer's input and parameters.  With
    X = hidden @ weight.T + bias the (N, V) logits and G = d loss / d X the
    gradient :func:`softmax_cross_entropy` returns::

        grad_hidden = G @ weight          (N, D)
        grad_weight = G.T @ hidden        (V, D)
        grad_bias   = sum_i G_i           (V,)

    The fast version takes the rows in chunks of ``chunk_rows``: each chunk's
    logits are made by one matrix product into one reused (chunk_rows, V)
    buffer, turned into their gradient in place by the fused cross-entropy
    kernel, and multiplied back (G_c @ weight into grad_hidden's rows,
    G_c.T @ hidden_c added to grad_weight through one (V, D) scratch array).
    The "mean" divisor is computed for the whole batch first, so each chunk's
    gradient is scaled as in the unfused call.  Peak memory above the inputs
    and the returned gradients: the chunk buffer plus the (V, D) scratch (the
    latter only with more than one chunk and grad=True).  This reference
    computes the whole logits at once.

    Default chunk size: a sixteenth of the rows, ceil(N / 16) (so the buffer
    holds 6.25% of the logits), but at least 128 rows (fewer chunks: each
    chunk adds one pass over the (V, D) scratch) and at most as many rows as
    fit in 256 MiB; never more than N.

    Threads: the matrix products run on NumPy's BLAS and the cross-entropy on
    fastloss's OpenMP threads, one after the other, never at the same time.
    With ``n_threads=None`` each uses its own default (all cores; BLAS and
    OpenMP honour their environment variables and threadpoolctl); with an
    int, the kernel uses that many threads and, when threadpoolctl is
    installed, BLAS is limited to as many for the call (without threadpoolctl
    BLAS keeps its own setting).  The sums of the products go through BLAS,
    whose order depends on the thread count: unlike the other losses, the
    results are not bit-identical for every ``n_threads``.

    Accuracy: float64 agrees with the unfused float64 call to about 1e-13
    relative, element by element (the chunked sums differ in order only);
    in float32 the products' own rounding dominates (the logits and
    gradients are those of float32 matrix products).

    Args:
      hidden: (N, D) inputs of the output layer.
      weight: (V, D) projection, as ``torch.nn.Linear(D, V).weight``.
      target: (N,) integer class labels in [0, V) (or ``ignore_index``).
      bias: optional (V,) bias.
      class_weight: optional (V,) weight of each class (torch's ``weight``).
      ignore_index: None, or a label value whose rows are skipped.
      label_smoothing: eps in [0, 1].
      z_loss: must be 0.0: the z-loss term is not implemented yet
        (NotImplementedError otherwise).
      softcap: must be None: logit soft-capping is not implemented yet
        (NotImplementedError otherwise).
      sample_weight: optional (N,) weights, one per row; each also weights
        that row's share of the "mean" denominator.
      reduction: "mean" (sum_i s_i loss_i / sum_i s_i w_{y_i} over the rows
        not ignored), "sum" or "none" (per-row s_i loss_i).
      grad: compute the gradients (False skips all gradient work).
      chunk_rows: rows per chunk (an int >= 1), or None for the rule above.
      n_threads: None for the default thread counts, or a thread count.

    Returns:
      LinearCrossEntropyGrad(loss, grad_hidden, grad_weight, grad_bias): the
      reduced loss (a float, or an (N,) array for "none") and its gradients,
      new arrays in the computation dtype (float32 when hidden, weight and
      bias are all float32, else float64); grad_bias is None without a bias,
      and every gradient is None with grad=False.  For "none" the gradients
      are those of the sum of the per-row losses.

    References:
      Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models",
      2024; Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM
      Training", 2024 (fused linear cross-entropy on GPUs).

    Examples:
      >>> import numpy as np, fastloss
      >>> hidden = np.array([[1.0, 0.0]])
      >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
      >>> result = fastloss.linear_cross_entropy(hidden, weight, [0])
      >>> round(result.loss, 6)  # -log(e / (e + 2))
      0.551445
      >>> result.grad_weight.shape
      (3, 2)
    """
    prep = prepare_linear(hidden, weight, target, bias, class_weight, ignore_index,
                          label_smoothing, z_loss, softcap, sample_weight, reduction, grad,
                          chunk_rows, n_threads)
    logits = prep.hidden @ prep.weight.T
    if prep.bias is not None:
        logits += prep.bias
    loss, g = softmax_cross_entropy(logits, prep.labels, class_weight=prep.class_weight,
                                    ignore_index=prep.ignore_index,
                                    label_smoothing=prep.label_smoothing,
                                    sample_weight=prep.sample_weight, reduction=reduction,
                                    grad=prep.grad)
    if not prep.grad:
        return LinearCrossEntropyGrad(loss, None, None, None)
    grad_bias = None
    if prep.bias is not None:
        grad_bias = np.sum(g, axis=0, dtype=np.float64).astype(prep.dtype)
    return LinearCrossEntropyGrad(loss, g @ prep.weight, g.T @ prep.hidden, grad_bias)


# The losses beyond the seed (issue #15), until the registry declares every loss once.
from fastloss import _more_reference  # noqa: E402  (it needs _finish above)
from fastloss._more_reference import *  # noqa: E402,F401,F403
__all__ += _more_reference.__all__
